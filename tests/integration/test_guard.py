# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The overwrite guard inside configure: real ansible-playbook, real sops, real age keys."""

from __future__ import annotations

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
from tests.conftest import recap_changed
from tests.day_two import HAND_EDITED, INFRA_KEYS, INFRA_SECRETS, hand_edited_repo


def test_configure_refuses_to_blank_hand_edited_secrets(make_repo):
    repo = hand_edited_repo(make_repo, proxmox=False)
    before = repo.snapshot()
    for extra in ((), ("--check",), ("--check", "--diff", "-vvvv")):
        result = repo.playbook("configure", *extra, check=False)
        assert result.returncode != 0
        assert "configure stopped before writing anything" in result.stdout
        for key in INFRA_KEYS:
            assert key in result.stdout
        assert "proxmox_api_token_secret: would be removed" in result.stdout
        assert "tfstate_username: would change to a template default" in result.stdout
        for value in HAND_EDITED.values():
            assert value not in result.stdout
        assert "cluster.secrets.migrate" in result.stdout
        assert repo.snapshot() == before


def test_override_replaces_on_purpose(make_repo):
    repo = hand_edited_repo(make_repo, proxmox=False)
    result = repo.playbook("configure", "-e", "configure_allow_secret_overwrite=true")
    assert recap_changed(result.stdout) == 1
    secrets = yaml.safe_load(repo.decrypt(INFRA_SECRETS))
    assert secrets["tfstate_password"] == ""
    assert secrets["tfstate_username"] == "terraform"
    assert "proxmox_api_token_secret" not in secrets


def test_a_value_set_in_cluster_yaml_is_an_ordinary_change(make_repo):
    repo = make_repo()
    repo.playbook("configure")
    cluster = repo.root / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace('tfstate_password: "demo', 'tfstate_password: "changed demo'))
    result = repo.playbook("configure")
    assert recap_changed(result.stdout) == 1
    assert yaml.safe_load(repo.decrypt(INFRA_SECRETS))["tfstate_password"].startswith("changed demo")


def test_removing_a_secret_from_cluster_yaml_is_stopped(make_repo):
    repo = make_repo()
    repo.playbook("configure")
    cluster = repo.root / "cluster.yaml"
    cluster.write_text("".join(line for line in cluster.read_text().splitlines(keepends=True)
                               if not line.startswith("tfstate_password:")))
    before = repo.snapshot()
    result = repo.playbook("configure", check=False)
    assert result.returncode != 0
    assert "tfstate_password: would become empty" in result.stdout
    assert repo.snapshot() == before


def test_a_secret_file_that_cannot_be_decrypted_stops_configure(make_repo):
    repo = make_repo()
    repo.playbook("configure")
    cluster = repo.root / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace('tfstate_password: "demo', 'tfstate_password: "changed demo'))
    repo.key_file.unlink()
    generate_key_file(repo.key_file)  # a different key: the existing files cannot be read any more
    before = repo.snapshot()
    result = repo.playbook("configure", check=False)
    assert result.returncode != 0
    assert "cannot decrypt" in result.stdout
    assert INFRA_SECRETS in result.stdout
    assert repo.snapshot() == before
