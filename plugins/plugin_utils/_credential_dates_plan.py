# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What configure and rotate do to ``.credential-dates.yaml``: read the secret files they must, and plan the change.

configure (``plan_credential_dates``) dates the secret files it renders from what the run holds (the new
plaintext, the new or unchanged ciphertext: no decryption), and every other secret file of the repository
(edited with ``sops``, written by the External Secrets GitOps step of an earlier run) from its bytes: a file
whose bytes are the ones recorded is not decrypted; another is decrypted once, through the run's ``Sops``. The
result is one plain ``FileChange`` for the run's change set (check mode writes nothing, ``--diff`` shows it, the
render memo counts it as an output).

rotate (``record_rotation``) keeps the file in step with the files it re-encrypted: a data-key rotation changes
no value, so a file whose old bytes were the recorded ones only gets its new content hash; an age-key rotation
changes the key the fingerprints are made with, so every file is decrypted with the new key (sops through the
door, nothing on disk) and fingerprinted anew, the old fingerprints compared with the old key.

Without the repository's identity (no age key that the creation rules name) the file is left alone.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity
from ansible_collections.cluster.secrets.plugins.plugin_utils._changes import ChangeSet, FileChange, plan_plain_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._credential_dates import (
    DATES_FILE,
    DATES_MODE,
    PURPOSE,
    CredentialDates,
    DatesFileError,
    Reading,
    dates_key,
    lastmodified_day,
    load_dates,
    needs_plaintext,
    update_dates,
    utc_today,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import stale_temp_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_values import identity_key
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import FileStatus, Sops, decrypt_each
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import SopsToolError, parse_sops_config, sops_format
from ansible_collections.cluster.secrets.plugins.plugin_utils._tree import secret_files

# Secret files configure does not render are read only when they are regular files of a sane size (not a link, a
# device or a pipe someone named *.sops.*): a bigger one is not dated.
MAX_READ_BYTES = 64 * 1024 * 1024
UNREADABLE_NOTE = "it is left as it is and no credential date is recorded until it is fixed (or deleted: configure starts it anew)"


@dataclass
class DatesPlan:
    """configure's change to ``.credential-dates.yaml`` (None: left alone), and what a person is told."""

    change: FileChange | None = None
    warnings: list[str] = field(default_factory=list)
    # The warnings a rerun with the same repository gives again (an unreadable file or secret), for the render memo.
    lasting: list[str] = field(default_factory=list)
    # "file: key path" of the values new or changed since the file was last written.
    changed: list[str] = field(default_factory=list)


def _rendered_reading(sops: Sops, item: FileChange, plaintext: bytes) -> Reading | None:
    """A secret file this run renders: its new plaintext, and the ciphertext it writes or leaves (no decryption)."""
    status = sops.status(item.path)  # as it is before this run writes it
    if item.state == "created" and item.content is not None:
        return Reading(item.content, plaintext)
    if item.state == "changed" and item.content is not None:
        since = lastmodified_day(status.lastmodified) if status.encrypted else None
        return Reading(item.content, plaintext, since, frozenset(item.changed_keys))
    if item.state == "unchanged" and status.content is not None:
        return Reading(status.content, plaintext, lastmodified_day(status.lastmodified))
    return None


def plan_credential_dates(sops: Sops, secret_pattern: str, rendered: Mapping[str, tuple[FileChange, bytes]],
                          today: datetime.date | None = None, removed: Iterable[str] = ()) -> DatesPlan:
    """The change to ``.credential-dates.yaml`` for every secret file of the repository after this run.

    ``rendered`` maps the secret files this run writes or compares to their planned change and new plaintext;
    ``removed`` are secret files this run deletes. Every other secret file is read from disk."""
    today = today or utc_today()
    root = sops.root
    result = DatesPlan()
    try:
        rules = sops.rules
    except SopsToolError:
        return result
    try:
        recorded = load_dates(root)
    except DatesFileError as exc:
        message = f"{exc}: {UNREADABLE_NOTE}"
        result.warnings.append(message)
        result.lasting.append(message)
        return result
    chosen = dates_key(sops.keys.identities, rules, recorded)
    if chosen.held_elsewhere:
        message = (f"credential dates: {DATES_FILE} is keyed from the age key of {chosen.held_elsewhere}, another "
                   "recipient of .sops.yaml, which this run does not hold: its dates are left as recorded (a run "
                   "with that key dates what changed since, from sops' last write of each file)")
        result.warnings.append(message)
        result.lasting.append(message)
        return result
    if chosen.key is None:
        if any(True for _path in secret_files(root, secret_pattern)) or rendered:
            message = (f"credential dates: none of the age keys found ({sops.keys.where()}) is named by the rules of "
                       f".sops.yaml, so {DATES_FILE} is left as it is")
            result.warnings.append(message)
            result.lasting.append(message)
        return result
    key = chosen.key
    gone = set(removed)
    readings: dict[str, Reading] = {}
    for path, (item, new_plaintext) in rendered.items():
        reading = _rendered_reading(sops, item, new_plaintext) if path not in gone else None
        if reading is not None:
            readings[path] = reading
    own = set(sops.keys.recipients)
    to_decrypt: list[str] = []
    for path in secret_files(root, secret_pattern):
        if path in readings or path in gone or path in rendered or not _regular(root / path):
            continue
        status = sops.status(path)
        if status.content is None:
            continue
        if status.encrypted and own & status.recipients and needs_plaintext(recorded, key, path, status.content):
            to_decrypt.append(path)
        else:  # unchanged since recorded, or not readable here: the record stays as it is
            readings[path] = Reading(status.content)

    for path, plaintext in decrypt_each(sops, to_decrypt):
        status = sops.status(path)  # read once per run: the bytes just decrypted
        content = status.content or b""
        if isinstance(plaintext, SopsToolError):
            message = f"credential dates: {plaintext}; its dates stay as recorded"
            result.warnings.append(message)
            result.lasting.append(message)
            readings[path] = Reading(content)
        else:
            readings[path] = Reading(content, plaintext, lastmodified_day(status.lastmodified))
    update = update_dates(recorded, key, readings, today, recipient=chosen.recipient)
    if update.uncomparable:
        result.warnings.append(
            f"credential dates: {DATES_FILE} was recorded with another age key (key id {recorded.key_id if recorded else '-'}); "
            "its dates are kept and every value fingerprinted with the repository's key now, so a value changed since "
            "the last run cannot be told apart this time")
    if recorded is None and not update.dates.files:
        return result
    result.change = plan_plain_file(root, DATES_FILE, update.dates.dump(), DATES_MODE, DATES_MODE)
    result.changed = update.changed
    return result


def _regular(path: os.PathLike[str]) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size <= MAX_READ_BYTES


# ---------------------------------------------------------------------------- rotate


def record_rotation(sops: Sops, secret_pattern: str, before: Mapping[str, FileStatus], identities: list[AgeIdentity],
                    previous: Iterable[AgeIdentity] = (), today: datetime.date | None = None) -> tuple[bool, list[str]]:
    """After a rotation rewrote the files of ``before`` (their state before it): the record follows, when there is one.

    ``identities`` decrypt the files now (and choose the repository's identity); ``previous`` are the identities the
    record may have been made with (an age-key rotation's old key). Returns (written, warnings); never raises for
    what is only bookkeeping: the rotation itself is done."""
    root = sops.root
    try:
        recorded = load_dates(root)
    except DatesFileError as exc:
        return False, [f"{exc}: {UNREADABLE_NOTE}"]
    if recorded is None or not sops.config_path.is_file():
        return False, []
    try:
        chosen = dates_key(identities, parse_sops_config(sops.config_path.read_bytes()), recorded)
    except (SopsToolError, OSError):
        return False, []
    if chosen.held_elsewhere:
        return False, [f"credential dates: {DATES_FILE} is keyed from the age key of {chosen.held_elsewhere}, which "
                       "this run does not hold: left as it is (configure with that key brings it up to date)"]
    if chosen.key is None:
        return False, []
    key = chosen.key
    warnings: list[str] = []
    readings: dict[str, Reading] = {}
    for path in secret_files(root, secret_pattern):
        if not _regular(root / path):
            continue
        try:
            content = (root / path).read_bytes()
        except OSError:
            continue
        old = before.get(path)
        if old is None or old.content is None or old.content == content:
            readings[path] = Reading(content)
        elif not needs_plaintext(recorded, key, path, old.content):
            readings[path] = Reading(content, was=old.content)  # every value as recorded: only the hash follows
        else:
            fmt = sops_format(path)
            try:
                plaintext = sops.run_isolated(["decrypt", "--input-type", fmt, "--output-type", fmt, str(root / path)],
                                              identities, path)
            except SopsToolError as exc:
                warnings.append(f"credential dates: {exc}; configure records its dates on its next run")
                readings[path] = Reading(content)
                continue
            readings[path] = Reading(content, plaintext, lastmodified_day(old.lastmodified))
    update = update_dates(recorded, key, readings, today or utc_today(), [identity_key(i, PURPOSE) for i in previous],
                          recipient=chosen.recipient)
    try:
        return _write(sops, update.dates), warnings
    except OSError as exc:
        return False, [*warnings, f"{DATES_FILE}: cannot write it ({exc.strerror}); configure updates it on its next run"]


def _write(sops: Sops, dates: CredentialDates) -> bool:
    change = plan_plain_file(sops.root, DATES_FILE, dates.dump(), DATES_MODE, DATES_MODE)
    if change.state == "unchanged":
        return False
    ChangeSet(sops.root, [change], stale_temps=stale_temp_files([sops.root / DATES_FILE]), first=()).apply()
    return True
