# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/infra.yml: plan, apply and destroy against a real HTTP state server, with no secret ever shown or written."""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

import pytest

from tests.conftest import recap_changed
from tests.integration.opentofu_support import (
    encrypt_tfvars,
    files_containing,
    now,
    path_without_tofu,
    set_cluster_vars,
    tofu_env,
    wire_repo,
)


def outputs(state: dict | None) -> dict:
    return {name: item["value"] for name, item in (state or {}).get("outputs", {}).items()}


@pytest.fixture
def wired(make_repo, tfstate_server, tofu_binary):
    """A configured repository whose OpenTofu folder is initialised against the state server."""
    repo = make_repo()
    token = "pve-token-" + hashlib.sha256(repo.root.name.encode() + str(now()).encode()).hexdigest()[:24]
    wire_repo(repo, tfstate_server.state_url(), tfstate_server.store.password, token_secret=token)
    env = tofu_env(repo, tofu_binary)
    repo.playbook("configure", env=env)
    return repo, env, token


def test_plan_then_apply_store_state_on_the_server(wired, tfstate_server):
    repo, env, token = wired
    plan = repo.playbook("infra", "-e", "opentofu_command=plan", env=env)
    assert recap_changed(plan.stdout) == 0
    assert "proxmox_node" in plan.stdout and "token_secret_sha256" in plan.stdout  # the plan is shown
    assert "changes pending" in plan.stdout
    assert tfstate_server.store.state("proxmox") is None

    refused = repo.playbook("infra", "-e", "opentofu_command=apply", env=env, check=False)
    assert refused.returncode != 0
    assert "opentofu_confirm=apply" in refused.stdout
    assert tfstate_server.store.state("proxmox") is None

    start = len(tfstate_server.store.requests)
    applied = repo.playbook("infra", "-e", "opentofu_command=apply", "-e", "opentofu_confirm=apply", env=env)
    assert recap_changed(applied.stdout) == 1
    assert "Apply complete" in applied.stdout
    methods = tfstate_server.store.methods()[start:]
    assert "LOCK /states/proxmox/lock" in methods and "UNLOCK /states/proxmox/lock" in methods
    assert "POST /states/proxmox" in methods
    assert methods.index("LOCK /states/proxmox/lock") < methods.index("POST /states/proxmox") \
        < len(methods) - 1 - methods[::-1].index("UNLOCK /states/proxmox/lock")
    assert tfstate_server.store.locks == {}, "the lock must be released"
    # The values came from the decrypted secrets, as TF_VAR_* variables.
    state = outputs(tfstate_server.store.state("proxmox"))
    assert state["proxmox_node"] == "pve"
    assert state["token_secret_sha256"] == hashlib.sha256(token.encode()).hexdigest()

    again = repo.playbook("infra", "-e", "opentofu_command=apply", "-e", "opentofu_confirm=apply", env=env)
    assert recap_changed(again.stdout) == 0
    assert "no changes" in again.stdout
    # plan and apply leave init's bookkeeping alone: configure still has nothing to do.
    assert recap_changed(repo.playbook("configure", env=env).stdout) == 0


def test_apply_check_mode_plans_only(wired, tfstate_server):
    repo, env, _token = wired
    check = repo.playbook("infra", "-e", "opentofu_command=apply", "--check", env=env)
    assert recap_changed(check.stdout) == 1
    assert "would change the infrastructure" in check.stdout
    assert tfstate_server.store.state("proxmox") is None
    assert tfstate_server.store.locks == {}


def test_destroy_needs_confirmation_and_empties_state(wired, tfstate_server):
    repo, env, _token = wired
    repo.playbook("infra", "-e", "opentofu_command=apply", "-e", "opentofu_confirm=apply", env=env)
    assert outputs(tfstate_server.store.state("proxmox"))
    refused = repo.playbook("infra", "-e", "opentofu_command=destroy", "-e", "opentofu_confirm=apply", env=env, check=False)
    assert refused.returncode != 0 and "opentofu_confirm=destroy" in refused.stdout
    repo.playbook("infra", "-e", "opentofu_command=destroy", "-e", "opentofu_confirm=destroy", env=env)
    assert outputs(tfstate_server.store.state("proxmox")) == {}
    assert tfstate_server.store.locks == {}


def test_encrypted_tfvars_reach_the_binary_as_variables(wired, tfstate_server):
    repo, env, _token = wired
    extra = "extra-" + hashlib.sha256(str(now()).encode()).hexdigest()[:20]
    repo.write("templates/infrastructure/tofu/extra.tf", 'variable "extra_secret" {\n  type      = string\n  sensitive = true\n}\n'
               'output "extra_sha256" {\n  value = nonsensitive(sha256(var.extra_secret))\n}\n')
    repo.write("templates/infrastructure/tofu/extra.tfvars.sops.yaml.j2", "extra_secret: #{ extra_secret | yaml_quote }#\n")
    set_cluster_vars(repo, extra_secret=extra)
    repo.playbook("configure", "-e", '{"configure_known_keys": ["extra_secret"]}', env=env)
    assert "extra_secret" in repo.decrypt("infrastructure/tofu/extra.tfvars.sops.yaml")
    result = repo.playbook("infra", "-e", "opentofu_command=apply", "-e", "opentofu_confirm=apply", env=env)
    assert extra not in result.stdout
    assert outputs(tfstate_server.store.state("proxmox"))["extra_sha256"] == hashlib.sha256(extra.encode()).hexdigest()
    assert not list((repo.root / "infrastructure/tofu").glob("*.tfvars")), "no plaintext tfvars file is written"


def test_no_secret_in_output_or_on_disk(make_repo, tfstate_server, tofu_binary, tmp_path):
    started = now()
    repo = make_repo()
    token = "pve-secret-" + hashlib.sha256(str(started).encode()).hexdigest()[:24]
    wire_repo(repo, tfstate_server.state_url(), tfstate_server.store.password, token_secret=token)
    env = tofu_env(repo, tofu_binary)
    secrets = [tfstate_server.store.password, token]
    runs = [
        repo.playbook("configure", "-vvvv", "--diff", env=env),
        repo.playbook("configure", "-vvvv", "--diff", "--check", env=env),
        repo.playbook("infra", "-vvvv", "--diff", "-e", "opentofu_command=plan", env=env),
        repo.playbook("infra", "-vvvv", "--diff", "--check", "-e", "opentofu_command=apply", env=env),
        repo.playbook("infra", "-vvvv", "--diff", "-e", "opentofu_command=apply", "-e", "opentofu_confirm=apply", env=env),
    ]
    # A failure path too: rejected credentials, verbose, with the init required.
    tfstate_server.store.password += "-rotated-on-the-server"
    (repo.root / "infrastructure/tofu/.terraform/cluster.secrets.json").unlink()
    runs.append(repo.playbook("configure", "-vvvv", "--diff", "-e", "opentofu_init_required=true", env=env, check=False))
    assert runs[-1].returncode != 0 and "credentials rejected" in runs[-1].stdout
    for run in runs:
        for value in secrets:
            assert value not in run.stdout
            for part in value.split():
                assert len(part) < 8 or part not in run.stdout
    assert outputs(tfstate_server.store.state("proxmox"))["token_secret_sha256"] == hashlib.sha256(token.encode()).hexdigest()
    # cluster.yaml is the (gitignored) source of the secrets; nothing else may hold them in plaintext.
    assert files_containing(secrets, [repo.root]) == [str(repo.root / "cluster.yaml")]  # the scan does find plaintext
    leaks = files_containing(secrets, [tmp_path], skip=[repo.root / "cluster.yaml"])
    leaks += files_containing(secrets, [Path(tempfile.gettempdir())], newer_than=started, skip=[repo.root / "cluster.yaml"])
    assert leaks == []


ENC = "infrastructure/tofu/terraform.tfvars.enc"
# A variable the plan must see with the right value: the validation fails otherwise, and the output shows its hash.
ENC_CHECK_TF = """\
variable "contabo_client_secret" {{
  type      = string
  sensitive = true
  validation {{
    condition     = sha256(var.contabo_client_secret) == "{sha}"
    error_message = "The contabo_client_secret value did not arrive from terraform.tfvars.enc."
  }}
}}
variable "dns_zones" {{
  type = list(string)
}}
output "enc_secret_sha256" {{
  value = nonsensitive(sha256(var.contabo_client_secret))
}}
output "dns_zones" {{
  value = join(",", var.dns_zones)
}}
"""


def tfvars_secret() -> tuple[str, str]:
    """A fresh secret (as the binary must see it) and how it is written in HCL (quotes and a template escaped)."""
    tag = hashlib.sha256(str(now()).encode()).hexdigest()[:24]
    return f'contabo:{tag} "q" ${{lit}}', f'contabo:{tag} \\"q\\" $${{lit}}'


def test_encrypted_hcl_tfvars_reach_plan_and_never_show(wired, tfstate_server, tofu_binary, tmp_path):
    started = now()
    repo, env, _token = wired
    secret, written = tfvars_secret()
    sha = hashlib.sha256(secret.encode()).hexdigest()
    repo.write("infrastructure/tofu/enc_check.tf", ENC_CHECK_TF.format(sha=sha))
    sops_dir = tmp_path / "sops-cwd"
    sops_dir.mkdir()
    encrypt_tfvars(repo, ENC, f'# Contabo credentials\ncontabo_client_secret = "{written}"\ndns_zones = ["a.io", "b.io"]\n',
                   sops_dir)
    assert secret.encode() not in (repo.root / ENC).read_bytes()
    plan = repo.playbook("infra", "-vvvv", "-e", "opentofu_command=plan", env=env)
    # The plan saw the value (the validation passed too), and the list; values of 8+ characters would be masked.
    assert re.search(rf'enc_secret_sha256\s+= "{sha}"', plan.stdout)
    assert re.search(r'dns_zones\s+= "a.io,b.io"', plan.stdout)
    assert "infrastructure/tofu/terraform.tfvars.enc" in plan.stdout  # among the secret sources
    applied = repo.playbook("infra", "-vvvv", "-e", "opentofu_command=apply", "-e", "opentofu_confirm=apply", env=env)
    assert outputs(tfstate_server.store.state("proxmox"))["enc_secret_sha256"] == sha
    for run in (plan, applied):
        assert secret not in run.stdout and secret.split()[0] not in run.stdout
    # A wrong value is caught by the validation: proof that the check above is not vacuous.
    repo.write("infrastructure/tofu/enc_check.tf", ENC_CHECK_TF.format(sha="0" * 64))
    wrong = repo.playbook("infra", "-e", "opentofu_command=plan", env=env, check=False)
    assert wrong.returncode != 0 and "did not arrive from terraform.tfvars.enc" in wrong.stdout
    assert secret not in wrong.stdout
    # Nothing plaintext on disk: not in the repository, the test's folders, or the temporary directory.
    assert not list((repo.root / "infrastructure/tofu").glob("*.tfvars"))
    assert files_containing([secret], [tmp_path]) == []
    assert files_containing([secret], [Path(tempfile.gettempdir())], newer_than=started) == []


def test_a_tfvars_only_project_without_a_backend_needs_allow_local_state(make_repo, tofu_binary, tmp_path):
    repo = make_repo(demo=False)
    secret, written = tfvars_secret()
    repo.write("infrastructure/tofu/main.tf", ENC_CHECK_TF.format(sha=hashlib.sha256(secret.encode()).hexdigest()))
    sops_dir = tmp_path / "sops-cwd"
    sops_dir.mkdir()
    encrypt_tfvars(repo, ENC, f'contabo_client_secret = "{written}"\ndns_zones = []\n', sops_dir)
    env = tofu_env(repo, tofu_binary)
    refused = repo.playbook("infra", "-e", "opentofu_command=plan", env=env, check=False)
    assert refused.returncode != 0
    assert "no remote state backend" in refused.stdout and "opentofu_allow_local_state=true" in refused.stdout
    plan = repo.playbook("infra", "-vvvv", "-e", "opentofu_command=plan", "-e", "opentofu_allow_local_state=true", env=env)
    said = " ".join(plan.stdout.split())  # warnings are wrapped
    assert "[WARNING]" in said and "terraform.tfstate, which holds every variable" in said and "in plaintext" in said
    assert hashlib.sha256(secret.encode()).hexdigest() in plan.stdout
    assert secret not in plan.stdout


def test_the_tfvars_example_names_every_variable_and_no_value(wired, tfstate_server):
    repo, env, token = wired
    seen = len(tfstate_server.store.requests)
    first = repo.playbook("infra", "-e", "opentofu_command=example", env={**env, "PATH": path_without_tofu()})
    example = repo.root / "infrastructure/tofu/terraform.tfvars.example"
    assert recap_changed(first.stdout) == 1 and "terraform.tfvars.example was written" in first.stdout
    text = example.read_text()
    assert 'proxmox_api_token_secret = ""  # sensitive: required' in text
    assert token not in text and tfstate_server.store.password not in text
    assert len(tfstate_server.store.requests) == seen  # no binary, no backend
    again = repo.playbook("infra", "-e", "opentofu_command=example", env=env)
    assert recap_changed(again.stdout) == 0 and example.read_text() == text
    # init writes it as well when asked, for a repository whose OpenTofu folder exists.
    example.unlink()
    repo.playbook("init", "-e", "init_tfvars_example=true", env=env)
    assert example.read_text() == text
