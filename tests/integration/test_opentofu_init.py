# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""configure's last step, OpenTofu init: real ansible-playbook, a real tofu/terraform binary, a real HTTP state server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import recap_changed
from tests.integration.opentofu_support import path_without_tofu, set_cluster_vars, tofu_env, wire_repo


def tofu_warnings(output: str) -> list[str]:
    """Ansible's [WARNING] lines, without the one about the implicit localhost inventory."""
    return [line for line in output.splitlines() if line.startswith("[WARNING]") and "inventory" not in line]


SKIP_LINE = "infrastructure secrets are not configured; add `tfstate_password` to `cluster.yaml` to enable"


def test_credentials_set_configure_runs_init_once(make_repo, tfstate_server, tofu_binary):
    repo = make_repo()
    wire_repo(repo, tfstate_server.state_url(), tfstate_server.store.password)
    env = tofu_env(repo, tofu_binary)

    first = repo.playbook("configure", env=env)
    assert recap_changed(first.stdout) == 1  # one task: rendered and encrypted, then init with the secrets in memory
    assert "OpenTofu init ran in infrastructure/tofu" in first.stdout
    assert tofu_warnings(first.stdout) == []
    # The server saw the binary, authenticated as tfstate_username with tfstate_password.
    assert tfstate_server.store.requests, "init never reached the state server"
    assert all(r.authorized and r.user == "terraform" for r in tfstate_server.store.requests)
    assert "GET /states/proxmox" in tfstate_server.store.methods()
    data_dir = repo.root / "infrastructure/tofu/.terraform"
    backend = json.loads((data_dir / "terraform.tfstate").read_text())["backend"]
    assert backend["type"] == "http"
    assert backend["config"]["address"] == tfstate_server.state_url()
    assert backend["config"]["lock_address"] == tfstate_server.state_url() + "/lock"
    assert (data_dir / "cluster.secrets.json").is_file()

    seen = len(tfstate_server.store.requests)
    before = repo.snapshot()
    second = repo.playbook("configure", "-v", env=env)  # at normal verbosity a rerun with nothing to do says nothing
    assert recap_changed(second.stdout) == 0
    assert "OpenTofu is initialised in infrastructure/tofu" in second.stdout
    assert len(tfstate_server.store.requests) == seen, "a second run with the same settings must not run init"
    assert repo.snapshot() == before

    # New credentials: init runs again (and the server accepts them).
    tfstate_server.store.password = tfstate_server.store.password + "-rotated"
    set_cluster_vars(repo, tfstate_password=tfstate_server.store.password)
    third = repo.playbook("configure", env=env)
    assert recap_changed(third.stdout) == 1
    assert "the backend credentials changed" in third.stdout
    assert len(tfstate_server.store.requests) > seen
    assert all(r.authorized for r in tfstate_server.store.requests[seen:])


def test_check_mode_reports_init_without_running_it(make_repo, tfstate_server, tofu_binary):
    repo = make_repo()
    wire_repo(repo, tfstate_server.state_url(), tfstate_server.store.password)
    env = tofu_env(repo, tofu_binary)
    repo.playbook("configure", env=env)
    marker = repo.root / "infrastructure/tofu/.terraform/cluster.secrets.json"
    marker.unlink()
    seen = len(tfstate_server.store.requests)
    before = repo.snapshot()
    check = repo.playbook("configure", "--check", "--diff", env=env)
    assert recap_changed(check.stdout) == 1
    assert "OpenTofu init would run in infrastructure/tofu" in check.stdout
    assert "because: not initialised by cluster.secrets yet" in check.stdout  # the diff
    assert len(tfstate_server.store.requests) == seen
    assert repo.snapshot() == before
    assert not marker.exists()


@pytest.mark.parametrize("password", [None, "CHANGE-ME", "change-me-to-the-worker-password"])
def test_no_password_or_placeholder_skips_init(make_repo, tfstate_server, tofu_binary, password):
    repo = make_repo()
    wire_repo(repo, tfstate_server.state_url(), password)
    result = repo.playbook("configure", env=tofu_env(repo, tofu_binary))
    assert SKIP_LINE in result.stdout
    assert tofu_warnings(result.stdout) == []
    assert tfstate_server.store.requests == []
    assert not (repo.root / "infrastructure/tofu/.terraform").exists()


def test_wrong_password_warns_and_required_fails(make_repo, tfstate_server, tofu_binary):
    repo = make_repo()
    wrong = tfstate_server.store.password + "-wrong"
    wire_repo(repo, tfstate_server.state_url(), wrong)
    env = tofu_env(repo, tofu_binary)

    warned = repo.playbook("configure", env=env)
    assert len(tofu_warnings(warned.stdout)) == 1
    assert "credentials rejected" in tofu_warnings(warned.stdout)[0]
    assert "cluster.secrets.infra" in warned.stdout  # says what to do next
    assert wrong not in warned.stdout
    assert tfstate_server.store.requests and not any(r.authorized for r in tfstate_server.store.requests)
    # a failed first init leaves nothing of the binary's behind: only the marker that remembers the warning
    data_dir = repo.root / "infrastructure/tofu/.terraform"
    assert sorted(p.name for p in data_dir.iterdir()) == ["cluster.secrets.json"], "a failed first init leaves no state behind"
    again = repo.playbook("configure", env=env)
    assert tofu_warnings(again.stdout) == [], "the same failure with the same inputs warns once"
    assert "still not done: credentials rejected, as on the last run" in again.stdout

    failed = repo.playbook("configure", "-e", "opentofu_init_required=true", env=env, check=False)
    assert failed.returncode != 0
    assert "credentials rejected" in failed.stdout
    assert wrong not in failed.stdout


def test_unreachable_backend_warns(make_repo, tofu_binary):
    repo = make_repo()
    wire_repo(repo, "http://127.0.0.1:9/states/proxmox", "a-real-password-for-nothing")
    result = repo.playbook("configure", env=tofu_env(repo, tofu_binary))
    assert "backend unreachable" in result.stdout
    assert "Deploy the state backend" in result.stdout


def test_lock_held_is_named(make_repo, tfstate_server, tofu_binary):
    repo = make_repo()
    wire_repo(repo, tfstate_server.state_url(), tfstate_server.store.password)
    env = tofu_env(repo, tofu_binary)
    repo.playbook("configure", env=env)
    tfstate_server.take_lock(lock_id="lock-of-someone-else")
    result = repo.playbook("infra", "-e", "opentofu_command=plan", env=env, check=False)
    assert result.returncode != 0
    assert "the state is locked" in result.stdout
    assert "lock-of-someone-else" in result.stdout


def test_invalid_configuration_is_named(make_repo, tfstate_server, tofu_binary):
    repo = make_repo()
    wire_repo(repo, tfstate_server.state_url(), tfstate_server.store.password)
    repo.write("templates/infrastructure/tofu/broken.tf", 'resource "x" {\n')
    result = repo.playbook("configure", env=tofu_env(repo, tofu_binary))
    assert "configuration invalid" in result.stdout
    assert "broken.tf" in result.stdout


def test_no_backend_and_no_binary_configure_succeeds(make_repo):
    repo = make_repo()
    env = repo.env(PATH=path_without_tofu())
    result = repo.playbook("configure", "-e", '{"configure_exclude_patterns": ["infrastructure/tofu/backend.tf.j2"]}', env=env)
    assert not (repo.root / "infrastructure/tofu/backend.tf").exists()
    assert "backend.tf does not exist" in result.stdout
    assert tofu_warnings(result.stdout) == []


def test_backend_but_no_binary_warns(make_repo, tfstate_server):
    repo = make_repo()
    wire_repo(repo, tfstate_server.state_url(), tfstate_server.store.password)
    result = repo.playbook("configure", env=repo.env(PATH=path_without_tofu()))
    assert "binary missing" in " ".join(tofu_warnings(result.stdout))
    assert tfstate_server.store.requests == []


def test_rendered_files_keep_plaintext_variables_out_of_git(make_repo):
    repo = make_repo()
    repo.playbook("configure", env=repo.env(PATH=path_without_tofu()))
    tofu = repo.root / "infrastructure/tofu"
    variables = (tofu / "variables.tf").read_text()
    assert 'variable "proxmox_api_token_secret" {\n  type      = string\n  sensitive = true' in variables
    subprocess.run(["git", "init", "-q", str(repo.root)], check=True)
    names = ["prod.tfvars", "prod.tfvars.json", "secrets.tfvars.sops.yaml", "secrets.tfvars.sops.json", "terraform.tfstate",
             "terraform.tfstate.backup", ".terraform/terraform.tfstate", ".terraform.lock.hcl", "main.tf"]
    for name in names:
        repo.write(f"infrastructure/tofu/{name}", "x\n")
    ignored = subprocess.run(["git", "-C", str(repo.root), "check-ignore", *[f"infrastructure/tofu/{n}" for n in names]],
                             capture_output=True, text=True, check=False).stdout.split()
    assert sorted(Path(p).name for p in ignored) == sorted(["prod.tfvars", "prod.tfvars.json", "terraform.tfstate",
                                                            "terraform.tfstate.backup", "terraform.tfstate"])
