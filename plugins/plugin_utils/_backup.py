# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private backup copies (cluster.yaml before a migration, an age key before rotation).

Backups go to a folder inside the repository that ignores itself for git (it holds a
``.gitignore`` of ``*``), so a backup holding secrets is never committed by accident.
The folder is 0700 and every backup 0600.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write

BACKUP_DIR_NAME = ".secrets-backup"


def backup_dir(root: Path, explicit: str | Path | None = None) -> Path:
    return Path(explicit).expanduser() if explicit else Path(root) / BACKUP_DIR_NAME


def ensure_backup_dir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    ignore = directory / ".gitignore"
    if not ignore.exists():
        atomic_write(ignore, b"# Backups hold secrets: never commit them.\n*\n", mode=0o644)
    return directory


def timestamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def next_backup_path(directory: Path, name: str) -> Path:
    """A free name ``<name>.<UTC timestamp>`` (``.<n>`` appended when taken) in ``directory``, made ready (0700, ignored)."""
    ensure_backup_dir(directory)
    stamp = timestamp()
    target = directory / f"{name}.{stamp}"
    counter = 1
    while target.exists():
        target = directory / f"{name}.{stamp}.{counter}"
        counter += 1
    return target


def write_backup(directory: Path, name: str, content: bytes) -> Path:
    """Write ``content`` to a new 0600 file ``<name>.<UTC timestamp>`` in ``directory``; return its path."""
    target = next_backup_path(directory, name)
    atomic_write(target, content, mode=0o600)
    return target
