# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The repository tree as doctor and rotate walk it: its secret files, and the temporaries interrupted runs left.

A walk never enters tool folders (``.git``, virtual environments, ``.terraform``, the backup
folder, ...). Secret files are files named like secrets outside the template folders; a template
of a secret (``*.sops.yaml.j2``) is not one, nor is a temporary file. Temporaries are of two
kinds: those of an atomic write (``_fileio``'s naming) and rotate's ciphertext copies. Nothing
here reads a file's content.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._backup import BACKUP_DIR_NAME
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import TEMP_MARK
from ansible_collections.cluster.secrets.plugins.plugin_utils._makejinja import repository_layout
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_problems import RenderError

SKIP_DIRS = frozenset({".git", ".venv", "venv", "node_modules", ".terraform", BACKUP_DIR_NAME, "__pycache__"})
TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2")  # templates of secrets, not secrets: configure renders and encrypts them
# rotate's ciphertext copy of a file: beside it and ending like it, so sops picks the same creation rule and format.
ROTATE_TEMP_PREFIX = ".rotate-tmp."
# An atomic write's temporary (``_fileio``): ``.<name>.cluster-secrets-XXXXXXXX.tmp``, and ``.<name>.XXXXXXXX.tmp``
# (tempfile.mkstemp) of older versions.
_WRITE_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.(?:" + re.escape(TEMP_MARK.strip(".")) + r"[A-Za-z0-9_-]+|[A-Za-z0-9_]{8})\.tmp$")


def walk(root: Path, skip: Iterable[Path] = ()) -> Iterator[str]:
    """Relative paths of the files under ``root`` in a stable order, outside tool folders and the ``skip`` folders."""
    skipped = {Path(p).resolve() for p in skip}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and (not skipped or (here / d).resolve() not in skipped))
        for name in sorted(filenames):
            yield (here / name).relative_to(root).as_posix()


def template_dirs(root: Path) -> list[Path]:
    """The template folders (makejinja's inputs), resolved; ``templates/`` when the settings cannot be read."""
    try:
        return [p.resolve() for p in repository_layout(root).settings.inputs]
    except (RenderError, OSError, ValueError):
        return [(root / "templates").resolve()]


def temp_target(name: str) -> str | None:
    """The name of the file a temporary stands in for, or None when ``name`` is not a temporary's."""
    if name.startswith(ROTATE_TEMP_PREFIX) and len(name) > len(ROTATE_TEMP_PREFIX):
        return name[len(ROTATE_TEMP_PREFIX):]
    match = _WRITE_TEMP_RE.match(name)
    return match["target"] if match else None


def is_stale_temp(name: str) -> bool:
    """Whether a file name is that of a temporary a run leaves behind when it is killed."""
    return temp_target(name) is not None


def secret_files(root: Path, pattern: str) -> list[str]:
    """Paths (relative, sorted) of files named like secrets, outside template folders and tool folders."""
    secret_re = re.compile(pattern)
    found = []
    for relpath in walk(root, template_dirs(root)):
        name = relpath.rsplit("/", 1)[-1]
        if secret_re.search(relpath) and not name.startswith(".sops.") and not name.endswith(TEMPLATE_SUFFIXES) \
                and not is_stale_temp(name):
            found.append(relpath)
    return sorted(found)


def stale_temps(root: Path, rotate_only: bool = False) -> list[str]:
    """Temporaries of interrupted runs (relative paths, sorted): every kind, or only rotate's ciphertext copies."""
    found = []
    for relpath in walk(root):
        name = relpath.rsplit("/", 1)[-1]
        if name.startswith(ROTATE_TEMP_PREFIX) if rotate_only else is_stale_temp(name):
            found.append(relpath)
    return sorted(found)


def rotate_temp(target: Path) -> Path:
    """Where rotate keeps its ciphertext copy of ``target`` while sops works on it."""
    return target.with_name(ROTATE_TEMP_PREFIX + target.name)
