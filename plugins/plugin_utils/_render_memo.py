# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Skipping a run that would change nothing: what the last run read, keyed, and the state of what it wrote.

After a run has written, configure remembers (in its private cache, beside the plaintext cache):

- a keyed fingerprint (HMAC with the key derived from the age identities) of everything rendering
  reads: the validated cluster vars (the validation fingerprint), every file of the repository that
  is not an output (size, modification and change time, inode, mode; a link's target too; ``.git`` and
  tool folders left out), the template folders, data files and plugin paths declared outside it or
  under a tool folder, the plugin modules loaded, the collection's own code and built-in templates,
  the options, the versions of Python and the libraries that render, and the process environment
  entries the templates read;
- the state (size, modification and change time, inode) of every output, the summary and the warnings.

When both match, nothing configure would render can differ from what is on disk, so the run reports
the remembered summary without rendering, comparing or decrypting anything. Any difference, an
interrupted run's temporary file, a new file anywhere in the repository, means a full run; so does a
gitignored plaintext output that git no longer ignores (the caller checks), a linked folder in the
repository, or a file changed within two seconds on a file system whose times are whole seconds. A plugin
whose output depends on more than the repository's files, the cluster vars and the environment
entries the templates read (the time, the network) needs ``configure_cache: false``.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._render import BUILTIN_TEMPLATES, RenderSettings

# Folders no template or plugin reads, and that tools rewrite all the time.
SKIPPED_FOLDERS = frozenset({".git", ".venv", "venv", "node_modules", ".terraform", "__pycache__", ".task",
                             ".ruff_cache", ".mypy_cache", ".pytest_cache"})
CODE = Path(__file__).resolve().parent
VERSION = 2
# A change this recent, on a file system that keeps whole seconds, may not show in the times: no memo then.
COARSE_WINDOW_NS = 2_000_000_000
LIBRARIES = json.dumps([sys.version, jinja2.__version__, yaml.__version__])

State = tuple[int, ...]


def entry_state(path: str | Path) -> State | None:
    """A file's size, modification and change time, inode and mode; for a link, its target's as well."""
    try:
        info = os.lstat(path)
        state: State = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_mode)
        if os.path.islink(path):
            target = os.stat(path)
            state += (target.st_size, target.st_mtime_ns, target.st_ctime_ns, target.st_ino, target.st_mode)
        return state
    except OSError:
        return None


@dataclass
class Snapshot:
    """What a run may read, taken before it renders: the repository's files and the declared paths elsewhere."""

    tree: dict[str, State] = field(default_factory=dict)
    outside: list[tuple[str, list[tuple[str, State]]]] = field(default_factory=list)
    # Why no memo may be kept for this run (a linked folder, times too coarse to trust), or None.
    unsure: str | None = None


def _walk(top: Path, snapshot: Snapshot, now: int) -> dict[str, State]:
    state: dict[str, State] = {}
    stack = [(str(top), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIPPED_FOLDERS:
                    stack.append((entry.path, rel + "/"))
                continue
            if entry.is_symlink() and os.path.isdir(entry.path):
                snapshot.unsure = f"{rel} links to a folder"
            info = entry_state(entry.path)
            if info is None:
                continue
            if info[1] % 1_000_000_000 == 0 and now - info[1] < COARSE_WINDOW_NS:
                snapshot.unsure = f"{rel} changed within the file system's time resolution"
            state[rel] = info
    return state


def take_snapshot(root: Path, settings: RenderSettings, extra: Iterable[Path]) -> Snapshot:
    now = time.time_ns()
    snapshot = Snapshot()
    snapshot.tree = _walk(root, snapshot, now)
    declared = [*settings.inputs, *settings.import_paths, *settings.data_files, *extra, BUILTIN_TEMPLATES, CODE,
                *(p for paths in settings.file_data.values() for p in paths)]
    for path in sorted({Path(os.path.abspath(p)) for p in declared}):
        inside = path.is_relative_to(root) and not SKIPPED_FOLDERS & set(path.relative_to(root).parts)
        if inside:
            continue  # in the tree already
        if path.is_dir():
            snapshot.outside.append((str(path), sorted(_walk(path, snapshot, now).items())))
        else:
            state = entry_state(path)
            snapshot.outside.append((str(path), [("", state)] if state is not None else []))
    return snapshot


def output_state(root: Path, paths: Iterable[str]) -> dict[str, list[int] | None]:
    state: dict[str, list[int] | None] = {}
    for rel in paths:
        info = entry_state(root / rel)
        state[rel] = list(info) if info is not None else None
    return state


def inputs_digest(key: bytes, snapshot: Snapshot, outputs: Iterable[str], fingerprint: str, env_keys: Iterable[str],
                  plugin_files: Iterable[str]) -> str:
    """The keyed fingerprint of what rendering reads, the outputs of the run left out of the repository's tree."""
    skip = set(outputs)
    digest = hmac.new(key, f"cluster.secrets render memo v{VERSION}\0{fingerprint}\0{LIBRARIES}".encode(), hashlib.sha256)
    digest.update(json.dumps(sorted((rel, list(info)) for rel, info in snapshot.tree.items() if rel not in skip)).encode())
    digest.update(json.dumps(snapshot.outside).encode())
    digest.update(json.dumps([(path, entry_state(path)) for path in sorted(set(plugin_files))]).encode())
    keys = sorted(set(env_keys))
    environ = dict(os.environ) if "*" in keys else {k: os.environ.get(k) for k in keys}
    digest.update(json.dumps([keys, sorted(environ.items(), key=lambda item: item[0])]).encode())
    return digest.hexdigest()


def remembered(memo: Any, key: bytes, root: Path, snapshot: Snapshot, fingerprint: str) -> dict[str, Any] | None:
    """The last run's memo when nothing it depends on changed (then nothing needs rendering), else None.

    ``snapshot`` is this run's, taken before anything is rendered (the same one a full run then remembers).
    """
    if snapshot.unsure or not isinstance(memo, dict) or memo.get("version") != VERSION:
        return None
    outputs = memo.get("outputs")
    if not isinstance(outputs, dict) or output_state(root, outputs) != outputs:
        return None
    digest = inputs_digest(key, snapshot, outputs, fingerprint, memo.get("env_keys") or [], memo.get("plugin_files") or [])
    return memo if hmac.compare_digest(digest, str(memo.get("inputs", ""))) else None
