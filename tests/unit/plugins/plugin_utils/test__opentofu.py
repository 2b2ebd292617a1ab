# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_opentofu: binary lookup, the child environment, scrubbing, the skip rules, init once, warnings once, progress, and
secrets handed over in memory (then no sops process runs)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity, AgeKeys
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu import (
    Outcome,
    child_env,
    find_tofu_binary,
    run_opentofu,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import OpenTofuError, TofuOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_secrets import InfraSecrets
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops

PASSWORD = "pw:with 'quotes' #and-more"
TOKEN = "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
BACKEND_TF = """terraform {
  backend "http" {
    address        = "http://127.0.0.1:1/states/proxmox"
    lock_address   = "http://127.0.0.1:1/states/proxmox/lock"
  }
}
"""
REGISTRY_DOWN = (
    "Initializing the backend...\n\nError: Failed to query available provider packages\n\n"
    "Could not retrieve the list of available versions for provider\nhashicorp/null: could not connect to "
    "registry.terraform.io: failed to request\ndiscovery document: Get\n"
    '"https://registry.terraform.io/.well-known/terraform.json": dial tcp: lookup\n'
    "registry.terraform.io on 192.0.2.53:53: no such host\n")


class NoSops(Sops):
    """The door with a made-up key, where running sops is a test failure."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, AgeKeys([AgeIdentity("AGE-SECRET-KEY-1TEST", "age1test", "test")], ["test"]))

    def decrypt(self, relpath: str, content: bytes | None = None) -> bytes:
        raise AssertionError(f"sops must not run: decrypt({relpath})")

    def encrypt(self, plaintext: bytes, relpath: str) -> bytes:
        raise AssertionError(f"sops must not run: encrypt({relpath})")

    def run_isolated(self, args: list[str], identities: Any, what: str) -> bytes:
        raise AssertionError(f"sops must not run: {what}")


def values(**changes: object) -> dict[str, Any]:
    data: dict[str, Any] = {"tfstate_username": "terraform", "tfstate_password": PASSWORD,
                            "proxmox_api_token_secret": TOKEN, "cf_account_id": "0123456789abcdef"}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def run(options: TofuOptions, check_mode: bool = False, diff: bool = False, **changes: object) -> Outcome:
    """run_opentofu with the secrets handed over, as configure does."""
    return run_opentofu(options, check_mode, diff, sops=NoSops(options.root), secrets=values(**changes))


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def fake_binary(workdir: TofuOptions, script: str) -> Path:
    bin_dir = workdir.root / "bin"
    bin_dir.mkdir(exist_ok=True)
    return executable(bin_dir / "tofu", "#!/bin/sh\n" + script)


INIT_OK = 'mkdir -p .terraform && echo "{}" > .terraform/terraform.tfstate\n'


@pytest.fixture
def workdir(tmp_path: Path) -> TofuOptions:
    options = TofuOptions(root=tmp_path, environ={"PATH": os.pathsep.join([str(tmp_path / "bin"), "/usr/bin", "/bin"])})
    options.workdir.mkdir(parents=True)
    (options.workdir / "backend.tf").write_text(BACKEND_TF)
    return options


# ---------------------------------------------------------------------------- binary and environment


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


def test_child_env_drops_inherited_secrets_and_logging(workdir):
    workdir.environ = {"PATH": "/bin", "TF_VAR_old": "x", "TF_HTTP_PASSWORD": "stale", "TF_LOG": "trace",
                       "TF_LOG_PATH": "/tmp/log", "SOPS_AGE_KEY": "AGE-SECRET-KEY-1X", "TF_HTTP_CLIENT_CERTIFICATE_PEM": "pem"}
    secrets = InfraSecrets(values=values())
    env = child_env(workdir, secrets)
    assert env["TF_HTTP_USERNAME"] == "terraform" and env["TF_HTTP_PASSWORD"] == PASSWORD
    assert env["TF_VAR_proxmox_api_token_secret"] == TOKEN
    assert env["TF_HTTP_CLIENT_CERTIFICATE_PEM"] == "pem"  # mTLS settings pass through
    for gone in ("TF_VAR_old", "TF_LOG", "TF_LOG_PATH", "SOPS_AGE_KEY"):
        assert gone not in env
    assert env["TF_HTTP_RETRY_MAX"] == "0"  # configure's init tries once
    workdir.init_required = True
    assert "TF_HTTP_RETRY_MAX" not in child_env(workdir, secrets)


# ---------------------------------------------------------------------------- what is skipped or refused


def test_apply_needs_confirmation(workdir):
    workdir.command = "apply"
    outcome = run(workdir)
    assert outcome.failed and "opentofu_confirm=apply" in outcome.msg and outcome.cause == "usage"


def test_no_backend_skips_init_and_fails_plan(workdir):
    (workdir.workdir / "backend.tf").unlink()
    outcome = run(workdir)
    assert outcome.skipped and not outcome.failed and "backend.tf does not exist" in outcome.msg
    workdir.command = "plan"
    assert run(workdir).failed


def test_not_configured_skips_with_the_message(workdir):
    outcome = run(workdir, tfstate_password="CHANGE-ME")
    assert outcome.skipped and not outcome.changed
    assert "infrastructure secrets are not configured; add `tfstate_password` to `cluster.yaml` to enable" in outcome.msg
    # No secrets file at all, nothing handed over: skipped without looking for a key.
    workdir.age_key_file = str(workdir.root / "missing.key")
    assert run_opentofu(workdir).skipped
    workdir.command = "plan"
    failed = run_opentofu(workdir)
    assert failed.failed and failed.cause == "secrets"


def test_unreadable_secrets_warn_from_configure(workdir):
    (workdir.root / "infrastructure/secrets.sops.yaml").write_text("sops: {}\n")
    workdir.age_key_file = str(workdir.root / "missing.key")
    outcome = run_opentofu(workdir)
    assert not outcome.failed and outcome.cause == "secrets" and "secrets unreadable" in outcome.msg
    assert "missing.key" in outcome.warnings[0]


# ---------------------------------------------------------------------------- secrets handed over: no sops process


def test_held_secrets_run_no_sops_process(workdir, monkeypatch):
    (workdir.root / "infrastructure/secrets.sops.yaml").write_text("sops: {}\n")  # on disk, but never read
    fake_binary(workdir, INIT_OK + 'echo "token=$TF_VAR_proxmox_api_token_secret"\n')
    started: list[str] = []
    popen = subprocess.Popen

    def record(args: Any, *rest: Any, **kwargs: Any) -> Any:
        started.append(Path(args[0]).name)
        return popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", record)
    workdir.age_key_file = str(workdir.root / "missing.key")  # opening a door here would fail: the one given is used
    outcome = run(workdir)
    assert outcome.initialised and outcome.changed and not outcome.failed, outcome.msg
    assert outcome.sources == ["infrastructure/secrets.sops.yaml"]
    assert "proxmox_api_token_secret" in outcome.variables
    assert started == ["tofu"]
    # Without a door handed over, one is opened for the HMAC key only (no process either).
    workdir.age_key_file = None
    workdir.environ = {**(workdir.environ or {}), "SOPS_AGE_KEY": "AGE-SECRET-KEY-1TEST",
                       "XDG_CONFIG_HOME": str(workdir.root / "config")}
    monkeypatch.setattr("ansible_collections.cluster.secrets.plugins.plugin_utils._age.derive_recipient", lambda _s: None)
    again = run_opentofu(workdir, secrets=values())
    assert not again.failed and again.initialised and again.changed is False, again.init_reasons
    assert started == ["tofu"]


# ---------------------------------------------------------------------------- init


def test_init_runs_once_with_env_only_and_scrubs_output(workdir):
    fake_binary(workdir, INIT_OK + 'echo "user=$TF_HTTP_USERNAME pass=$TF_HTTP_PASSWORD token=$TF_VAR_proxmox_api_token_secret"\n')
    first = run(workdir, diff=True)
    assert first.changed and first.initialised and not first.failed
    assert first.diff and PASSWORD not in json.dumps(first.diff)
    assert "because: not initialised yet" in first.diff["after"]
    assert run(workdir).changed is False
    assert PASSWORD not in json.dumps(first.result())
    rotated = run(workdir, tfstate_password="rotated-password")
    assert rotated.changed and rotated.init_reasons == ["the backend credentials changed"]


def test_init_failure_warns_or_fails(workdir):
    fake_binary(workdir, f'echo "Error: HTTP remote state endpoint requires auth ({PASSWORD})" >&2\nexit 1\n')
    warned = run(workdir)
    assert not warned.failed and warned.cause == "credentials"
    assert "credentials rejected" in warned.warnings[0] and PASSWORD not in warned.warnings[0]
    workdir.init_required = True
    failed = run(workdir)
    assert failed.failed and "credentials rejected" in failed.msg and PASSWORD not in failed.msg


def test_check_mode_runs_nothing(workdir):
    fake_binary(workdir, "touch ran\n")
    outcome = run(workdir, check_mode=True)
    assert outcome.changed and not (workdir.workdir / "ran").exists()
    workdir.command = "apply"
    planned = run(workdir, check_mode=True)
    assert "needs init first" in planned.msg and not (workdir.workdir / "ran").exists()


def test_registry_failure_warns_from_configure(workdir):
    fake_binary(workdir, "cat >&2 <<'END'\n" + REGISTRY_DOWN + "END\nexit 1\n")
    outcome = run(workdir)
    assert not outcome.failed and outcome.cause == "registry"
    assert "provider registry unreachable" in outcome.msg
    assert "registry.terraform.io did not answer" in outcome.warnings[0]
    assert "backend unreachable" not in outcome.warnings[0]


# ---------------------------------------------------------------------------- plan, apply


def test_plan_output_is_scrubbed_and_apply_only_when_changes(workdir):
    fake_binary(workdir, 'case "$1" in\n'
                         '  init) ' + INIT_OK.strip() + ' ;;\n'
                         '  plan) echo "would use $TF_VAR_proxmox_api_token_secret"; exit 2 ;;\n'
                         '  apply) echo "Apply complete!"; touch applied ;;\n'
                         'esac\n')
    workdir.command = "plan"
    plan = run(workdir)
    assert plan.changes_pending and TOKEN not in plan.stdout and "would use ********" in plan.stdout
    assert "changes pending" in plan.msg
    workdir.command, workdir.confirm = "apply", "apply"
    applied = run(workdir)
    assert applied.changed and (workdir.workdir / "applied").exists() and "Apply complete!" in applied.stdout
    assert applied.result()["exit_code"] == 0


def test_a_failed_plan_names_its_cause(workdir):
    fake_binary(workdir, 'case "$1" in\n  init) ' + INIT_OK.strip() + ' ;;\n'
                         '  plan) echo "Error: Error acquiring the state lock: already locked: ID=held-1" >&2; exit 1 ;;\nesac\n')
    workdir.command = "plan"
    outcome = run(workdir)
    assert outcome.failed and outcome.cause == "locked" and "lock ID held-1" in outcome.msg


# ---------------------------------------------------------------------------- warnings once, progress while running


def test_a_warning_is_shown_once_for_the_same_inputs(workdir):
    marker = workdir.data_dir / "cluster.secrets.json"
    # check mode warns but remembers nothing
    checked = run(workdir, check_mode=True)
    assert checked.cause == "binary" and len(checked.warnings) == 1 and not marker.exists()
    first = run(workdir)
    assert len(first.warnings) == 1 and "binary missing" in first.warnings[0] and not first.repeated
    assert oct(marker.stat().st_mode & 0o777) == "0o600"
    assert PASSWORD not in marker.read_text() and TOKEN not in marker.read_text()
    again = run(workdir)
    assert again.warnings == [] and again.repeated and again.cause == "binary"
    assert "still not done: binary missing, as on the last run" in again.msg
    assert again.result()["init_problem"] == first.warnings[0]
    # new inputs: the warning is news again
    (workdir.workdir / "main.tf").write_text("# changed\n")
    assert len(run(workdir).warnings) == 1
    assert run(workdir).warnings == []
    assert len(run(workdir, tfstate_password="rotated-password").warnings) == 1


def test_a_failed_first_init_keeps_only_the_remembered_warning(workdir):
    fake_binary(workdir, 'mkdir -p .terraform/providers && echo "{}" > .terraform/terraform.tfstate\n'
                         'echo "Error: HTTP remote state endpoint requires auth" >&2\nexit 1\n')
    assert len(run(workdir).warnings) == 1
    assert sorted(p.name for p in workdir.data_dir.iterdir()) == ["cluster.secrets.json"]
    second = run(workdir)
    assert second.repeated and second.warnings == []
    assert sorted(p.name for p in workdir.data_dir.iterdir()) == ["cluster.secrets.json"]
    # a successful init forgets the warning
    fake_binary(workdir, INIT_OK)
    assert run(workdir).initialised
    assert "warned" not in json.loads((workdir.data_dir / "cluster.secrets.json").read_text())


def test_progress_sees_every_line_scrubbed_while_it_runs(workdir):
    fake_binary(workdir, 'case "$1" in\n'
                         '  init) ' + INIT_OK.strip() + ' ;;\n'
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
    outcome = run(workdir)
    assert not outcome.failed, outcome.msg
    assert outcome.changes_pending
    assert "creating with ********" in seen and "warn: ********" in seen and "done" in seen
    assert not any(TOKEN in line or PASSWORD in line for line in seen)
    assert TOKEN not in outcome.stdout and "done" in outcome.stdout


# ---------------------------------------------------------------------------- local state, tfvars-only projects

LOCAL_PLAN = 'echo "$TF_VAR_region" > seen; exit 0\n'


def tfvars_only(workdir: TofuOptions, backend: str | None) -> dict[str, dict[str, Any]]:
    """A project with no secrets file: a variables file, an optional backend, and an encrypted tfvars file."""
    (workdir.workdir / "backend.tf").unlink()
    (workdir.workdir / "main.tf").write_text('variable "region" {}\n' + (backend or ""))
    (workdir.workdir / "x.tfvars.sops.yaml").write_text("sops: {}\n")
    return {"infrastructure/tofu/x.tfvars.sops.yaml": {"region": "eu-central"}}


@pytest.mark.parametrize("backend", [None, 'terraform {\n  backend "local" {}\n}\n', '# backend "http" {}\n'])
def test_local_state_is_refused_unless_allowed(workdir, backend):
    tfvars = tfvars_only(workdir, backend)
    binary = fake_binary(workdir, 'case "$1" in init) exit 0;; plan) ' + LOCAL_PLAN + ' esac\n')
    workdir.binary = str(binary)
    workdir.command = "plan"
    refused = run_opentofu(workdir, sops=NoSops(workdir.root), tfvars=tfvars)
    assert refused.failed and refused.cause == "config"
    assert "no remote state backend" in refused.msg and "opentofu_allow_local_state=true" in refused.msg
    workdir.command = "init"
    assert run_opentofu(workdir, sops=NoSops(workdir.root), tfvars=tfvars).skipped
    workdir.allow_local_state = True
    workdir.command = "plan"
    allowed = run_opentofu(workdir, sops=NoSops(workdir.root), tfvars=tfvars)
    assert not allowed.failed and allowed.rc == 0, allowed.msg
    assert any("plaintext" in w and "terraform.tfstate" in w for w in allowed.warnings)
    assert (workdir.workdir / "seen").read_text().strip() == "eu-central"
    assert allowed.variables == ["region"] and allowed.sources == ["infrastructure/tofu/x.tfvars.sops.yaml"]
    # init is remembered without a backend state file: the next plan does not init again.
    assert not run_opentofu(workdir, sops=NoSops(workdir.root), tfvars=tfvars).init_reasons


def test_a_tfvars_only_project_runs_without_backend_credentials(workdir):
    tfvars = tfvars_only(workdir, 'terraform {\n  backend "s3" {}\n}\n')
    env_dump = 'env | grep -c "^TF_HTTP_PASSWORD=" > creds; '
    binary = fake_binary(workdir, f'case "$1" in init) {INIT_OK} ;; plan) {env_dump}{LOCAL_PLAN} esac\n')
    workdir.binary = str(binary)
    workdir.command = "plan"
    outcome = run_opentofu(workdir, sops=NoSops(workdir.root), tfvars=tfvars)
    assert not outcome.failed and not outcome.warnings, outcome.msg
    assert (workdir.workdir / "seen").read_text().strip() == "eu-central"
    assert (workdir.workdir / "creds").read_text().strip() == "0"
