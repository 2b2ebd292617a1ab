# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""doctor's check of credential age: how long each secret value has been unchanged, against the rotation policy.

The dates come from ``.credential-dates.yaml`` (``_credential_dates``), which configure keeps; each value is
compared, by its keyed fingerprint, with the plaintext doctor already decrypted to prove the file decrypts (no
second decryption). A value configure has not recorded yet falls back to its file's ``sops.lastmodified``, which a
data-key rotation resets. Findings and the returned list name files and key paths, never a value.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._credential_dates import (
    CHANGED_SINCE_RECORDED,
    DATES_FILE,
    LASTMODIFIED,
    CredentialAge,
    CredentialDates,
    DatesFileError,
    credential_ages,
    dates_key,
    lastmodified_day,
    load_dates,
    oldest_first,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_values import key_id
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops

if TYPE_CHECKING:  # the report types live in _doctor, which runs these checks
    from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import DoctorOptions, DoctorReport

CHECK = "credential age"
CHANGE_FIX = ("change the credential at its source, then its value in the cluster vars (or with `sops edit {file}` for "
              "a file configure does not render), then run configure")
# Key paths named in one finding; the rest are counted.
NAMED_KEYS = 5


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:NAMED_KEYS])
    return shown + (f" and {len(keys) - NAMED_KEYS} more" if len(keys) > NAMED_KEYS else "")


def _recorded(options: DoctorOptions, report: DoctorReport, tracked: set[str] | None, has_secrets: bool) -> CredentialDates | None:
    """The record, with findings about the file itself: absent, unreadable, not committed."""
    path = options.root / DATES_FILE
    if tracked is not None and (path.exists() or path.is_symlink()) and DATES_FILE not in tracked:
        report.add("warning", CHECK, DATES_FILE, "not committed to git: other clones and AWX jobs do not see the dates, "
                   "and start them anew", f"git add {DATES_FILE} and commit it (it holds no secret value)")
    try:
        recorded = load_dates(options.root)
    except DatesFileError as exc:
        report.add("warning", CHECK, DATES_FILE, f"cannot be read: {str(exc).removeprefix(DATES_FILE + ': ')}",
                   "resolve it (after a merge conflict either side will do) or delete it, then run configure")
        return None
    if recorded is None and has_secrets:
        report.add("info", CHECK, DATES_FILE, "not found: credential ages are taken from sops lastmodified, which a "
                   "data-key rotation resets", f"run configure to start recording when each secret value changes, and "
                   f"commit {DATES_FILE}")
    return recorded


def check_credential_age(options: DoctorOptions, report: DoctorReport, sops: Sops, files: list[str],
                         rules: list[dict[str, Any]] | None, tracked: set[str] | None,
                         plaintexts: Mapping[str, bytes]) -> list[CredentialAge]:
    """Report every credential unchanged for longer than ``max_age_days``, oldest first; return them."""
    now = options.now or datetime.datetime.now(datetime.UTC)
    today = (now if now.tzinfo else now.replace(tzinfo=datetime.UTC)).astimezone(datetime.UTC).date()
    recorded = _recorded(options, report, tracked, bool(files))
    chosen = dates_key(sops.keys.identities, rules or [], recorded)
    key = chosen.key
    if recorded is not None and chosen.held_elsewhere:
        report.add("info", CHECK, DATES_FILE, f"keyed from the age key of {chosen.held_elsewhere}, another recipient "
                   "of .sops.yaml, which this run does not hold: changed values cannot be told apart, the recorded "
                   "dates are used as they are", "run doctor with that key to check them")
    elif recorded is not None and key is not None and recorded.key_id != key_id(key):
        report.add("info", CHECK, DATES_FILE, f"recorded with another age key (key id {recorded.key_id}, this one "
                   f"{key_id(key)}): changed values cannot be told apart, the recorded dates are used as they are",
                   "run configure with the repository's key: it keeps the dates and fingerprints the values anew")
    ages: list[CredentialAge] = []
    for relpath in files:
        status = sops.status(relpath)
        if not status.encrypted or status.content is None:
            continue
        found = credential_ages(recorded, key, relpath, status.content, plaintexts.get(relpath),
                                lastmodified_day(status.lastmodified), today)
        ages += found
        changed = [a.key for a in found if a.source == CHANGED_SINCE_RECORDED]
        if changed:
            report.add("info", CHECK, relpath, f"{len(changed)} value(s) changed since configure last recorded them "
                       f"({_names(changed)}): counted as new", "run configure to record their dates")
        unrecorded = [a.key for a in found if a.source == LASTMODIFIED]
        if unrecorded and recorded is not None:
            report.add("info", CHECK, relpath, f"{len(unrecorded)} value(s) not recorded yet ({_names(unrecorded)}): "
                       "dated by sops lastmodified, which a data-key rotation resets", "run configure to record them")
    over = oldest_first(a for a in ages if a.days > options.max_age_days)
    for item in over:
        note = ("; date from sops lastmodified, which a data-key rotation resets: it may be older"
                if item.source == LASTMODIFIED else "")
        report.add("warning", CHECK, f"{item.file}: {item.key}",
                   f"unchanged for {item.days} days (since {item.changed.isoformat()}; policy {options.max_age_days}){note}",
                   CHANGE_FIX.format(file=item.file))
    if ages and not over:
        oldest = max(a.days for a in ages)
        report.add("ok", CHECK, DATES_FILE if recorded is not None else "secret files",
                   f"{len(ages)} credential(s), none unchanged for more than {options.max_age_days} days "
                   f"(the oldest: {oldest} day(s))")
    return over
