# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Atomic, private file writes.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    written, one ``os.sync()`` makes them durable, and only then are they renamed into place.
    Each item is ``(path, content)`` or ``(path, content, mode)``; without a mode an existing file keeps its
    own and a new one gets 0644. A failure before the renames removes the temporaries and leaves every target untouched; a
    rename that fails leaves the targets already renamed new and the others old (each file is
    atomic, the set is not), and no temporary behind.
    """
    staged: list[tuple[str, Path]] = []
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
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp_name, path))
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.chmod(tmp_name, mode)
        os.sync()
    except BaseException:
        for tmp_name, _path in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        raise
    try:
        for tmp_name, path in staged:
            os.replace(tmp_name, path)
    finally:
        for tmp_name, _path in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)


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
