# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""configure end to end: real ansible-playbook, real sops binary, real age keys, temporary repositories."""

from __future__ import annotations

import yaml

from tests.conftest import recap_changed


def test_first_run_encrypts_and_second_run_writes_nothing(make_repo):
    repo = make_repo()
    first = repo.playbook("configure")
    assert recap_changed(first.stdout) == 1
    secrets = yaml.safe_load(repo.decrypt("infrastructure/secrets.sops.yaml"))
    cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
    assert secrets["tfstate_password"] == cluster["tfstate_password"]
    assert secrets["proxmox_api_token_secret"] == cluster["proxmox_api_token_secret"]
    before = repo.snapshot()
    second = repo.playbook("configure")
    assert recap_changed(second.stdout) == 0
    assert repo.snapshot() == before
