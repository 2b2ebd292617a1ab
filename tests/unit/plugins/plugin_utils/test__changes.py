# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.cluster.secrets.plugins.plugin_utils._changes import ChangeSet, FileChange, plan_plain_file


def test_plain_files_compare_content_and_mode(tmp_path):
    (tmp_path / "same.txt").write_bytes(b"x")
    (tmp_path / "same.txt").chmod(0o644)
    assert plan_plain_file(tmp_path, "same.txt", b"x").state == "unchanged"
    assert plan_plain_file(tmp_path, "same.txt", b"x", mode=0o644).state == "unchanged"
    assert plan_plain_file(tmp_path, "same.txt", b"x", mode=0o600).state == "changed"
    assert plan_plain_file(tmp_path, "same.txt", b"y").content == b"y"
    created = plan_plain_file(tmp_path, "new/file.txt", b"z", new_mode=0o640)
    assert (created.state, created.mode, created.before) == ("created", 0o640, None)


def test_summary_diff_and_apply(tmp_path):
    (tmp_path / "old.yaml").write_text("token: hunter2-secret\n")
    (tmp_path / "gone.yaml").write_text("x\n")
    changes = ChangeSet(tmp_path, [
        FileChange("old.yaml", False, "changed", b"token: masked-later\n", b"token: hunter2-secret\n"),
        FileChange("s.sops.yaml", True, "created", b"ENC", changed_keys=["password"]),
        FileChange("ignored.env", False, "created", b"TOKEN=hunter2-secret\n", plaintext_ignored=True, mode=0o600),
        FileChange("gone.yaml", False, "removed"),
        FileChange(".sops.yaml", False, "created", b"creation_rules: []\n"),
        FileChange("kept.yaml", False, "unchanged"),
    ])
    summary = changes.summary()
    assert summary["created"] == ["s.sops.yaml", "ignored.env", ".sops.yaml"] and summary["removed"] == ["gone.yaml"]
    assert summary["secrets_created"] == ["s.sops.yaml"] and summary["unchanged"] == 1
    assert summary["plaintext_gitignored"] == ["ignored.env"]
    diff = changes.diff(["hunter2-secret"])
    text = repr(diff)
    assert "hunter2-secret" not in text and "password" in text and "(removed)" in text
    written = changes.apply()
    assert written[0].path == ".sops.yaml"
    assert not (tmp_path / "gone.yaml").exists() and not (tmp_path / "kept.yaml").exists()
    assert (tmp_path / "ignored.env").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "old.yaml").read_text() == "token: masked-later\n"
    assert changes.changed and not ChangeSet(tmp_path, [FileChange("a", False, "unchanged")]).changed


def test_the_old_content_of_a_private_file_is_never_shown(tmp_path):
    """Gitignored plaintext is written 0600; a value since removed from the cluster vars cannot be masked."""
    (tmp_path / "was-secret.env").write_text("TOKEN=old-rotated-secret\n")
    (tmp_path / "was-secret.env").chmod(0o600)
    change = plan_plain_file(tmp_path, "was-secret.env", b"TOKEN=\n")
    [diff] = ChangeSet(tmp_path, [change]).diff([])
    assert "old-rotated-secret" not in repr(diff) and diff["after"] == "TOKEN=\n"
    (tmp_path / "shared.txt").write_text("old\n")
    (tmp_path / "shared.txt").chmod(0o644)
    assert ChangeSet(tmp_path, [plan_plain_file(tmp_path, "shared.txt", b"new\n")]).diff([])[0]["before"] == "old\n"
