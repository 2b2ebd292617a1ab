# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write, private_tempfile


def test_atomic_write_keeps_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write(target, b"one")
    assert target.read_bytes() == b"one" and target.stat().st_mode & 0o777 == 0o644
    target.chmod(0o600)
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_private_tempfile_is_0600_and_removed_even_on_error(tmp_path):
    with pytest.raises(RuntimeError), private_tempfile(b"secret") as path:
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.parent.stat().st_mode & 0o777 == 0o700
        kept = path
        raise RuntimeError("boom")
    assert not kept.exists() and not kept.parent.exists()


def test_atomic_write_many_is_all_or_nothing(tmp_path, monkeypatch):
    from ansible_collections.cluster.secrets.plugins.plugin_utils import _fileio

    keep = tmp_path / "keep.txt"
    keep.write_bytes(b"old")
    keep.chmod(0o600)
    _fileio.atomic_write_many([(keep, b"new"), (tmp_path / "a" / "b.txt", b"created")])
    assert keep.read_bytes() == b"new" and keep.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "a" / "b.txt").read_bytes() == b"created"

    calls = []

    def broken_fsync(fd: int) -> None:  # the second file's flush fails: disk full before any rename
        calls.append(fd)
        if len(calls) == 2:
            raise OSError("disk full")

    monkeypatch.setattr(_fileio.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        _fileio.atomic_write_many([(keep, b"newer"), (tmp_path / "c.txt", b"x")])
    assert keep.read_bytes() == b"new" and not (tmp_path / "c.txt").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.txt", "keep.txt"]


def test_temporaries_are_private_findable_and_stale_ones_are_found(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import TEMP_MARK, stale_temp_files

    target = tmp_path / "secret.sops.yaml"
    (tmp_path / f".secret.sops.yaml{TEMP_MARK}ab12cd34.tmp").write_text("left by a kill")
    (tmp_path / ".secret.sops.yaml.zz99yy88.tmp").write_text("left by an older version")
    (tmp_path / ".other.yaml.cluster-secrets-ab12cd34.tmp").write_text("not beside a target we write")
    (tmp_path / ".secret.sops.yaml.notours.tmp").write_text("not our pattern")
    assert [p.name for p in stale_temp_files([target])] == [".secret.sops.yaml.cluster-secrets-ab12cd34.tmp",
                                                            ".secret.sops.yaml.zz99yy88.tmp"]


def test_private_dir_creates_and_tightens(tmp_path):
    import os

    from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import private_dir

    made = private_dir(tmp_path / "cache" / "cluster.secrets")
    assert made.stat().st_mode & 0o777 == 0o700 and (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    os.chmod(made, 0o755)  # noqa: S103 - the looseness under test
    assert private_dir(made).stat().st_mode & 0o777 == 0o700


def test_os_errors_are_told_in_words():
    import errno

    from ansible_collections.cluster.secrets.plugins.plugin_utils._action import os_error_message

    full = os_error_message(OSError(errno.ENOSPC, "No space left on device"))
    assert full.startswith("No space left on device (free some space and run again);") and "None" not in full
    named = os_error_message(IsADirectoryError(errno.EISDIR, "Is a directory", "/repo/x.yaml"))
    assert named.startswith("Is a directory: /repo/x.yaml;")


def test_cluster_vars_readable_by_others_are_said_once(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import readable_vars_warnings

    cluster, nodes = tmp_path / "cluster.yaml", tmp_path / "nodes.yaml"
    cluster.write_text('cloudflare_token: "a-real-secret"\n')
    nodes.write_text("nodes: []\n")
    for path in (cluster, nodes):
        path.chmod(0o644)
    [warning] = readable_vars_warnings([cluster, nodes], {}, ["a-real-secret"])  # nodes.yaml holds no secret
    assert warning.startswith("cluster.yaml holds secrets but is readable by others (mode 0644)") and "chmod 600" in warning
    assert readable_vars_warnings([cluster], {"vars_modes": {str(cluster): 0o644}}, ["a-real-secret"]) == []
    cluster.chmod(0o600)
    assert readable_vars_warnings([cluster], {}, ["a-real-secret"]) == []
