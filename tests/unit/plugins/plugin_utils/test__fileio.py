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

    def broken_sync() -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_fileio.os, "sync", broken_sync)
    with pytest.raises(OSError, match="disk full"):
        _fileio.atomic_write_many([(keep, b"newer"), (tmp_path / "c.txt", b"x")])
    assert keep.read_bytes() == b"new" and not (tmp_path / "c.txt").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.txt", "keep.txt"]
