# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``.credential-dates.yaml``: when each secret value last changed. The file's format, the rule that updates it,
and the age of each credential as doctor reports it.

The file sits at the repository root and is committed. Per secret file it holds the SHA-256 of the encrypted
bytes as last read (``content``) and, per key path of a leaf sops encrypted, the day its value last changed
(``changed``, UTC) and a keyed fingerprint of the value (``_secret_values.fingerprint``: HMAC-SHA256 with a key
derived from the repository's age identity, in the context of file and key path). It never holds a value: to
anyone without the age key a fingerprint says nothing, not even whether two values are equal.

The update rule (``update_dates``), for each key path of each secret file read now:

- recorded, and the fingerprint is the same: the date is kept;
- recorded, and the fingerprint differs: the value changed; the date is today when this run writes it, else the
  day sops last wrote the file (a ``sops edit`` made before configure ran: the value is at least that old);
- recorded with another key (``key_id`` differs and no previous key is known): the values cannot be compared,
  the date is kept and the value fingerprinted anew; so is a value recorded without a fingerprint;
- not recorded: today when this run writes it (or the file is new); else the day sops last wrote the file
  (``sops.lastmodified``): the value is at least that old.

Key paths and files that are gone are dropped. A file that was not read (not encrypted, not for this key, or
sops failed) keeps its record as it is. Nothing here runs sops or writes a file.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_values import (
    fingerprint,
    identity_key,
    key_id,
    repository_identities,
    secret_values,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import rules_recipients, sops_time

DATES_FILE = ".credential-dates.yaml"
MAX_DATES_BYTES = 32 * 1024 * 1024
PURPOSE = "credential dates"
VERSION = 1
DATES_MODE = 0o644
HEADER = ("# Written by cluster.secrets configure: when each secret value last changed (UTC days). Commit it.\n"
          "# No values: each fingerprint is an HMAC-SHA256 keyed from this repository's age identity.\n")
# How doctor knows a credential's date (the ``source`` of each entry of its ``credentials`` result).
RECORDED = "recorded"
CHANGED_SINCE_RECORDED = "changed since recorded"
LASTMODIFIED = "sops lastmodified"


class DatesFileError(Exception):
    """``.credential-dates.yaml`` cannot be read; the message names the problem, the file holds no value to hide."""


@dataclass(frozen=True)
class Entry:
    changed: datetime.date
    fingerprint: str | None = None


@dataclass
class FileRecord:
    content: str
    values: dict[str, Entry] = field(default_factory=dict)


@dataclass
class CredentialDates:
    key_id: str | None
    files: dict[str, FileRecord] = field(default_factory=dict)
    # The public key of the identity the fingerprints are keyed from (public: it says whose key, not the key).
    recipient: str | None = None

    def dump(self) -> bytes:
        """The file's text: sorted, one line per value, the same bytes for the same record."""
        body: dict[str, Any] = {"version": VERSION, "key_id": self.key_id}
        if self.recipient:
            body["key_recipient"] = self.recipient
        body["files"] = {}
        for path in sorted(self.files):
            record = self.files[path]
            values = {}
            for key in sorted(record.values):
                entry = record.values[key]
                values[key] = _Flow({"changed": entry.changed.isoformat()}
                                    | ({"fingerprint": entry.fingerprint} if entry.fingerprint else {}))
            body["files"][path] = {"content": record.content, "values": values}
        text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1_000_000, allow_unicode=True)
        return (HEADER + text).encode("utf-8")


class _Flow(dict):  # type: ignore[type-arg]
    """A mapping written on one line."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_flow(dumper: yaml.SafeDumper, data: _Flow) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True)


_Dumper.add_representer(_Flow, _represent_flow)


def utc_today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def lastmodified_day(value: str | None) -> datetime.date | None:
    """The UTC day of a ``sops.lastmodified`` time, None when there is none to read."""
    moment = sops_time(value)
    return None if moment is None else moment.date()


@dataclass(frozen=True)
class DatesKey:
    """The key a run makes fingerprints with (None: it has none), whose public key it is, and, when the record was
    made with the key of another recipient of the rules that this run does not hold, that recipient."""

    key: bytes | None = field(default=None, repr=False)
    recipient: str | None = None
    held_elsewhere: str | None = None


def dates_key(identities: Iterable[AgeIdentity], rules: Iterable[Mapping[str, Any]],
              recorded: CredentialDates | None = None) -> DatesKey:
    """The key fingerprints are made with: of the identities held that the creation rules name, the one the record
    was made with when held, else the first by public key (``_secret_values.repository_identity``).

    With several recipients (a team, a CI key), whoever runs keeps the record's key when they hold it; a run that
    holds only other recipients' keys while the record's recipient is still in the rules does not re-key the record
    (``held_elsewhere``): re-keying on every change of person would rewrite the file each time."""
    recipients = rules_recipients(rules)
    held = repository_identities(identities, recipients)  # held[0] is the repository_identity
    if not held:
        return DatesKey()
    if recorded is not None and recorded.key_id:
        for identity in held:
            key = identity_key(identity, PURPOSE)
            if key_id(key) == recorded.key_id:
                return DatesKey(key, identity.recipient)
        if recorded.recipient and recorded.recipient in recipients:
            return DatesKey(held_elsewhere=recorded.recipient)
    return DatesKey(identity_key(held[0], PURPOSE), held[0].recipient)


def content_digest(ciphertext: bytes) -> str:
    return hashlib.sha256(ciphertext).hexdigest()


def value_context(relpath: str, key: str) -> str:
    """What a fingerprint is bound to: equal values at two key paths do not look equal."""
    return f"{relpath}\0{key}"


# ---------------------------------------------------------------------------- reading the file


def _date(value: Any, where: str) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError:
        raise DatesFileError(f"{where}: 'changed' is not a date (YYYY-MM-DD)") from None


def parse_dates(text: bytes) -> CredentialDates:
    """The record in the file's text; ``DatesFileError`` names what is wrong."""
    if len(text) > MAX_DATES_BYTES:
        raise DatesFileError(f"{DATES_FILE}: larger than {MAX_DATES_BYTES // (1024 * 1024)} MiB: not a file configure wrote")
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise DatesFileError(f"{DATES_FILE}: nested too deeply: not a file configure wrote") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{DATES_FILE}:{mark.line + 1}" if mark is not None else DATES_FILE
        raise DatesFileError(f"{at}: not valid YAML (a merge conflict?)") from None
    if not isinstance(data, dict):
        raise DatesFileError(f"{DATES_FILE}: not a mapping")
    if data.get("version") != VERSION:
        raise DatesFileError(f"{DATES_FILE}: version {data.get('version')!r} is not {VERSION} (written by another version?)")
    files = data.get("files") or {}
    if not isinstance(files, dict):
        raise DatesFileError(f"{DATES_FILE}: 'files' is not a mapping")
    record = CredentialDates(None if data.get("key_id") is None else str(data["key_id"]),
                             recipient=str(data["key_recipient"]) if data.get("key_recipient") else None)
    for path, item in files.items():
        if not isinstance(item, dict) or not isinstance(item.get("values") or {}, dict):
            raise DatesFileError(f"{DATES_FILE}: {path}: expected 'content' and a mapping 'values'")
        values: dict[str, Entry] = {}
        for key, entry in (item.get("values") or {}).items():
            where = f"{DATES_FILE}: {path}: {key}"
            if not isinstance(entry, dict) or "changed" not in entry:
                raise DatesFileError(f"{where}: expected {{changed: YYYY-MM-DD, fingerprint: ...}}")
            mark = entry.get("fingerprint")
            values[str(key)] = Entry(_date(entry["changed"], where), str(mark) if mark else None)
        record.files[str(path)] = FileRecord(str(item.get("content") or ""), values)
    return record


def load_dates(root: Path) -> CredentialDates | None:
    """The record at the repository root, None when there is none; ``DatesFileError`` when it cannot be read."""
    path = Path(root) / DATES_FILE
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise DatesFileError(f"{DATES_FILE}: not a regular file")
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DatesFileError(f"{DATES_FILE}: cannot read it ({exc.strerror})") from None
    return parse_dates(text)


# ---------------------------------------------------------------------------- updating it


@dataclass(frozen=True)
class Reading:
    """One secret file as a run knows it now.

    ``content`` is its ciphertext (as on disk, or about to be written). ``plaintext`` is None when the run did not
    read it: the record is kept (and when ``was``, the ciphertext before a rewrite that kept every value, is what
    was recorded, only the content hash follows). ``since`` dates a value seen for the first time, or found changed,
    that this run does not write: the file's sops lastmodified before this run wrote it (None: a new file, so
    today). ``changed`` are the key paths this run writes anew (dated today).
    """

    content: bytes = field(repr=False)
    plaintext: bytes | None = field(default=None, repr=False)
    since: datetime.date | None = None
    changed: frozenset[str] = frozenset()
    was: bytes | None = field(default=None, repr=False)


@dataclass
class DatesUpdate:
    dates: CredentialDates
    # "file: key path" of the values new or changed since the record (a first recording of a file is neither).
    changed: list[str] = field(default_factory=list)
    # The record was made with another key, and no previous key of this run matches it: nothing could be compared.
    uncomparable: bool = False


def _comparison_key(recorded: CredentialDates | None, key: bytes, previous_keys: Iterable[bytes]) -> bytes | None:
    if recorded is None:
        return None
    if recorded.key_id == key_id(key):
        return key
    return next((k for k in previous_keys if key_id(k) == recorded.key_id), None)


def needs_plaintext(recorded: CredentialDates | None, key: bytes, relpath: str, ciphertext: bytes) -> bool:
    """Whether the dates of ``relpath`` can only be known by decrypting it (the bytes are not the ones recorded)."""
    if recorded is None or recorded.key_id != key_id(key):
        return True
    record = recorded.files.get(relpath)
    return (record is None or record.content != content_digest(ciphertext)
            or any(entry.fingerprint is None for entry in record.values.values()))


def update_dates(recorded: CredentialDates | None, key: bytes, readings: Mapping[str, Reading], today: datetime.date,
                 previous_keys: Iterable[bytes] = (), recipient: str | None = None) -> DatesUpdate:
    """The new record for the secret files of ``readings`` (files not in it are gone). See the module docstring.

    ``recipient`` is the public key of the identity ``key`` comes from, written beside its key id."""
    current = key_id(key)
    old_files = recorded.files if recorded is not None else {}
    compare = _comparison_key(recorded, key, previous_keys)
    same_key = recorded is not None and recorded.key_id == current
    update = DatesUpdate(CredentialDates(current, recipient=recipient), uncomparable=bool(old_files) and compare is None)
    for relpath in sorted(readings):
        reading, old = readings[relpath], old_files.get(relpath)
        digest = content_digest(reading.content)
        if reading.plaintext is None:
            if old is None:
                continue
            kept = old if same_key else FileRecord(old.content, {k: Entry(e.changed) for k, e in old.values.items()})
            follows = reading.was is not None and old.content == content_digest(reading.was)
            update.dates.files[relpath] = FileRecord(digest if follows else kept.content, dict(kept.values))
            continue
        since = min(reading.since or today, today)
        entries: dict[str, Entry] = {}
        for key_path, value in secret_values(reading.content, reading.plaintext, relpath).items():
            context = value_context(relpath, key_path)
            mark = fingerprint(key, value, context)
            previous = old.values.get(key_path) if old is not None else None
            # A value this run writes is new today; one found changed on disk is as old as the file's last write.
            written_now = reading.since is None or key_path in reading.changed
            if previous is None:
                changed = today if written_now else since
                if written_now or old is not None:  # not a first recording: a new credential
                    update.changed.append(f"{relpath}: {key_path}")
            elif previous.fingerprint is None or compare is None:
                changed = previous.changed  # cannot be compared: taken as unchanged
            elif hmac.compare_digest(previous.fingerprint, fingerprint(compare, value, context)):
                changed = previous.changed
            else:
                changed = today if written_now else since
                update.changed.append(f"{relpath}: {key_path}")
            entries[key_path] = Entry(changed, mark)
        update.dates.files[relpath] = FileRecord(digest, entries)
    return update


# ---------------------------------------------------------------------------- ages, for doctor


@dataclass(frozen=True)
class CredentialAge:
    file: str
    key: str
    changed: datetime.date
    days: int
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "key": self.key, "changed": self.changed.isoformat(), "days": self.days,
                "source": self.source}


def credential_ages(recorded: CredentialDates | None, key: bytes | None, relpath: str, ciphertext: bytes,
                    plaintext: bytes | None, lastmodified: datetime.date | None, today: datetime.date) -> list[CredentialAge]:
    """How long each value of one secret file has been unchanged, and how that is known.

    Without the plaintext only a file whose bytes are the ones recorded can be dated (from the record)."""
    old = recorded.files.get(relpath) if recorded is not None else None
    comparable = key is not None and recorded is not None and recorded.key_id == key_id(key)

    def age(key_path: str, changed: datetime.date, source: str) -> CredentialAge:
        changed = min(changed, today)
        return CredentialAge(relpath, key_path, changed, (today - changed).days, source)

    if plaintext is None:
        if old is None or old.content != content_digest(ciphertext):
            return []
        return [age(k, e.changed, RECORDED) for k, e in sorted(old.values.items())]
    found = []
    for key_path, value in sorted(secret_values(ciphertext, plaintext, relpath).items()):
        previous = old.values.get(key_path) if old is not None else None
        if previous is None:
            if lastmodified is not None:
                found.append(age(key_path, lastmodified, LASTMODIFIED))
        elif not comparable or previous.fingerprint is None or key is None or hmac.compare_digest(
                previous.fingerprint, fingerprint(key, value, value_context(relpath, key_path))):
            found.append(age(key_path, previous.changed, RECORDED))
        else:
            found.append(age(key_path, today, CHANGED_SINCE_RECORDED))
    return found


def oldest_first(ages: Iterable[CredentialAge]) -> list[CredentialAge]:
    return sorted(ages, key=lambda a: (a.changed, a.file, a.key))
