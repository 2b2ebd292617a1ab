# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
""".credential-dates.yaml in process: the format, the update rule and ages on a fixed clock; configure and rotate
keeping it with real age keys and the real sops (what is decrypted, what is written, and never a value)."""

from __future__ import annotations

import datetime
import re
import shutil
from pathlib import Path

import pytest
import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity, generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._credential_dates import (
    CHANGED_SINCE_RECORDED,
    DATES_FILE,
    LASTMODIFIED,
    RECORDED,
    CredentialDates,
    DatesFileError,
    Entry,
    FileRecord,
    Reading,
    content_digest,
    credential_ages,
    lastmodified_day,
    load_dates,
    needs_plaintext,
    parse_dates,
    update_dates,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions, apply, plan
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate import RotateOptions, rotate
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_values import identity_key, key_id
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config

DEMO = Path(__file__).resolve().parents[4] / "examples" / "demo"
APP = "kubernetes/apps/default/echo/app/secret.sops.yaml"
INFRA = "infrastructure/secrets.sops.yaml"
HAND = "kubernetes/apps/default/hand/secret.sops.yaml"
DAY = datetime.date(2026, 1, 10)
KEY = identity_key(AgeIdentity("AGE-SECRET-KEY-1UNITTESTONE", "age1one", "test"), "credential dates")
OTHER_KEY = identity_key(AgeIdentity("AGE-SECRET-KEY-1UNITTESTTWO", "age1two", "test"), "credential dates")
# A sops-like ciphertext (which leaves are encrypted) and two plaintexts of it.
CIPHER = b"user: admin\npassword: ENC[AES256_GCM,data:x]\ntoken: ENC[AES256_GCM,data:y]\nsops:\n  version: 3\n"
PLAIN = b"user: admin\npassword: first-SENTINEL\ntoken: token-SENTINEL\n"
PLAIN_CHANGED = b"user: admin\npassword: second-SENTINEL\ntoken: token-SENTINEL\n"


def days(n: int) -> datetime.date:
    return DAY - datetime.timedelta(days=n)


# ---------------------------------------------------------------------------- the format


def test_the_file_round_trips_sorted_and_holds_no_value():
    update = update_dates(None, KEY, {"b.sops.yaml": Reading(CIPHER, PLAIN), "a.sops.yaml": Reading(CIPHER, PLAIN)}, DAY)
    text = update.dates.dump()
    assert b"SENTINEL" not in text and b"admin" not in text
    assert parse_dates(text) == update.dates
    assert parse_dates(text).dump() == text  # the same record, the same bytes
    data = yaml.safe_load(text)
    assert list(data) == ["version", "key_id", "files"] and list(data["files"]) == ["a.sops.yaml", "b.sops.yaml"]
    assert data["key_id"] == key_id(KEY)
    assert list(data["files"]["a.sops.yaml"]["values"]) == ["password", "token"]  # user is not encrypted: no credential
    assert re.search(rb"^      password: \{changed: '2026-01-10', fingerprint: [0-9a-f]{64}\}$", text, re.M)
    assert text.startswith(b"# Written by cluster.secrets configure")


@pytest.mark.parametrize(("text", "problem"), [
    (b"<<<<<<< HEAD\nversion: 1\n=======\nversion: 1\n>>>>>>> branch\n", "not valid YAML"),
    (b"version: 2\nfiles: {}\n", "version 2"),
    (b"- a list\n", "not a mapping"),
    (b"version: 1\nfiles:\n  a.sops.yaml:\n    values:\n      k: {changed: soon}\n", "not a date"),
])
def test_an_unreadable_file_is_a_clear_error(text, problem):
    with pytest.raises(DatesFileError, match=problem):
        parse_dates(text)


def test_hand_written_dates_and_missing_fingerprints_are_read(tmp_path):
    assert load_dates(tmp_path) is None
    (tmp_path / DATES_FILE).write_text("version: 1\nkey_id: abc\nfiles:\n  a.sops.yaml:\n    content: x\n"
                                       "    values:\n      k: {changed: 2025-12-01}\n")
    assert load_dates(tmp_path) == CredentialDates("abc", {"a.sops.yaml": FileRecord("x", {"k": Entry(days(40))})})
    (tmp_path / DATES_FILE).unlink()
    (tmp_path / DATES_FILE).mkdir()
    with pytest.raises(DatesFileError, match="not a regular file"):
        load_dates(tmp_path)


def test_lastmodified_day_is_the_utc_day():
    assert lastmodified_day("2026-01-09T23:30:00Z") == days(1)
    assert lastmodified_day("2026-01-10T01:30:00+02:00") == days(1)
    assert lastmodified_day(None) is None and lastmodified_day("yesterday") is None


# ---------------------------------------------------------------------------- the update rule


def recorded_on(day: datetime.date, plaintext: bytes = PLAIN, key: bytes = KEY) -> CredentialDates:
    return update_dates(None, key, {"a.sops.yaml": Reading(CIPHER, plaintext)}, day).dates


def dates_of(record: CredentialDates, path: str = "a.sops.yaml") -> dict[str, datetime.date]:
    return {k: e.changed for k, e in record.files[path].values.items()}


def test_an_unchanged_value_keeps_its_date_and_a_changed_one_is_dated():
    old = recorded_on(days(200))
    same = update_dates(old, KEY, {"a.sops.yaml": Reading(CIPHER + b"#", PLAIN, days(1))}, DAY)
    assert dates_of(same.dates) == {"password": days(200), "token": days(200)} and same.changed == []
    assert same.dates.files["a.sops.yaml"].content == content_digest(CIPHER + b"#")
    # written by this run (configure renders it): today
    run = update_dates(old, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN_CHANGED, days(30), frozenset({"password"}))}, DAY)
    assert dates_of(run.dates) == {"password": DAY, "token": days(200)} and run.changed == ["a.sops.yaml: password"]
    # found changed on disk (sops edit before configure ran): as old as the file's last write
    hand = update_dates(old, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN_CHANGED, days(30))}, DAY)
    assert dates_of(hand.dates) == {"password": days(30), "token": days(200)} and hand.changed == ["a.sops.yaml: password"]


def test_values_seen_first_are_as_old_as_the_file_unless_this_run_writes_them():
    first = update_dates(None, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN, days(50))}, DAY)
    assert dates_of(first.dates) == {"password": days(50), "token": days(50)} and first.changed == []
    new_file = update_dates(None, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN)}, DAY)
    assert dates_of(new_file.dates) == {"password": DAY, "token": DAY} and len(new_file.changed) == 2
    future = update_dates(None, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN, DAY + datetime.timedelta(days=3))}, DAY)
    assert dates_of(future.dates) == {"password": DAY, "token": DAY}  # never later than today
    # a key added to a recorded file is a new credential
    old = update_dates(None, KEY, {"a.sops.yaml": Reading(b"password: ENC[AES256_GCM,data:x]\n", b"password: first-SENTINEL\n", days(90))},
                       days(60)).dates
    added = update_dates(old, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN, days(2))}, DAY)
    assert dates_of(added.dates) == {"password": days(90), "token": days(2)} and added.changed == ["a.sops.yaml: token"]


def test_what_is_gone_is_dropped_and_what_was_not_read_is_kept():
    old = update_dates(None, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN), "b.sops.yaml": Reading(CIPHER, PLAIN)}, days(9)).dates
    less = b"password: ENC[AES256_GCM,data:x]\nsops: {}\n"
    update = update_dates(old, KEY, {"a.sops.yaml": Reading(less, b"password: first-SENTINEL\n", days(1))}, DAY)
    assert list(update.dates.files) == ["a.sops.yaml"] and dates_of(update.dates) == {"password": days(9)}
    kept = update_dates(old, KEY, {"a.sops.yaml": Reading(b"unreadable"), "b.sops.yaml": Reading(CIPHER)}, DAY)
    assert kept.dates.files == old.files
    # a rewrite that kept every value (a data-key rotation): the content hash follows, nothing else
    follows = update_dates(old, KEY, {"a.sops.yaml": Reading(b"rotated", was=CIPHER), "b.sops.yaml": Reading(b"x", was=b"y")}, DAY)
    assert follows.dates.files["a.sops.yaml"] == FileRecord(content_digest(b"rotated"), old.files["a.sops.yaml"].values)
    assert follows.dates.files["b.sops.yaml"] == old.files["b.sops.yaml"]


def test_another_key_keeps_the_dates_and_fingerprints_anew():
    old = recorded_on(days(200), key=OTHER_KEY)
    # a changed value cannot be told apart: the dates are kept, the fingerprints are this key's, and the caller warns
    update = update_dates(old, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN_CHANGED, days(1))}, DAY)
    assert update.uncomparable and dates_of(update.dates) == {"password": days(200), "token": days(200)}
    assert update.dates.key_id == key_id(KEY)
    assert update_dates(update.dates, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN_CHANGED, days(1))}, DAY).changed == []
    # with the old key at hand (an age-key rotation) the values are compared
    rotated = update_dates(old, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN_CHANGED, days(1))}, DAY, [OTHER_KEY])
    assert not rotated.uncomparable and dates_of(rotated.dates) == {"password": days(1), "token": days(200)}
    # a file that cannot be read keeps its dates, without fingerprints of another key: adopted at its next reading
    unread = update_dates(old, KEY, {"a.sops.yaml": Reading(CIPHER)}, DAY)
    assert {e.fingerprint for e in unread.dates.files["a.sops.yaml"].values.values()} == {None}
    assert needs_plaintext(unread.dates, KEY, "a.sops.yaml", CIPHER)
    adopted = update_dates(unread.dates, KEY, {"a.sops.yaml": Reading(CIPHER, PLAIN_CHANGED, days(1))}, DAY)
    assert dates_of(adopted.dates) == {"password": days(200), "token": days(200)} and not adopted.uncomparable


def test_what_needs_a_decryption():
    old = recorded_on(days(5))
    assert not needs_plaintext(old, KEY, "a.sops.yaml", CIPHER)
    assert needs_plaintext(old, KEY, "a.sops.yaml", CIPHER + b"\n")
    assert needs_plaintext(old, KEY, "b.sops.yaml", CIPHER)
    assert needs_plaintext(old, OTHER_KEY, "a.sops.yaml", CIPHER)
    assert needs_plaintext(None, KEY, "a.sops.yaml", CIPHER)


# ---------------------------------------------------------------------------- ages, for doctor


def test_ages_from_the_record_the_fingerprints_or_sops_lastmodified():
    old = recorded_on(days(200))
    ages = {a.key: (a.days, a.source) for a in credential_ages(old, KEY, "a.sops.yaml", CIPHER, PLAIN_CHANGED, days(3), DAY)}
    assert ages == {"password": (0, CHANGED_SINCE_RECORDED), "token": (200, RECORDED)}
    unrecorded = credential_ages(None, KEY, "a.sops.yaml", CIPHER, PLAIN, days(3), DAY)
    assert {(a.key, a.days, a.source) for a in unrecorded} == {("password", 3, LASTMODIFIED), ("token", 3, LASTMODIFIED)}
    # without the plaintext: only the bytes recorded can be dated
    assert [a.days for a in credential_ages(old, KEY, "a.sops.yaml", CIPHER, None, None, DAY)] == [200, 200]
    assert credential_ages(old, KEY, "a.sops.yaml", CIPHER + b"#", None, None, DAY) == []
    # another key: the values cannot be compared, the recorded dates count
    assert {a.source for a in credential_ages(old, OTHER_KEY, "a.sops.yaml", CIPHER, PLAIN_CHANGED, None, DAY)} == {RECORDED}
    assert credential_ages(old, KEY, "a.sops.yaml", CIPHER, PLAIN, None, DAY)[0].as_dict() == {
        "file": "a.sops.yaml", "key": "password", "changed": "2025-06-24", "days": 200, "source": RECORDED}


# ---------------------------------------------------------------------------- configure and rotate, real sops

# sops writes lastmodified with the real clock: these tests date around it.
NOW = datetime.datetime.now(datetime.UTC).date()


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(DEMO, root)
    (root / ".sops.yaml").write_text(default_sops_config([generate_key_file(root / "age.key")]))  # as init leaves it
    return root


def options(root: Path, today: datetime.date = NOW, **extra) -> ConfigureOptions:
    home = root.parent / "home"
    return ConfigureOptions(root=root, environ={"HOME": str(home)}, cache_dir=home / "cache", today=today, **extra)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def hand_encrypt(root: Path, relpath: str, text: str) -> None:
    """As `sops edit` leaves a file configure does not render."""
    sops = Sops.open(root, environ={"HOME": str(root.parent / "home")})
    (root / relpath).parent.mkdir(parents=True, exist_ok=True)
    (root / relpath).write_bytes(sops.encrypt(text.encode(), relpath))


def backdate(root: Path, by: int) -> None:
    path = root / DATES_FILE
    path.write_text(re.sub(r"changed: '(\d{4}-\d\d-\d\d)'",
                           lambda m: f"changed: '{datetime.date.fromisoformat(m[1]) - datetime.timedelta(days=by)}'",
                           path.read_text()))


def count_decrypts(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = Sops.decrypt

    def decrypt(self, relpath, content=None):
        seen.append(relpath)
        return real(self, relpath, content)

    monkeypatch.setattr(Sops, "decrypt", decrypt)
    return seen


def later(n: int) -> datetime.date:
    return NOW + datetime.timedelta(days=n)


def test_configure_records_every_secret_file_and_an_unchanged_run_writes_nothing(repo, monkeypatch):
    hand_encrypt(repo, HAND, "apiVersion: v1\nkind: Secret\nstringData:\n  HAND: hand-SENTINEL\n")
    before = snapshot(repo)
    checked = plan(options(repo, today=later(30)))
    assert snapshot(repo) == before  # check mode writes nothing
    assert DATES_FILE in checked.summary()["created"] and any(d["after_header"] == DATES_FILE for d in checked.diff())
    apply(checked)
    record = load_dates(repo)
    assert record is not None and sorted(record.files) == sorted([HAND, INFRA, APP])
    assert (repo / DATES_FILE).stat().st_mode & 0o777 == 0o644
    text = (repo / DATES_FILE).read_text()
    cluster = yaml.safe_load((repo / "cluster.yaml").read_text())
    for value in ["hand-SENTINEL", cluster["cloudflare_token"], cluster["tfstate_password"]]:
        assert value not in text
    # the rendered files are new: today; the hand-encrypted one existed: as old as its sops lastmodified
    assert set(dates_of(record, APP).values()) == {later(30)}
    assert dates_of(record, HAND) == {"stringData.HAND": NOW}
    assert f"{APP}: stringData.CLOUDFLARE_TOKEN" in checked.credentials_changed
    assert not any(p.startswith(HAND) for p in checked.credentials_changed)  # recorded, not changed
    written = snapshot(repo)
    assert plan(options(repo, today=later(31))).remembered
    # a full run with nothing changed decrypts nothing it need not and writes nothing
    seen = count_decrypts(monkeypatch)
    again = plan(options(repo, today=later(31), cache=False))
    assert [f.path for f in again.files if f.state != "unchanged"] == [] and again.credentials_changed == []
    apply(again)
    assert snapshot(repo) == written
    assert HAND not in seen  # its bytes are the ones recorded


def test_a_value_changed_in_the_vars_or_by_hand_gets_a_new_date(repo, monkeypatch):
    hand_encrypt(repo, HAND, "stringData:\n  A: alpha-SENTINEL\n  B: beta-SENTINEL\n")
    apply(plan(options(repo)))
    backdate(repo, 200)
    vars_file = repo / "cluster.yaml"
    vars_file.write_text(vars_file.read_text().replace('cloudflare_token: "demo-token', 'cloudflare_token: "new-token'))
    hand_encrypt(repo, HAND, "stringData:\n  A: alpha-SENTINEL\n  B: beta-CHANGED\n")
    seen = count_decrypts(monkeypatch)
    planned = plan(options(repo, today=later(7)))
    assert sorted(planned.credentials_changed) == [f"{APP}: stringData.CLOUDFLARE_TOKEN", f"{HAND}: stringData.B"]
    diff = repr(planned.diff())
    assert "new-token" not in diff and "beta-CHANGED" not in diff
    apply(planned)
    assert seen.count(HAND) == 1  # its bytes changed: decrypted once
    record = load_dates(repo)
    assert record is not None
    old = NOW - datetime.timedelta(days=200)
    # written by this run: today; changed by hand: as old as the file's last write; the rest: as recorded
    assert dates_of(record, APP) == {"stringData.CLOUDFLARE_TOKEN": later(7), "stringData.DOMAIN": old}
    assert dates_of(record, HAND) == {"stringData.A": old, "stringData.B": NOW}
    assert set(dates_of(record, INFRA).values()) == {old}
    assert "beta-CHANGED" not in (repo / DATES_FILE).read_text()


def test_no_repository_key_or_an_unreadable_file_leaves_it_alone(repo, tmp_path):
    apply(plan(options(repo)))
    (repo / DATES_FILE).write_text("<<<<<<< HEAD\nversion: 1\n")
    vars_file = repo / "cluster.yaml"
    vars_file.write_text(vars_file.read_text().replace('cloudflare_token: "demo-token', 'cloudflare_token: "new-token'))
    planned = plan(options(repo))
    assert planned.summary()["secrets_updated"] == [APP] and DATES_FILE not in [f.path for f in planned.files]
    assert any(w.startswith(f"{DATES_FILE}:2: not valid YAML") for w in planned.warnings)
    assert any(w.startswith(f"{DATES_FILE}:2") for w in planned.lasting_warnings)
    apply(planned)
    assert (repo / DATES_FILE).read_text() == "<<<<<<< HEAD\nversion: 1\n"
    (repo / DATES_FILE).unlink()
    # the creation rules name a key this run does not hold: no repository identity, nothing recorded
    own = next(line.split(": ", 1)[1] for line in (repo / "age.key").read_text().splitlines() if line.startswith("# public key: "))
    config = repo / ".sops.yaml"
    config.write_text(config.read_text().replace(own, generate_key_file(tmp_path / "other.key")))
    planned = plan(options(repo))
    assert planned.summary()["secrets_updated"] and DATES_FILE not in [f.path for f in planned.files]


def test_a_data_key_rotation_keeps_every_date_without_decrypting(repo, monkeypatch):
    hand_encrypt(repo, HAND, "stringData:\n  A: alpha-SENTINEL\n")
    apply(plan(options(repo)))
    backdate(repo, 100)
    recorded = load_dates(repo)
    apply(plan(options(repo)))  # the backdated record is kept as it is
    assert load_dates(repo) == recorded and recorded is not None
    isolated: list[list[str]] = []
    real = Sops.run_isolated

    def run_isolated(self, args, identities, what):
        isolated.append(args)
        return real(self, args, identities, what)

    monkeypatch.setattr(Sops, "run_isolated", run_isolated)
    result = rotate(RotateOptions(root=repo, mode="data_keys", environ={"HOME": str(repo.parent / "home")}))
    assert result.credential_dates_updated and any(DATES_FILE in line for line in result.lines(False))
    after = load_dates(repo)
    assert after is not None
    assert {p: r.values for p, r in after.files.items()} == {p: r.values for p, r in recorded.files.items()}
    for path, record in after.files.items():
        assert record.content == content_digest((repo / path).read_bytes())
    assert not any("--input-type" in args for args in isolated)  # the rotation's own checks only
    monkeypatch.undo()
    seen = count_decrypts(monkeypatch)
    planned = plan(options(repo, today=later(1)))
    assert DATES_FILE not in planned.summary()["updated"] and HAND not in seen


def test_an_age_key_rotation_fingerprints_with_the_new_key_and_keeps_the_dates(repo):
    hand_encrypt(repo, HAND, "stringData:\n  A: alpha-SENTINEL\n")
    apply(plan(options(repo)))
    backdate(repo, 100)
    recorded = load_dates(repo)
    assert recorded is not None
    result = rotate(RotateOptions(root=repo, environ={"HOME": str(repo.parent / "home")}))
    assert result.credential_dates_updated
    after = load_dates(repo)
    assert after is not None and after.key_id != recorded.key_id
    assert {p: dates_of(after, p) for p in after.files} == {p: dates_of(recorded, p) for p in recorded.files}
    assert all(e.fingerprint != recorded.files[p].values[k].fingerprint for p, r in after.files.items() for k, e in r.values.items())
    # configure with the new key agrees: nothing to write, no warning about another key
    planned = plan(options(repo, today=later(1)))
    assert DATES_FILE not in planned.summary()["updated"]
    assert not any("another age key" in w for w in planned.warnings)


def test_with_several_recipients_the_record_keeps_its_key_whoever_runs(repo, tmp_path):
    """A team (or a CI key) beside the owner's: who runs configure must not re-key the record, or it would be rewritten
    on every change of person, and a value changed in between would go unnoticed."""
    owner = tmp_path / "owner.key"
    (repo / "age.key").rename(owner)
    other = tmp_path / "ci.key"
    recipients = [owner.read_text().split("public key: ")[1].split()[0], generate_key_file(other)]
    (repo / ".sops.yaml").write_text(default_sops_config(recipients))
    both = tmp_path / "both.key"
    both.write_text(owner.read_text() + other.read_text())
    apply(plan(options(repo, age_key_file=str(owner), cache=False)))
    recorded = load_dates(repo)
    assert recorded is not None and recorded.recipient == recipients[0]
    written = (repo / DATES_FILE).read_bytes()
    assert f"key_recipient: {recipients[0]}".encode() in written
    # the CI key alone: the record is the owner's key's, still in the rules: left as it is, and said
    ci = plan(options(repo, age_key_file=str(other), cache=False, today=later(1)))
    assert DATES_FILE not in ci.summary()["updated"]
    assert any(f"keyed from the age key of {recipients[0]}" in warning for warning in ci.warnings)
    apply(ci)
    assert (repo / DATES_FILE).read_bytes() == written
    # both keys, in either order: the record's key is held, nothing to rewrite and nothing to say
    for key_file in (both, owner):
        again = plan(options(repo, age_key_file=str(key_file), cache=False, today=later(2)))
        assert DATES_FILE not in again.summary()["updated"]
        assert not any(DATES_FILE in warning for warning in again.warnings)
    # the owner's key leaves the rules (a rotation by hand): the CI key takes the record over, dates kept
    (repo / ".sops.yaml").write_text(default_sops_config(recipients[1:]))
    taken = plan(options(repo, age_key_file=str(other), cache=False, today=later(3)))
    apply(taken)
    after = load_dates(repo)
    assert after is not None and after.recipient == recipients[1]
    assert {p: dates_of(after, p) for p in after.files} == {p: dates_of(recorded, p) for p in recorded.files}


def test_a_deeply_nested_dates_file_is_unreadable_not_a_crash(tmp_path):
    (tmp_path / DATES_FILE).write_text("[" * 20000)
    with pytest.raises(DatesFileError, match="nested too deeply"):
        load_dates(tmp_path)
