# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The secret values of an encrypted file, by key path, and keyed fingerprints of them.

A sops file encrypts some of its leaves (``encrypted_regex``, ``unencrypted_suffix``...): those,
and only those, are its secret values. ``secret_values`` pairs the encrypted file (which says
which leaves are encrypted) with its plaintext (which holds them). A fingerprint is an
HMAC-SHA256 keyed from an age identity: it tells two values apart or equal to whoever holds the
identity, and nothing to anyone else (no offline guessing without the key). Nothing here
writes, prints or keeps a value.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity, AgeKeys
from ansible_collections.cluster.secrets.plugins.plugin_utils._guard import flatten_document
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_plan import parse_plaintext
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import sops_format

ENCRYPTED_MARK = "ENC[AES256_GCM,"
_UNREADABLE = (ValueError, UnicodeDecodeError, RecursionError, yaml.YAMLError, configparser.Error)
WHOLE_FILE = "(file content)"


def _without_metadata(document: Any, fmt: str) -> Any:
    if fmt == "yaml" and isinstance(document, list):
        return [{k: v for k, v in doc.items() if k != "sops"} if isinstance(doc, Mapping) else doc for doc in document]
    if isinstance(document, Mapping):
        if fmt == "dotenv":
            return {k: v for k, v in document.items() if not str(k).startswith("sops_")}
        return {k: v for k, v in document.items() if k != "sops"}
    return document


def _text(value: Any) -> str | None:
    """A leaf as the text compared, or None for what is never a secret on its own (empty, true/false, null)."""
    if value is None or isinstance(value, bool) or value == "" or isinstance(value, (Mapping, list)):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace") if value else None
    return value if isinstance(value, str) else json.dumps(value)


def secret_values(ciphertext: bytes, plaintext: bytes, relpath: str) -> dict[str, str]:
    """Key path -> value of every leaf sops encrypted in ``relpath`` (a binary file is one value, the whole file).

    ``ciphertext`` is the file as committed; when it cannot be read, every leaf of the plaintext counts."""
    fmt = sops_format(relpath)
    if fmt == "binary":
        text = _text(plaintext)
        return {WHOLE_FILE: text} if text is not None else {}
    try:
        plain = flatten_document(parse_plaintext(plaintext, fmt))
    except _UNREADABLE:  # the file's text is then the one value it has
        text = _text(plaintext)
        return {WHOLE_FILE: text} if text is not None else {}
    try:
        encrypted = flatten_document(_without_metadata(parse_plaintext(ciphertext, fmt), fmt))
        marked = {path for path, value in encrypted.items() if isinstance(value, str) and value.startswith(ENCRYPTED_MARK)}
    except _UNREADABLE:  # an unreadable ciphertext: every leaf counts
        marked = set(plain)
    found = {}
    for path, value in plain.items():
        text = _text(value)
        if path in marked and text is not None:
            found[path] = text
    return found


# ---------------------------------------------------------------------------- keys and fingerprints


def repository_identities(identities: Iterable[AgeIdentity], recipients: Iterable[str]) -> list[AgeIdentity]:
    """Of the identities found, those the creation rules name (``recipients``), by public key."""
    wanted = set(recipients)
    return sorted((i for i in identities if i.recipient in wanted), key=lambda i: i.recipient or "")


def repository_identity(keys: AgeKeys, recipients: Iterable[str]) -> AgeIdentity | None:
    """The identity of a repository: of the identities found, the first (by public key) its creation rules name.

    Stable wherever the run happens (a workstation's extra keys, an AWX job's single one)."""
    matching = repository_identities(keys.identities, recipients)
    return matching[0] if matching else None


def identity_key(identity: AgeIdentity, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from an age identity (never stored)."""
    return hashlib.sha256(f"cluster.secrets {purpose} v1\0".encode() + identity.secret.encode()).digest()


def key_id(key: bytes) -> str:
    """A public name for a derived key: tells whether two fingerprints were made with the same key."""
    return hmac.new(key, b"key id", hashlib.sha256).hexdigest()[:16]


def combined_key(keys: Iterable[bytes], purpose: str) -> bytes:
    """One key from several (each environment's): only whoever holds every one of them can derive it."""
    digest = hashlib.sha256(f"cluster.secrets {purpose} v1\0".encode())
    for key in sorted(keys):
        digest.update(key)
    return digest.digest()


def fingerprint(key: bytes, value: str, context: str = "") -> str:
    """HMAC-SHA256 of a value (with a context, such as its file and key path, when equal values elsewhere must not
    look equal)."""
    return hmac.new(key, context.encode() + b"\0" + value.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
