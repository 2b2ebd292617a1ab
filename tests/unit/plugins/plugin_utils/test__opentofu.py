# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_opentofu: binary lookup, the child environment, scrubbing, failure causes, the init marker, the skip rules."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils import _opentofu
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu import (
    InfraSecrets,
    OpenTofuError,
    Run,
    TofuOptions,
    child_env,
    classify,
    config_fingerprint,
    error_lines,
    failure_message,
    find_tofu_binary,
    init_reasons,
    run_opentofu,
    state_address,
    tf_var_value,
    write_marker,
)

PASSWORD = "pw:with 'quotes' #and-more"
TOKEN = "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
BACKEND_TF = """terraform {
  backend "http" {
    address        = "http://127.0.0.1:1/states/proxmox"
    lock_address   = "http://127.0.0.1:1/states/proxmox/lock"
  }
}
"""


def secrets(**values: object) -> InfraSecrets:
    data = {"tfstate_username": "terraform", "tfstate_password": PASSWORD, "proxmox_api_token_secret": TOKEN,
            "cf_account_id": "0123456789abcdef"}
    data.update(values)
    return InfraSecrets(values={k: v for k, v in data.items() if v is not None}, mac_key=b"k" * 32)


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> TofuOptions:
    options = TofuOptions(root=tmp_path, environ={"PATH": os.pathsep.join([str(tmp_path / "bin"), "/usr/bin", "/bin"])})
    options.workdir.mkdir(parents=True)
    (options.workdir / "backend.tf").write_text(BACKEND_TF)
    return options


# ---------------------------------------------------------------------------- secrets and environment


@pytest.mark.parametrize(("password", "configured"), [
    (PASSWORD, True), ("", False), ("   ", False), (None, False), ("CHANGE-ME", False), ("changeme-later", False),
])
def test_configured_needs_a_real_password(password, configured):
    assert secrets(tfstate_password=password).configured is configured


def test_username_defaults_to_terraform():
    assert secrets(tfstate_username="").username == "terraform"
    assert secrets(tfstate_username="admin").username == "admin"


@pytest.mark.parametrize(("value", "text"), [
    ("a b", "a b"), (True, "true"), (False, "false"), (3, "3"), (1.5, "1.5"),
    (["a", 1], '["a", 1]'), ({"k": "v"}, '{"k": "v"}'),
])
def test_tf_var_value(value, text):
    assert tf_var_value(value) == text


def test_var_env_passes_every_value_and_skips_bad_names():
    data = secrets(**{"bad name": "x", "nothing": None})
    data.tfvars = {"extra": {"a": 1}}
    env = data.var_env()
    assert env["TF_VAR_proxmox_api_token_secret"] == TOKEN
    assert env["TF_VAR_extra"] == '{"a": 1}'
    assert "TF_VAR_nothing" not in env
    assert data.skipped_names == ["bad name"]


def test_child_env_drops_inherited_secrets_and_logging(workdir):
    workdir.environ = {"PATH": "/bin", "TF_VAR_old": "x", "TF_HTTP_PASSWORD": "stale", "TF_LOG": "trace",
                       "TF_LOG_PATH": "/tmp/log", "SOPS_AGE_KEY": "AGE-SECRET-KEY-1X", "TF_HTTP_CLIENT_CERTIFICATE_PEM": "pem"}
    env = child_env(workdir, secrets())
    assert env["TF_HTTP_USERNAME"] == "terraform" and env["TF_HTTP_PASSWORD"] == PASSWORD
    assert env["TF_VAR_proxmox_api_token_secret"] == TOKEN
    assert env["TF_HTTP_CLIENT_CERTIFICATE_PEM"] == "pem"  # mTLS settings pass through
    for gone in ("TF_VAR_old", "TF_LOG", "TF_LOG_PATH", "SOPS_AGE_KEY"):
        assert gone not in env
    assert env["TF_HTTP_RETRY_MAX"] == "0"  # configure's init tries once
    workdir.init_required = True
    assert "TF_HTTP_RETRY_MAX" not in child_env(workdir, secrets())


def test_scrub_values_cover_secrets_but_not_public_names():
    data = secrets()
    data.tfvars = {"short": "abc", "long_enough_value": "plain-but-long", "db_password": "pw"}
    values = data.scrub_values()
    assert PASSWORD in values and TOKEN in values and "plain-but-long" in values and "pw" in values
    assert "terraform" not in values and "abc" not in values


def test_credentials_mac_changes_with_credentials_and_key():
    base = secrets().credentials_mac()
    assert base and PASSWORD not in base
    assert secrets(tfstate_password="other").credentials_mac() != base
    other_key = secrets()
    other_key.mac_key = b"x" * 32
    assert other_key.credentials_mac() != base


# ---------------------------------------------------------------------------- binary


def test_find_binary_prefers_tofu_then_terraform(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    terraform = executable(bin_dir / "terraform", "#!/bin/sh\n")
    assert find_tofu_binary(environ={"PATH": str(bin_dir)}) == str(terraform)
    tofu = executable(bin_dir / "tofu", "#!/bin/sh\n")
    assert find_tofu_binary(environ={"PATH": str(bin_dir)}) == str(tofu)
    assert find_tofu_binary("terraform", environ={"PATH": str(bin_dir)}) == str(terraform)
    assert find_tofu_binary(str(terraform)) == str(terraform)


def test_find_binary_missing(tmp_path):
    with pytest.raises(OpenTofuError) as caught:
        find_tofu_binary(environ={"PATH": str(tmp_path)})
    assert caught.value.cause == "binary"
    with pytest.raises(OpenTofuError, match="opentofu_binary"):
        find_tofu_binary(str(tmp_path / "nope"))


# ---------------------------------------------------------------------------- failures


@pytest.mark.parametrize(("text", "cause"), [
    ("Error: Error refreshing state: HTTP remote state endpoint requires auth", "credentials"),
    ("Error refreshing state: HTTP remote state endpoint invalid auth", "credentials"),
    ("Error: Error acquiring the state lock\nError message: HTTP remote state already locked: ID=x", "locked"),
    ("Failed to get state: GET https://x giving up after 3 attempt(s): dial tcp: lookup x: no such host", "unreachable"),
    ("connect: connection refused", "unreachable"),
    ("There are some problems with the configuration, described below.\nError: Unsupported argument", "config"),
    ("Error: Backend configuration changed", "config"),
    ("something else entirely", "failed"),
])
def test_classify(text, cause):
    assert classify(text) == cause


def test_failure_message_names_cause_and_next_step(workdir):
    locked = ("Error: Error acquiring the state lock\nError message: HTTP remote state already locked: ID=abc-123\n"
              "Lock Info:\n  ID: abc-123\n  Who: bob@laptop\n")
    run = Run("tofu", ["init"], 1, "", locked)
    error = failure_message(workdir, run, "plan")
    assert error.cause == "locked"
    assert "the state is locked (lock ID abc-123)" in str(error)
    assert "force-unlock" in str(error) and "opentofu_command=plan" in str(error)
    auth = "Error refreshing state: HTTP remote state endpoint requires auth"
    rejected = failure_message(workdir, Run("tofu", ["init"], 1, "", auth), "init")
    assert "credentials rejected by http://127.0.0.1:1/states/proxmox" in str(rejected)


def test_error_lines_picks_errors_or_the_tail():
    run = Run("tofu", ["init"], 1, "ok\n", "2026/01/01 [DEBUG] GET x\n╷\n│ Error: Unsupported argument\n│ \n│   on a.tf line 1:\n")
    assert error_lines(run) == "Error: Unsupported argument on a.tf line 1:"
    assert error_lines(Run("tofu", ["init"], 3, "", "")) == "exit status 3"


def test_state_address(workdir):
    assert state_address(workdir.workdir) == "http://127.0.0.1:1/states/proxmox"
    assert state_address(workdir.root) is None


# ---------------------------------------------------------------------------- the init marker


def test_marker_round_trip_and_reasons(workdir):
    binary = "/usr/bin/tofu"
    data = secrets()
    assert init_reasons(workdir, binary, data) == ["not initialised yet"]
    workdir.data_dir.mkdir()
    (workdir.data_dir / "terraform.tfstate").write_text('{"backend": {"type": "http"}}')
    assert init_reasons(workdir, binary, data) == ["not initialised by cluster.secrets yet"]
    write_marker(workdir, binary, data)
    marker = (workdir.data_dir / "cluster.secrets.json").read_text()
    assert PASSWORD not in marker and "terraform\0" not in marker
    assert oct(os.stat(workdir.data_dir / "cluster.secrets.json").st_mode & 0o777) == "0o600"
    assert init_reasons(workdir, binary, data) == []
    assert init_reasons(workdir, "/usr/bin/terraform", data) == ["the binary changed (tofu -> terraform)"]
    assert init_reasons(workdir, binary, secrets(tfstate_password="new")) == ["the backend credentials changed"]
    (workdir.workdir / "main.tf").write_text("# new\n")
    assert init_reasons(workdir, binary, data) == ["the configuration changed"]
    write_marker(workdir, binary, data)
    (workdir.data_dir / "terraform.tfstate").write_text('{"backend": {"type": "http", "x": 1}}')
    assert init_reasons(workdir, binary, data) == ["the backend settings were changed outside cluster.secrets"]


def test_config_fingerprint_sees_tf_files_only(workdir):
    before = config_fingerprint(workdir.workdir)
    (workdir.workdir / "notes.md").write_text("x")
    assert config_fingerprint(workdir.workdir) == before
    (workdir.workdir / "extra.tf.json").write_text("{}")
    assert config_fingerprint(workdir.workdir) != before


# ---------------------------------------------------------------------------- run_opentofu without a real binary


def fake_binary(workdir: TofuOptions, script: str) -> Path:
    bin_dir = workdir.root / "bin"
    bin_dir.mkdir(exist_ok=True)
    return executable(bin_dir / "tofu", "#!/bin/sh\n" + script)


def test_usage_errors():
    with pytest.raises(OpenTofuError, match="unknown OpenTofu command"):
        TofuOptions(root=Path("/"), command="import")


def test_apply_needs_confirmation(workdir):
    workdir.command = "apply"
    outcome = run_opentofu(workdir)
    assert outcome.failed and "opentofu_confirm=apply" in outcome.msg


def test_no_backend_skips_init_and_fails_plan(workdir):
    (workdir.workdir / "backend.tf").unlink()
    outcome = run_opentofu(workdir)
    assert outcome.skipped and not outcome.failed and "backend.tf does not exist" in outcome.msg
    workdir.command = "plan"
    assert run_opentofu(workdir).failed


def test_not_configured_skips_with_the_message(workdir, monkeypatch):
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: secrets(tfstate_password="CHANGE-ME"))
    outcome = run_opentofu(workdir)
    assert outcome.skipped and not outcome.changed
    assert "infrastructure secrets are not configured; add `tfstate_password` to `cluster.yaml` to enable" in outcome.msg
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: None)
    assert run_opentofu(workdir).skipped


def test_init_runs_once_with_env_only_and_scrubs_output(workdir, monkeypatch):
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: secrets())
    fake_binary(workdir, 'mkdir -p .terraform && echo "{}" > .terraform/terraform.tfstate\n'
                         'echo "user=$TF_HTTP_USERNAME pass=$TF_HTTP_PASSWORD token=$TF_VAR_proxmox_api_token_secret"\n')
    first = run_opentofu(workdir, diff=True)
    assert first.changed and first.initialised and not first.failed
    assert first.diff and PASSWORD not in json.dumps(first.diff)
    assert run_opentofu(workdir).changed is False
    assert PASSWORD not in json.dumps(first.result())


def test_init_failure_warns_or_fails(workdir, monkeypatch):
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: secrets())
    fake_binary(workdir, f'echo "Error: HTTP remote state endpoint requires auth ({PASSWORD})" >&2\nexit 1\n')
    warned = run_opentofu(workdir)
    assert not warned.failed and warned.cause == "credentials"
    assert "credentials rejected" in warned.warnings[0] and PASSWORD not in warned.warnings[0]
    workdir.init_required = True
    failed = run_opentofu(workdir)
    assert failed.failed and "credentials rejected" in failed.msg and PASSWORD not in failed.msg


def test_check_mode_runs_nothing(workdir, monkeypatch):
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: secrets())
    fake_binary(workdir, "touch ran\n")
    outcome = run_opentofu(workdir, check_mode=True)
    assert outcome.changed and not (workdir.workdir / "ran").exists()


def test_plan_output_is_scrubbed_and_apply_only_when_changes(workdir, monkeypatch):
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: secrets())
    fake_binary(workdir, 'case "$1" in\n'
                         '  init) mkdir -p .terraform && echo "{}" > .terraform/terraform.tfstate ;;\n'
                         '  plan) echo "would use $TF_VAR_proxmox_api_token_secret"; exit 2 ;;\n'
                         '  apply) echo "Apply complete!"; touch applied ;;\n'
                         'esac\n')
    workdir.command = "plan"
    plan = run_opentofu(workdir)
    assert plan.changes_pending and TOKEN not in plan.stdout and "would use ********" in plan.stdout
    workdir.command, workdir.confirm = "apply", "apply"
    applied = run_opentofu(workdir)
    assert applied.changed and (workdir.workdir / "applied").exists() and "Apply complete!" in applied.stdout


def test_unreachable_backend_points_to_where_the_address_is_set(tmp_path):
    options = _opentofu.TofuOptions(root=tmp_path)
    options.workdir.mkdir(parents=True)
    (options.workdir / "backend.tf").write_text('terraform {\n  backend "http" {\n    address = "https://x/state"\n  }\n}\n')
    assert "repository's own infrastructure/tofu/backend.tf" in _opentofu.address_fix(options)
    (options.workdir / "backend.tf").write_text(_opentofu.BUILTIN_BACKEND_MARK + " (default: ...)\n")
    assert _opentofu.address_fix(options) == "fix tfstate_url / cloudflare_domain in the cluster vars"


# What terraform 1.x and tofu 1.x print when the provider registry does not answer: the backend did.
REGISTRY_DOWN = {
    "terraform": (
        "Initializing the backend...\n\nError: Failed to query available provider packages\n\n"
        "Could not retrieve the list of available versions for provider\nhashicorp/null: could not connect to "
        "registry.terraform.io: failed to request\ndiscovery document: Get\n"
        '"https://registry.terraform.io/.well-known/terraform.json": dial tcp: lookup\n'
        "registry.terraform.io on 192.0.2.53:53: no such host\n"),
    "tofu": (
        "╷\n│ Error: Failed to query available provider packages\n│ \n│ Could not retrieve the list of available "
        "versions for provider hashicorp/null:\n│ could not connect to registry.opentofu.org: failed to request "
        "discovery document:\n│ Get \"https://registry.opentofu.org/.well-known/terraform.json\": dial tcp:\n│ "
        "lookup registry.opentofu.org: i/o timeout\n╵\n"),
}


@pytest.mark.parametrize("binary", sorted(REGISTRY_DOWN))
def test_registry_failure_is_not_a_backend_failure(workdir, binary):
    text = REGISTRY_DOWN[binary]
    assert classify(text) == "registry"
    error = failure_message(workdir, Run(binary, ["init"], 1, "", text), "init")
    message = str(error)
    assert error.cause == "registry"
    registry = "registry.terraform.io" if binary == "terraform" else "registry.opentofu.org"
    assert f"provider registry unreachable: {registry} did not answer" in message
    assert "backend unreachable" not in message and "127.0.0.1:1" not in message
    assert "opentofu_command=init" in message


def test_registry_failure_warns_from_configure(workdir, monkeypatch):
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: secrets())
    fake_binary(workdir, "cat >&2 <<'END'\n" + REGISTRY_DOWN["terraform"] + "END\nexit 1\n")
    outcome = run_opentofu(workdir)
    assert not outcome.failed and outcome.cause == "registry"
    assert "provider registry unreachable" in outcome.msg
    assert "registry.terraform.io did not answer" in outcome.warnings[0]
    assert "backend unreachable" not in outcome.warnings[0]


# ---------------------------------------------------------------------------- warnings once, progress while running


def test_a_warning_is_shown_once_for_the_same_inputs(workdir, monkeypatch):
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: secrets())
    marker = workdir.data_dir / "cluster.secrets.json"
    # check mode warns but remembers nothing
    checked = run_opentofu(workdir, check_mode=True)
    assert checked.cause == "binary" and len(checked.warnings) == 1 and not marker.exists()
    first = run_opentofu(workdir)
    assert len(first.warnings) == 1 and "binary missing" in first.warnings[0] and not first.repeated
    assert oct(marker.stat().st_mode & 0o777) == "0o600"
    assert PASSWORD not in marker.read_text() and TOKEN not in marker.read_text()
    again = run_opentofu(workdir)
    assert again.warnings == [] and again.repeated and again.cause == "binary"
    assert "still not done: binary missing, as on the last run" in again.msg
    assert again.result()["init_problem"] == first.warnings[0]
    # new inputs: the warning is news again
    (workdir.workdir / "main.tf").write_text("# changed\n")
    assert len(run_opentofu(workdir).warnings) == 1
    assert run_opentofu(workdir).warnings == []
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: secrets(tfstate_password="rotated-password"))
    assert len(run_opentofu(workdir).warnings) == 1


def test_a_failed_first_init_keeps_only_the_remembered_warning(workdir, monkeypatch):
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: secrets())
    fake_binary(workdir, 'mkdir -p .terraform/providers && echo "{}" > .terraform/terraform.tfstate\n'
                         'echo "Error: HTTP remote state endpoint requires auth" >&2\nexit 1\n')
    assert len(run_opentofu(workdir).warnings) == 1
    assert sorted(p.name for p in workdir.data_dir.iterdir()) == ["cluster.secrets.json"]
    second = run_opentofu(workdir)
    assert second.repeated and second.warnings == []
    assert sorted(p.name for p in workdir.data_dir.iterdir()) == ["cluster.secrets.json"]
    # a successful init forgets the warning
    fake_binary(workdir, 'mkdir -p .terraform && echo "{}" > .terraform/terraform.tfstate\n')
    assert run_opentofu(workdir).initialised
    assert "warned" not in json.loads((workdir.data_dir / "cluster.secrets.json").read_text())


def test_progress_sees_every_line_scrubbed_while_it_runs(workdir, monkeypatch):
    monkeypatch.setattr(_opentofu, "load_secrets", lambda _options: secrets())
    fake_binary(workdir, 'case "$1" in\n'
                         '  init) mkdir -p .terraform && echo "{}" > .terraform/terraform.tfstate ;;\n'
                         '  plan) echo "creating with $TF_VAR_proxmox_api_token_secret"; echo "warn: $TF_HTTP_PASSWORD" >&2;\n'
                         # waits (up to 20 s) for the caller to have seen the first line: only streaming gets past this
                         '        i=0; while [ ! -e seen ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n'
                         '        test -e seen || exit 1; echo "done"; exit 2 ;;\n'
                         'esac\n')
    seen: list[str] = []

    def progress(line: str) -> None:
        seen.append(line)
        if line.startswith("creating"):
            # the first line arrived while the binary still runs: it waits for this file before it finishes
            (workdir.workdir / "seen").touch()

    workdir.command, workdir.progress = "plan", progress
    outcome = run_opentofu(workdir)
    assert not outcome.failed, outcome.msg
    assert outcome.changes_pending
    assert "creating with ********" in seen and "warn: ********" in seen and "done" in seen
    assert not any(TOKEN in line or PASSWORD in line for line in seen)
    assert TOKEN not in outcome.stdout and "done" in outcome.stdout
