# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Re-encrypting secret files for a rotation, through the run's ``_sops.Sops``.

sops works on a ciphertext copy beside each file (named to match the same creation rule and
format); the copy must decrypt with the new key alone (and, when asked, not with the old one)
before its ciphertext becomes a planned ``FileChange``. A phase's changes are then written as
one ``ChangeSet``: each file atomically. Plaintext only comes back through a pipe, to verify.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity
from ansible_collections.cluster.secrets.plugins.plugin_utils._changes import ChangeSet, FileChange
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import stale_temp_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate_result import RotateError
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import SOPS_CONFIG_NAME, SopsToolError
from ansible_collections.cluster.secrets.plugins.plugin_utils._tree import rotate_temp, secret_files, stale_temps

_AGE_SECRET_RE = re.compile(rb"AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]+")
_BASE64_TOKEN_RE = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}")


def encrypted_files(sops: Sops, pattern: str) -> tuple[list[str], list[str]]:
    """(encrypted secret files, secret files that are not encrypted), from each file's status."""
    encrypted: list[str] = []
    plain: list[str] = []
    for relpath in secret_files(sops.root, pattern):
        (encrypted if sops.status(relpath).encrypted else plain).append(relpath)
    return encrypted, plain


def remove_stray_temps(root: Path) -> None:
    """Ciphertext copies left by an interrupted run (no plaintext: safe to delete)."""
    for relpath in stale_temps(root, rotate_only=True):
        with contextlib.suppress(FileNotFoundError):
            (root / relpath).unlink()


def holds_age_secret(plaintext: bytes, secrets: Iterable[str]) -> bool:
    """Whether decrypted content holds one of ``secrets`` (age identities), as text or inside a base64 value."""
    wanted = {secret.encode() for secret in secrets}
    if not wanted:
        return False
    if wanted & set(_AGE_SECRET_RE.findall(plaintext)):
        return True
    for token in _BASE64_TOKEN_RE.findall(plaintext):
        try:
            decoded = base64.b64decode(token + b"=" * (-len(token) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        if wanted & set(_AGE_SECRET_RE.findall(decoded)):
            return True
    return False


def _copy_private(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def re_encrypt(sops: Sops, relpath: str, identities: list[AgeIdentity], verify_with: list[AgeIdentity],
               must_not: list[AgeIdentity] | None, update_keys: bool) -> tuple[FileChange, bool]:
    """updatekeys (optional) and rotate on a ciphertext copy beside the file, which stays as it is.

    The copy must decrypt with ``verify_with`` alone and not with ``must_not``. Returns the verified ciphertext as a
    planned change, and whether the decrypted content holds one of the ``must_not`` (old) identities: a file such as
    the Flux sops-age Secret, which only configure can re-render with the new key. The plaintext stays in memory.
    """
    status = sops.status(relpath)
    target = sops.root / relpath
    if status.content is None:
        raise RotateError(f"{relpath}: it disappeared during the rotation")
    temp = rotate_temp(target)
    _copy_private(temp, status.content)
    try:
        if update_keys:
            sops.run_isolated(["updatekeys", "--yes", str(temp)], identities, relpath)
        sops.run_isolated(["rotate", "--in-place", str(temp)], identities, relpath)
        try:
            holds_old = holds_age_secret(sops.run_isolated(["decrypt", str(temp)], verify_with, relpath),
                                         [i.secret for i in must_not or []])
        except SopsToolError:
            raise RotateError(f"{relpath}: after rotation it does not decrypt with the new key alone; "
                              "the file was left as it was") from None
        if must_not and sops.decrypts_with(temp, must_not):
            raise RotateError(f"{relpath}: after rotation the old key can still decrypt it; the file was left as it was "
                              f"(does a {SOPS_CONFIG_NAME} rule still list the old public key?)")
        content = temp.read_bytes()
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    mode = target.stat().st_mode & 0o7777
    return FileChange(relpath, True, "changed", content=content, before=status.content, mode=mode), holds_old


def write_changes(sops: Sops, changes: list[FileChange]) -> None:
    """Write a phase's verified ciphertexts atomically (temporaries a killed write left beside them go first)."""
    if not changes:
        return
    ChangeSet(sops.root, changes, stale_temps=stale_temp_files([sops.root / c.path for c in changes]), first=()).apply()
    for change in changes:
        sops.forget(change.path)
