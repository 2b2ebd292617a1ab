# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Skipping a run that would change nothing: what the last run read, keyed, and the state of what it wrote.

After a run has written, configure remembers (in its private cache, beside the plaintext cache):

- a keyed fingerprint (HMAC with the key derived from the age identities) of everything rendering
  reads: the validated cluster vars (the validation fingerprint), every file of the repository that
  is not an output (size, modification time, inode, mode; ``.git`` and tool folders left out), the
  template folders, data files and plugin paths outside it, the collection's own code and built-in
  templates, the options, and the process environment entries the templates read;
- the state (size, modification and change time, inode) of every output, the summary and the warnings.

When both match, nothing configure would render can differ from what is on disk, so the run reports
the remembered summary without rendering, comparing or decrypting anything. Any difference, an
interrupted run's temporary file, a new file anywhere in the repository, means a full run. A plugin
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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._render import BUILTIN_TEMPLATES, RenderSettings

# Folders no template or plugin reads, and that tools rewrite all the time.
SKIPPED_FOLDERS = frozenset({".git", ".venv", "venv", "node_modules", ".terraform", "__pycache__", ".task",
                             ".ruff_cache", ".mypy_cache", ".pytest_cache"})
CODE = Path(__file__).resolve().parent
VERSION = 1


def tree_state(root: Path) -> dict[str, tuple[int, ...]]:
    """Every file below ``root`` (relative path to size, mtime, inode, mode), tool folders left out."""
    state: dict[str, tuple[int, ...]] = {}
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            rel = prefix + entry.name
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIPPED_FOLDERS:
                    stack.append((entry.path, rel + "/"))
            else:
                state[rel] = (info.st_size, info.st_mtime_ns, info.st_ino, info.st_mode)
    return state


def output_state(root: Path, paths: Iterable[str]) -> dict[str, list[int] | None]:
    state: dict[str, list[int] | None] = {}
    for rel in paths:
        try:
            info = os.lstat(root / rel)
            state[rel] = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_mode]
        except OSError:
            state[rel] = None
    return state


def _outside(root: Path, settings: RenderSettings, extra: Iterable[Path]) -> list[Path]:
    paths = [*settings.inputs, *settings.import_paths, *settings.data_files, *extra, BUILTIN_TEMPLATES, CODE]
    return sorted({p.resolve() for p in paths if not p.resolve().is_relative_to(root)})


def inputs_digest(key: bytes, root: Path, tree: Mapping[str, tuple[int, ...]], outputs: Iterable[str],
                  settings: RenderSettings, extra: Iterable[Path], fingerprint: str, env_keys: Iterable[str]) -> str:
    """The keyed fingerprint of what rendering reads, the outputs of the run left out of the repository's tree."""
    skip = set(outputs)
    digest = hmac.new(key, f"cluster.secrets render memo v{VERSION}\0{fingerprint}".encode(), hashlib.sha256)
    digest.update(json.dumps(sorted((rel, list(info)) for rel, info in tree.items() if rel not in skip)).encode())
    for path in _outside(root, settings, extra):
        digest.update(json.dumps([str(path), sorted((rel, list(info)) for rel, info in tree_state(path).items())
                                  if path.is_dir() else str(os.stat(path).st_mtime_ns) if path.exists() else None]).encode())
    keys = sorted(set(env_keys))
    environ = dict(os.environ) if "*" in keys else {k: os.environ.get(k) for k in keys}
    digest.update(json.dumps([keys, sorted(environ.items(), key=lambda item: item[0])]).encode())
    return digest.hexdigest()


def remembered(memo: Any, key: bytes | None, root: Path, settings: RenderSettings, extra: Iterable[Path],
               fingerprint: str) -> dict[str, Any] | None:
    """The last run's memo when nothing it depends on changed (then nothing needs rendering), else None."""
    if key is None or not isinstance(memo, dict) or memo.get("version") != VERSION:
        return None
    outputs = memo.get("outputs")
    if not isinstance(outputs, dict) or output_state(root, outputs) != outputs:
        return None
    digest = inputs_digest(key, root, tree_state(root), outputs, settings, extra, fingerprint, memo.get("env_keys") or [])
    return memo if hmac.compare_digest(digest, str(memo.get("inputs", ""))) else None
