# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""migrate end to end: hand-edited secrets move into cluster.yaml and configure keeps them."""

from __future__ import annotations

import stat

import yaml

from tests.conftest import recap_changed
from tests.day_two import HAND_EDITED, INFRA_SECRETS, PROXMOX, encrypt_in_place, hand_edited_repo


def test_migrate_then_configure_keeps_every_hand_edited_value(make_repo):
    repo = hand_edited_repo(make_repo)
    original = yaml.safe_load(repo.decrypt(INFRA_SECRETS))
    assert original == {**HAND_EDITED, **PROXMOX}

    refused = repo.playbook("configure", check=False)
    assert refused.returncode != 0
    for key in HAND_EDITED:
        assert key in refused.stdout

    before = repo.snapshot()
    checked = repo.playbook("migrate", "--check", "--diff", "-vvvv")
    assert repo.snapshot() == before
    for value in HAND_EDITED.values():
        assert value not in checked.stdout

    cluster_before = (repo.root / "cluster.yaml").read_text()
    migrated = repo.playbook("migrate")
    assert recap_changed(migrated.stdout) == 1
    for key in HAND_EDITED:
        assert f"added: {INFRA_SECRETS}: {key}" in migrated.stdout
    for key in PROXMOX:
        assert f"unchanged: {INFRA_SECRETS}: {key}" in migrated.stdout
    for value in HAND_EDITED.values():
        assert value not in migrated.stdout
    cluster_text = (repo.root / "cluster.yaml").read_text()
    # comments, order and the rest of the file are intact: the old text is a prefix of the new one
    assert cluster_text.startswith(cluster_before.rstrip("\n"))
    assert "# Infrastructure secrets were kept in secrets.sops.yaml until now" in cluster_text
    assert f"# Migrated from {INFRA_SECRETS}" in cluster_text
    assert stat.S_IMODE((repo.root / "cluster.yaml").stat().st_mode) & 0o077 == 0
    backups = list((repo.root / ".secrets-backup").glob("cluster.yaml.*"))
    assert len(backups) == 1
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert backups[0].read_text() == cluster_before
    assert (repo.root / ".secrets-backup" / ".gitignore").read_text().strip().endswith("*")

    again = repo.playbook("migrate")
    assert recap_changed(again.stdout) == 0

    encrypted = (repo.root / INFRA_SECRETS).read_bytes()
    configured = repo.playbook("configure")
    assert yaml.safe_load(repo.decrypt(INFRA_SECRETS)) == original
    assert (repo.root / INFRA_SECRETS).read_bytes() == encrypted  # same data, same recipients: left as it was
    assert f"updated: {INFRA_SECRETS}" not in configured.stdout
    snapshot = repo.snapshot()
    second = repo.playbook("configure")
    assert recap_changed(second.stdout) == 0
    assert repo.snapshot() == snapshot


def test_migrate_warns_when_configure_would_still_stop(make_repo):
    repo = hand_edited_repo(make_repo, proxmox=False)
    result = repo.playbook("migrate")
    assert "configure would still stop" in result.stdout
    assert "proxmox_api_token_secret: would be removed" in result.stdout
    for value in (*HAND_EDITED.values(), *PROXMOX.values()):
        assert value not in result.stdout


def test_keys_left_alone_do_not_mark_the_task_skipped(make_repo):
    """`skipped` is a result key Ansible reserves: a list there turned a migration that wrote into `skipping:`, changed=0."""
    repo = hand_edited_repo(make_repo)
    body = repo.decrypt(INFRA_SECRETS) + 'unused_token: "CHANGE-ME"\n'  # a placeholder: left alone, reported
    repo.write(INFRA_SECRETS, body)
    encrypt_in_place(repo, INFRA_SECRETS)
    result = repo.playbook("migrate", "-v")
    assert recap_changed(result.stdout) == 1
    # the migrate task itself (the one-writer check before it is skipped on purpose: one host)
    migrate_task = result.stdout.split("TASK [cluster.secrets.migrate : Copy the values of existing secret files into cluster.yaml]")[1]
    migrate_task = migrate_task.split("TASK [")[0]
    assert "skipping:" not in migrate_task and "changed: [localhost]" in migrate_task
    assert f"skipped: {INFRA_SECRETS}: unused_token (empty or a placeholder)" in result.stdout
    assert '"not_migrated"' in result.stdout


def test_a_key_the_templates_no_longer_render_breaks_the_loop(make_repo):
    """configure says "run migrate", migrate says "run configure": for a key migrate already moved, say what happened."""
    repo = hand_edited_repo(make_repo, proxmox=False)
    first = repo.playbook("migrate")
    assert "proxmox_api_token_secret: would be removed" in first.stdout
    assert "no longer rendered by the templates" in first.stdout
    assert "Migrating again cannot change this" in first.stdout
    again = repo.playbook("migrate")  # nothing left to migrate: it must still say why configure stops
    assert recap_changed(again.stdout) == 0
    for output in (first.stdout, again.stdout):
        assert "Migrating again cannot change this" in output
        assert "configure_allow_secret_overwrite=true" in output
        assert "first with `ansible-playbook cluster.secrets.migrate" not in output
        for value in (*HAND_EDITED.values(), *PROXMOX.values()):
            assert value not in output
