# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The journal of an age key rotation: where it is, reading it, writing it.

The journal (``<backup folder>/rotate-state.json``, 0600) holds public keys, file names and the
phase reached, never a secret. It exists from the moment the new key joins the key file until the
rotation finishes, so a rerun continues an interrupted rotation and doctor can say one is pending.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._backup import backup_dir, ensure_backup_dir
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write

ROTATE_STATE_NAME = "rotate-state.json"
JOURNAL_VERSION = 1


class JournalError(Exception):
    """The journal cannot be read; the message says what to do."""


def journal_path(root: Path, explicit_backup_dir: str | Path | None = None) -> Path:
    return backup_dir(root, explicit_backup_dir) / ROTATE_STATE_NAME


def load_journal(path: Path) -> dict[str, Any] | None:
    """The journal of an interrupted rotation, or None when no rotation is under way."""
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise JournalError(f"{path}: the rotation journal is unreadable; restore the key from the backup it names, "
                           "or delete it to start over") from None
    if not isinstance(state, dict) or state.get("version") != JOURNAL_VERSION:
        raise JournalError(f"{path}: not a rotation journal of this version")
    return state


def save_journal(path: Path, state: dict[str, Any]) -> None:
    ensure_backup_dir(path.parent)
    atomic_write(path, json.dumps(state, indent=1, sort_keys=True).encode(), mode=0o600)


def remove_journal(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
