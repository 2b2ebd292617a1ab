# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic, private file writes.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._parallel import parallel_map

# Temporary files sit beside their target (so the rename is atomic), private (0600), and named so that a crash
# leaves them findable: ``.<name>.cluster-secrets-XXXXXXXX.tmp``. init's .gitignore covers the pattern; the next
# configure removes the ones it finds beside the files it renders (older versions used ``.<name>.XXXXXXXX.tmp``).
TEMP_MARK = ".cluster-secrets-"
TEMP_GITIGNORE_PATTERN = "*.cluster-secrets-*.tmp"
# Flushes to disk in flight at once: the wait is the disk's, and a few in parallel let it batch them.
FSYNC_THREADS = 8


def _temp_prefix(path: Path) -> str:
    return f".{path.name}{TEMP_MARK}"


def stale_temp_files(targets: Iterable[Path]) -> list[Path]:
    """Temporary files an interrupted run left beside ``targets`` (ours only; run this while holding the lock)."""
    found: set[Path] = set()
    for target in targets:
        pattern = re.compile(r"^\." + re.escape(target.name) + r"\.(?:cluster-secrets-)?[a-z0-9_]{8}\.tmp$")
        try:
            entries = list(os.scandir(target.parent))
        except OSError:
            continue
        found.update(Path(entry.path) for entry in entries if pattern.match(entry.name) and entry.is_file(follow_symlinks=False))
    return sorted(found)


def permission_bits(path: Path) -> int | None:
    """A file's permission bits (``0o644``), or None when it cannot be read."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


def atomic_write(path: Path, content: bytes, mode: int | None = None) -> None:
    """Write ``content`` to ``path`` so readers see the old or the new bytes, never a mix.

    The data goes to a temporary file in the same directory, is flushed to disk,
    and is renamed over ``path``. An existing file keeps its permission bits
    unless ``mode`` is given; a new file gets ``mode`` or 0644.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_many(items: list[tuple[Path, bytes, int | None]] | list[tuple[Path, bytes]]) -> None:
    """Write several files so each one is either wholly old or wholly new, with one flush to disk.

    Every new content first goes to a temporary file beside its target; when all of them are
    written and flushed, they are renamed into place.
    Each item is ``(path, content)`` or ``(path, content, mode)``; without a mode an existing file keeps its
    own and a new one gets 0644. Every temporary is written and flushed to disk before the first rename, and the
    folders are flushed after the last. A failure before the renames removes the temporaries and leaves every target untouched; a
    rename that fails leaves the targets already renamed new and the others old (each file is
    atomic, the set is not), and no temporary behind.
    """
    staged: list[tuple[str, Path]] = []
    modes: list[int] = []
    try:
        for item in items:
            target, content = item[0], item[1]
            wanted = item[2] if len(item) > 2 else None  # type: ignore[misc]
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                mode = wanted if wanted is not None else path.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o644
            fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
            staged.append((tmp_name, path))
            modes.append(mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
        # Flushing waits on the disk, not the CPU: several at a time (each temporary reached the disk before any rename),
        # while the temporaries are still 0600 (readable by their owner whatever mode the target gets).
        parallel_map(_fsync_file, [tmp_name for tmp_name, _path in staged], FSYNC_THREADS)
        for (tmp_name, _path), mode in zip(staged, modes, strict=True):
            os.chmod(tmp_name, mode)
    except BaseException:
        for tmp_name, _path in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        raise
    try:
        for tmp_name, path in staged:
            os.replace(tmp_name, path)
        _fsync_dirs({path.parent for _tmp, path in staged})
    finally:
        for tmp_name, _path in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)


def _fsync_file(name: str) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_dirs(directories: Iterable[Path]) -> None:
    """Make the renames durable: fsync the folders written to (not every file system on the host)."""
    parallel_map(_fsync_dir, sorted(directories), FSYNC_THREADS)


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner may enter (0700): created with that mode, tightened if it is ours and looser."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700)
    if path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
        os.chmod(path, 0o700)
    return path


@contextlib.contextmanager
def private_tempfile(content: bytes, suffix: str = "") -> Iterator[Path]:
    """Hold ``content`` in a 0600 file in a 0700 directory, removed on every exit path."""
    directory = tempfile.mkdtemp(prefix="cluster-secrets-")
    try:
        path = Path(directory) / f"data{suffix}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        yield path
    finally:
        for entry in Path(directory).iterdir():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        os.rmdir(directory)
