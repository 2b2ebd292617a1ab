# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding, reading and generating age keys, and the repository's public key file (``.age-public-key``).

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

try:
    import pyrage
except ImportError:  # pragma: no cover - depends on the environment
    pyrage = None

from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import (
    SOPS_CONFIG_NAME,
    SopsToolError,
    load_sops_config,
    rule_recipients,
)

SECRET_KEY_RE = re.compile(r"^AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]+$")
RECIPIENT_RE = re.compile(r"^age1(?:pq1)?[0-9a-z]+$")
KEYGEN_TIMEOUT = 60
ENV_KEY_FILE_LABEL = "$SOPS_AGE_KEY_FILE"
# The recipient of the repository's age key, committed so others can encrypt for it; never a secret.
PUBLIC_KEY_FILE_NAME = ".age-public-key"
PUBLIC_KEY_FILE_MAX_BYTES = 4096


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


# ---------------------------------------------------------------------------- .age-public-key


def valid_recipient(text: str) -> bool:
    """Whether ``text`` is an age recipient: its form, and its checksum where pyrage can tell (X25519)."""
    if not RECIPIENT_RE.match(text):
        return False
    if text.startswith("age1pq1") or pyrage is None:
        return True
    try:
        pyrage.x25519.Recipient.from_str(text)
    except Exception:
        return False
    return True


@dataclass(frozen=True)
class PublicKeyFile:
    """What ``<root>/.age-public-key`` holds: nothing (absent), one valid recipient, or a problem (never its content)."""

    path: Path
    exists: bool
    recipient: str | None = None
    problem: str | None = None


def read_public_key_file(root: Path) -> PublicKeyFile:
    """Read ``<root>/.age-public-key``: one recipient line; blank lines and ``#`` comments are allowed."""
    path = Path(root) / PUBLIC_KEY_FILE_NAME
    name = PUBLIC_KEY_FILE_NAME
    try:
        info = path.lstat()
    except FileNotFoundError:
        return PublicKeyFile(path, exists=False)
    except OSError as exc:
        return PublicKeyFile(path, True, problem=f"{name}: cannot read it ({exc.strerror})")
    if not stat.S_ISREG(info.st_mode):
        return PublicKeyFile(path, True, problem=f"{name} is not a regular file (a link or a folder)")
    if info.st_size > PUBLIC_KEY_FILE_MAX_BYTES:
        return PublicKeyFile(path, True, problem=f"{name} is {info.st_size} bytes: far too large for one age public key")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        return PublicKeyFile(path, True, problem=f"{name}: cannot read it ({exc.strerror})")
    except UnicodeDecodeError:
        return PublicKeyFile(path, True, problem=f"{name} is not UTF-8 text")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if "AGE-SECRET-KEY-" in text.upper():
        return PublicKeyFile(path, True, problem=(f"{name} holds an age SECRET key, which must never be committed: "
                                                  "replace its content with the public key (age1...) and treat the key as leaked"))
    if len(lines) != 1:
        return PublicKeyFile(path, True, problem=f"{name} holds {len(lines)} lines besides comments; it must hold one age public key")
    if not valid_recipient(lines[0]):
        return PublicKeyFile(path, True, problem=f"{name} does not hold a valid age public key (age1...)")
    return PublicKeyFile(path, True, recipient=lines[0])


def repository_recipient(root: Path, recipients: Iterable[str]) -> str | None:
    """The public key of the repository's primary age identity: the first of ``recipients`` (in lookup order) that
    ``.sops.yaml`` lists; without a readable ``.sops.yaml`` naming age recipients, the first one.

    None when none of them is a recipient of ``.sops.yaml``: a key of another repository is never published as this one's.
    """
    recipients = list(recipients)
    config = Path(root) / SOPS_CONFIG_NAME
    try:
        rules = load_sops_config(config) if config.is_file() else []
    except SopsToolError:
        rules = []
    listed = set().union(*(rule_recipients(rule) for rule in rules)) if rules else set()
    if not listed:
        return recipients[0] if recipients else None
    return next((r for r in recipients if r in listed), None)


@dataclass
class PublicKeyOutcome:
    """What ``ensure_public_key_file`` did (or, in check mode, would do)."""

    path: Path
    changed: bool = False
    message: str = ""
    warning: str | None = None


def ensure_public_key_file(root: Path, recipient: str, replace: Iterable[str] = (), check_mode: bool = False) -> PublicKeyOutcome:
    """Make ``<root>/.age-public-key`` name ``recipient`` (one line, mode 0644, written atomically).

    The file is written when it is absent or names one of ``replace`` (a rotation's old keys). One that already names
    ``recipient`` is left as it is; one that names another key, or is not a public key file, is left alone with a warning
    (doctor says what is wrong). Nothing is written in check mode.
    """
    if not valid_recipient(recipient):
        raise AgeKeyError(f"{PUBLIC_KEY_FILE_NAME}: {recipient!r} is not an age public key")
    current = read_public_key_file(root)
    outcome = PublicKeyOutcome(current.path)
    if current.problem:
        outcome.warning = f"{current.problem}; it was left as it is (doctor checks it)"
        return outcome
    if current.recipient == recipient:
        outcome.message = f"{PUBLIC_KEY_FILE_NAME} holds the public key {recipient}"
        return outcome
    if current.exists and current.recipient not in set(replace):
        outcome.warning = (f"{PUBLIC_KEY_FILE_NAME} names {current.recipient}, not the age key in use ({recipient}); "
                           "it was left as it is: run doctor, and correct it if the repository's key is the one in use")
        return outcome
    outcome.changed = True
    verb = "would be" if check_mode else "was"
    outcome.message = f"{PUBLIC_KEY_FILE_NAME} {verb} {'updated' if current.exists else 'written'} with the public key {recipient} (commit it)"
    if not check_mode:
        atomic_write(current.path, f"{recipient}\n".encode(), mode=0o644)
    return outcome
