# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The change set: files a run would create, change or remove, how to tell a person, and the atomic apply.

configure, the External Secrets GitOps writer, migrate and rotate all plan into a ``ChangeSet``;
check mode is the plan without ``apply()``. ``diff()`` never shows a secret: encrypted files are
shown by the names of the keys that changed, gitignored plaintext not at all, and plain files
with every secret value given masked.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write_many
from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import scrub
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import SOPS_CONFIG_NAME


@dataclass
class FileChange:
    path: str
    secret: bool
    state: str  # created | changed | unchanged | removed | pending (secret files while they are compared)
    content: bytes | None = None
    before: bytes | None = None
    changed_keys: list[str] = field(default_factory=list)
    mode: int | None = None
    # A plain (not *.sops.*) file that holds a secret value and that git ignores: written 0600, never shown.
    plaintext_ignored: bool = False
    # Secret files: the parsed old and new plaintext, in memory only, for the overwrite guard.
    previous: Any = None
    rendered: Any = None
    # Secret files: the keyed cache entry to record once the new ciphertext is written.
    cache_entry: dict[str, str] | None = None
    # The file on disk is private to its owner (as gitignored plaintext is written): its old content is never shown.
    before_private: bool = False


def plan_plain_file(root: Path, path: str, content: bytes, mode: int | None = None, new_mode: int | None = None,
                    plaintext_ignored: bool = False) -> FileChange:
    """A plain file compared with what is on disk (content and, when given, mode)."""
    target = root / path
    before = target.read_bytes() if target.is_file() else None
    current_mode = target.stat().st_mode & 0o7777 if before is not None else None
    mode_differs = mode is not None and current_mode is not None and mode != current_mode
    state = "created" if before is None else ("unchanged" if before == content and not mode_differs else "changed")
    return FileChange(path, False, state, content if state != "unchanged" else None, before,
                      mode=mode if mode is not None else (new_mode if before is None else None),
                      plaintext_ignored=plaintext_ignored,
                      before_private=current_mode is not None and not current_mode & 0o077)


def new_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file (as makejinja writes): 0666 less the umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@dataclass
class ChangeSet:
    root: Path
    files: list[FileChange] = field(default_factory=list)
    # Temporary files an interrupted run left beside the files this plan writes (removed by apply).
    stale_temps: list[Path] = field(default_factory=list)
    # Written before every other file (sops reads its rules from disk).
    first: tuple[str, ...] = (SOPS_CONFIG_NAME,)

    def paths(self, state: str, secret: bool | None = None) -> list[str]:
        return [f.path for f in self.files if f.state == state and (secret is None or f.secret == secret)]

    @property
    def changed(self) -> bool:
        return any(f.state != "unchanged" for f in self.files)

    def summary(self) -> dict[str, Any]:
        return {
            "created": self.paths("created"),
            "updated": self.paths("changed"),
            "removed": self.paths("removed"),
            "unchanged": len(self.paths("unchanged")),
            "secrets_created": self.paths("created", True),
            "secrets_updated": self.paths("changed", True),
            "secrets_unchanged": len(self.paths("unchanged", True)),
            "plaintext_gitignored": sorted(f.path for f in self.files if f.plaintext_ignored),
        }

    def diff(self, secrets: Iterable[str] = ()) -> list[dict[str, str]]:
        """Before/after per changed file; no secret value, whatever the file (``secrets`` are masked in plain files)."""
        masked = list(secrets)
        diffs = []
        for item in self.files:
            if item.state == "unchanged" or (item.path == SOPS_CONFIG_NAME and item.content is None):
                continue
            if item.state == "removed":
                diffs.append({"before_header": item.path, "after_header": f"{item.path} (removed)",
                              "before": "(file)\n", "after": ""})
            elif item.secret:
                diffs.append({
                    "before_header": f"{item.path} (encrypted)", "after_header": f"{item.path} (encrypted): keys changed",
                    "before": "" if item.state == "created" else "(encrypted; keys unchanged are not shown)\n",
                    "after": "".join(f"{k}\n" for k in item.changed_keys) or "(re-encrypted for new recipients)\n",
                })
            elif item.plaintext_ignored:
                hidden = "(plaintext, gitignored: holds secret values, not shown)\n"
                diffs.append({"before_header": item.path, "after_header": f"{item.path} (plaintext, gitignored, 0600)",
                              "before": "" if item.before is None else hidden, "after": hidden})
            else:
                # A private file may hold values the cluster vars no longer have (so they cannot be masked): not shown.
                before = ("(private file: its previous content is not shown)\n" if item.before_private and item.before
                          else scrub(_text(item.before), masked))
                diffs.append({"before_header": item.path, "after_header": item.path,
                              "before": before, "after": scrub(_text(item.content), masked)})
        return diffs

    def apply(self) -> list[FileChange]:
        """Remove stale temporaries, write every change atomically (``first`` ones first), then remove files.

        Returns the files written."""
        for stale in self.stale_temps:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        ordered = sorted(self.files, key=lambda f: (f.path not in self.first, f.path))
        writes = [f for f in ordered if f.state in ("created", "changed") and f.content is not None]
        atomic_write_many([(self.root / f.path, f.content, f.mode) for f in writes if f.content is not None])
        for item in ordered:
            if item.state == "removed":
                (self.root / item.path).unlink(missing_ok=True)
        return writes


def _text(content: bytes | None) -> str:
    if content is None:
        return ""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return "(binary content)\n"
