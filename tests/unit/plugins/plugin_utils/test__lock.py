# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import LockError, repository_lock


def _hold(root: str, cache: str, ready, release) -> None:
    with repository_lock(Path(root), "configure", environ={"XDG_CACHE_HOME": cache}):
        ready.set()
        release.wait(30)


def test_second_writer_waits_then_names_the_holder(tmp_path):
    root, cache = tmp_path / "repo", tmp_path / "cache"
    root.mkdir()
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(root), str(cache), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockError) as info, repository_lock(root, "migrate", timeout=0.3, environ={"XDG_CACHE_HOME": str(cache)}):
            pass
        assert f"configure (pid {holder.pid}" in str(info.value) and "waited 0.3 s" in str(info.value)
    finally:
        release.set()
        holder.join(30)
    # Released with its process: the next run gets the lock at once, and the repository holds no lock file.
    started = time.monotonic()
    with repository_lock(root, "configure", timeout=5, environ={"XDG_CACHE_HOME": str(cache)}):
        pass
    assert time.monotonic() - started < 5 and list(root.iterdir()) == []
    assert (cache / "cluster.secrets" / "locks").stat().st_mode & 0o777 == 0o700


def test_a_missing_repository_is_a_clear_error(tmp_path):
    with pytest.raises(LockError, match="cannot lock"), repository_lock(tmp_path / "nope", "configure"):
        pass
