# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding, reading and generating age keys.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

try:
    import pyrage
except ImportError:  # pragma: no cover - depends on the environment
    pyrage = None

from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write

SECRET_KEY_RE = re.compile(r"^AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]+$")
RECIPIENT_RE = re.compile(r"^age1(?:pq1)?[0-9a-z]+$")
KEYGEN_TIMEOUT = 60
ENV_KEY_FILE_LABEL = "$SOPS_AGE_KEY_FILE"


class AgeKeyError(Exception):
    """A problem with age keys; the message never contains key material."""


@dataclass(frozen=True)
class AgeIdentity:
    secret: str = field(repr=False)
    recipient: str | None
    source: str

    @property
    def post_quantum(self) -> bool:
        return self.secret.startswith("AGE-SECRET-KEY-PQ-")

    @property
    def key_file(self) -> Path | None:
        """The file the identity was read from (None: it came from ``$SOPS_AGE_KEY`` or was just generated)."""
        if self.source in ("$SOPS_AGE_KEY", "new"):
            return None
        if self.source.startswith(ENV_KEY_FILE_LABEL + " ("):
            return Path(self.source[len(ENV_KEY_FILE_LABEL) + 2:-1])
        return Path(self.source)


@dataclass
class AgeKeys:
    """Every identity found, in lookup order, and the places that were looked at."""

    identities: list[AgeIdentity]
    looked: list[str]

    @property
    def recipients(self) -> list[str]:
        return [i.recipient for i in self.identities if i.recipient]

    @property
    def primary(self) -> AgeIdentity | None:
        return self.identities[0] if self.identities else None

    def sops_env(self) -> dict[str, str]:
        """Environment for a sops child process: every identity, never written to disk."""
        if not self.identities:
            return {}
        return {"SOPS_AGE_KEY": "\n".join(i.secret for i in self.identities)}

    def where(self) -> str:
        return ", ".join(self.looked)


def derive_recipient(secret: str) -> str | None:
    """Public key of an identity, or None when no tool here can derive it (PQ keys without age-keygen)."""
    if not secret.startswith("AGE-SECRET-KEY-PQ-") and pyrage is not None:
        try:
            return str(pyrage.x25519.Identity.from_str(secret).to_public())
        except Exception as exc:
            raise AgeKeyError("an age secret key is malformed (its checksum or encoding is wrong)") from exc
    keygen = shutil.which("age-keygen")
    if keygen is None:
        return None
    try:
        result = subprocess.run([keygen, "-y"], input=secret + "\n", capture_output=True, text=True, check=False,
                                timeout=KEYGEN_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgeKeyError(f"the public key of an age key cannot be derived: {keygen} did not run ({exc.__class__.__name__})") from None
    if result.returncode != 0:
        if secret.startswith("AGE-SECRET-KEY-PQ-"):
            return None
        raise AgeKeyError("an age secret key is malformed (age-keygen -y rejected it)")
    return result.stdout.strip() or None


def parse_identities(text: str, source: str) -> list[AgeIdentity]:
    identities = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not SECRET_KEY_RE.match(line):
            raise AgeKeyError(f"{source}: a line is neither a comment nor an age secret key (AGE-SECRET-KEY-1... or AGE-SECRET-KEY-PQ-1...)")
        try:
            recipient = derive_recipient(line)
        except AgeKeyError as exc:
            line_number = text.splitlines().index(raw) + 1
            raise AgeKeyError(f"{source}:{line_number}: {exc}; restore the key file from your backup") from None
        identities.append(AgeIdentity(secret=line, recipient=recipient, source=source))
    return identities


def default_user_key_file(environ: Mapping[str, str]) -> Path:
    config_home = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config_home) / "sops" / "age" / "keys.txt"


def _read_key_file(path: Path, label: str) -> list[AgeIdentity]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgeKeyError(f"{label}: cannot read the age key file ({exc.strerror})") from exc
    return parse_identities(text, label)


def find_age_keys(root: Path | None, key_file: str | None = None, environ: Mapping[str, str] | None = None) -> AgeKeys:
    """Look for age identities in the documented order.

    1. ``key_file`` (an explicit option), 2. ``SOPS_AGE_KEY``, 3. ``SOPS_AGE_KEY_FILE``,
    4. ``<root>/age.key``, 5. ``$XDG_CONFIG_HOME/sops/age/keys.txt`` (``~/.config/...``).
    """
    environ = os.environ if environ is None else environ
    identities: list[AgeIdentity] = []
    looked: list[str] = []
    if key_file:
        path = Path(key_file).expanduser()
        looked.append(str(path))
        if not path.exists():
            raise AgeKeyError(f"the age key file {path} given in the options does not exist")
        identities += _read_key_file(path, str(path))
    looked.append("$SOPS_AGE_KEY")
    if environ.get("SOPS_AGE_KEY"):
        identities += parse_identities(environ["SOPS_AGE_KEY"], "$SOPS_AGE_KEY")
    env_file = environ.get("SOPS_AGE_KEY_FILE")
    looked.append(f"$SOPS_AGE_KEY_FILE ({env_file})" if env_file else "$SOPS_AGE_KEY_FILE")
    if env_file:
        path = Path(env_file).expanduser()
        if path.exists():
            identities += _read_key_file(path, f"{ENV_KEY_FILE_LABEL} ({path})")
    candidates = []
    if root is not None:
        candidates.append(Path(root) / "age.key")
    candidates.append(default_user_key_file(environ))
    for path in candidates:
        looked.append(str(path))
        if path.exists():
            identities += _read_key_file(path, str(path))
    unique: dict[str, AgeIdentity] = {}
    for identity in identities:
        unique.setdefault(identity.secret, identity)
    return AgeKeys(identities=list(unique.values()), looked=looked)


def generate_identity(source: str = "new") -> AgeIdentity:
    """A new X25519 identity, from pyrage or else from ``age-keygen``; init and rotate both use it.

    The key only travels through memory and age-keygen's stdout pipe; errors never hold it.
    """
    if pyrage is not None:
        identity = pyrage.x25519.Identity.generate()
        return AgeIdentity(secret=str(identity), recipient=str(identity.to_public()), source=source)
    keygen = shutil.which("age-keygen")
    if keygen is None:
        raise AgeKeyError("cannot generate an age key: install the Python package pyrage or the age tools (age-keygen)")
    try:
        result = subprocess.run([keygen], capture_output=True, text=True, check=False, timeout=KEYGEN_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgeKeyError(f"cannot generate an age key: {keygen} did not run ({exc.__class__.__name__})") from None
    secret = next((line.strip() for line in result.stdout.splitlines() if SECRET_KEY_RE.match(line.strip())), None)
    if result.returncode != 0 or secret is None:
        raise AgeKeyError(f"cannot generate an age key: {keygen} failed (exit code {result.returncode})")
    recipient = derive_recipient(secret)
    if not recipient:
        raise AgeKeyError(f"cannot generate an age key: the public key of the key {keygen} made cannot be derived")
    return AgeIdentity(secret=secret, recipient=recipient, source=source)


def key_file_text(identity: AgeIdentity, kept: Iterable[AgeIdentity] = (), note: str = "kept") -> bytes:
    """An age key file as age-keygen writes it, holding ``identity`` first and then every ``kept`` one."""
    created = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    text = f"# created: {created}\n# public key: {identity.recipient}\n{identity.secret}\n"
    for other in kept:
        text += f"# {note}: public key {other.recipient}\n{other.secret}\n"
    return text.encode()


def generate_key_file(path: Path) -> str:
    """Create a new X25519 identity in ``path`` (mode 0600) and return its recipient."""
    identity = generate_identity(str(path))
    atomic_write(path, key_file_text(identity), mode=0o600)
    return identity.recipient or ""
