# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""doctor's report, and a whole diagnosis in process (real age keys, the real sops; no git work tree)."""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._credential_dates import DATES_FILE
from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import DoctorOptions, DoctorReport, diagnose
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate_journal import ROTATE_STATE_NAME
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config

SECRET = INFRA = "infrastructure/secrets.sops.yaml"


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_table_puts_errors_first_with_their_fixes():
    report = DoctorReport()
    report.add("ok", "tools", "sops", "sops 3.11.0")
    report.add("warning", "rotation", "a.sops.yaml", "old data key", "rotate it")
    report.add("error", "encryption", "b.sops.yaml", "NOT ENCRYPTED", "encrypt it")
    report.add("ok", "git", "age.key", "not tracked", "never shown")
    lines = report.table()
    assert lines[0] == "doctor: 1 error(s), 1 warning(s), 0 note(s), 2 check(s) passed"
    assert lines[1].split() == ["STATUS", "CHECK", "SUBJECT", "FINDING"]
    assert lines[2].startswith("ERROR") and lines[3].strip() == "fix: encrypt it"
    assert lines[4].startswith("WARNING") and lines[5].strip() == "fix: rotate it"
    assert "never shown" not in "\n".join(lines)
    assert [f.check for f in report.errors] == ["encryption"]
    assert report.findings[0].as_dict() == {"severity": "ok", "check": "tools", "subject": "sops", "message": "sops 3.11.0", "fix": ""}


def test_a_diagnosis_finds_what_is_wrong_and_writes_nothing(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    recipient = generate_key_file(root / "age.key")
    (root / ".sops.yaml").write_text(default_sops_config([recipient]))
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    sops = Sops.open(root, environ=environ)
    (root / "infrastructure").mkdir()
    (root / SECRET).write_bytes(sops.encrypt(b"token: hunter2-value\n", SECRET))
    (root / "kubernetes").mkdir()
    (root / "kubernetes" / "leak.sops.yaml").write_text("stringData:\n  TOKEN: plaintext-token-value\n")
    (root / "kubernetes" / ".rotate-tmp.s.sops.yaml").write_text("x: 1\n")
    (root / ".secrets-backup").mkdir()
    (root / ".secrets-backup" / ROTATE_STATE_NAME).write_text("{}")
    before = snapshot(root)

    report = diagnose(DoctorOptions(root=root, environ=environ))
    assert snapshot(root) == before
    result = {(f.severity, f.check, f.subject) for f in report.findings}
    assert ("ok", "secret file", SECRET) in result
    assert ("error", "encryption", "kubernetes/leak.sops.yaml") in result
    assert ("warning", "temp file", "kubernetes/.rotate-tmp.s.sops.yaml") in result
    assert ("warning", "rotation", f".secrets-backup/{ROTATE_STATE_NAME}") in result
    assert ("info", "git", ".") in result  # not a git work tree: the tracked-file checks are skipped
    assert ("info", "recovery", "backup key") in result
    text = "\n".join(report.table())
    for value in ("hunter2-value", "plaintext-token-value", "AGE-SECRET-KEY"):
        assert value not in text


def test_a_missing_folder_is_one_error(tmp_path):
    report = diagnose(DoctorOptions(root=tmp_path / "absent"))
    [error] = report.findings
    assert (error.severity, error.check, error.message) == ("error", "repository", "not a directory")


def test_the_committed_public_key_is_checked_against_the_key_in_use_and_the_rules(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_identity

    root = tmp_path / "repo"
    root.mkdir()
    recipient = generate_key_file(root / "age.key")
    other = str(generate_identity().recipient)
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    public = root / ".age-public-key"

    def findings(sops_recipients: list[str]) -> set[tuple[str, str]]:
        (root / ".sops.yaml").write_text(default_sops_config(sops_recipients))
        report = diagnose(DoctorOptions(root=root, environ=environ))
        assert "AGE-SECRET-KEY" not in "\n".join(report.table())
        return {(f.severity, f.message) for f in report.findings if f.check == "public key"}

    assert findings([recipient]) == {("info", "no .age-public-key: run init (or write the recipient there) so others "
                                              "can encrypt for this repository")}
    public.write_text(f"{recipient}\n")
    assert findings([recipient]) == {("ok", f"public key {recipient}, the key in use, listed in .sops.yaml")}
    public.write_text("age1-not-a-key\n")
    [(severity, message)] = findings([recipient])
    assert severity == "error" and "not hold a valid age public key" in message
    public.write_text(f"{other}\n")
    result = findings([recipient])
    [mismatch] = [message for severity, message in result if severity == "error"]
    assert other in mismatch and recipient in mismatch  # both public keys named: they are safe to print
    assert ("warning", f".age-public-key names {other}, which no creation rule of .sops.yaml lists: "
                       "files are not encrypted for it") in result
    public.write_text(f"{recipient}\n")
    assert [severity for severity, _message in findings([other])] == ["warning"]  # the key in use, but not in .sops.yaml


# ---------------------------------------------------------------------------- credential age

DEMO = Path(__file__).resolve().parents[4] / "examples" / "demo"
APP = "kubernetes/apps/default/echo/app/secret.sops.yaml"
HAND = "kubernetes/apps/default/hand/secret.sops.yaml"
NOW = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC)


def configured(tmp_path: Path) -> tuple[Path, dict[str, str], Sops]:
    """The demo repository as configure leaves it on 2026-01-01."""
    from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions, apply, plan

    root = tmp_path / "repo"
    shutil.copytree(DEMO, root)
    (root / ".sops.yaml").write_text(default_sops_config([generate_key_file(root / "age.key")]))
    environ = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    apply(plan(ConfigureOptions(root=root, environ=environ, cache_dir=tmp_path / "cache", today=NOW.date())))
    return root, environ, Sops.open(root, environ=environ)


def test_credentials_unchanged_for_too_long_are_reported_oldest_first_without_values(tmp_path):
    root, environ, sops = configured(tmp_path)
    dates = root / DATES_FILE
    text = re.sub(r"changed: '[^']+'", "changed: '2025-06-01'", dates.read_text())
    dates.write_text(re.sub(r"(tfstate_password: \{changed: )'[^']+'", r"\1'2025-01-01'", text))
    # a value changed with sops after configure recorded it, and a file configure never saw
    plain = sops.decrypt(APP).replace(b"demo-token", b"hand-SENTINEL")
    (root / APP).write_bytes(sops.encrypt(plain, APP))
    (root / HAND).parent.mkdir(parents=True)
    (root / HAND).write_bytes(sops.encrypt(b"stringData:\n  TOKEN: fresh-SENTINEL\n", HAND))

    report = diagnose(DoctorOptions(root=root, environ=environ, now=NOW))
    ages = [(c["file"], c["key"], c["days"], c["source"]) for c in report.credentials]
    assert ages[0] == (INFRA, "tfstate_password", 365, "recorded")
    rest = ("cf_account_id", "proxmox_api_token_id", "proxmox_api_token_secret", "tfstate_username")
    assert ages[1:] == [(INFRA, k, 214, "recorded") for k in rest] + [(APP, "stringData.DOMAIN", 214, "recorded")]
    assert report.credentials[0]["changed"] == "2025-01-01"
    found = {(f.severity, f.subject): f for f in report.findings if f.check == "credential age"}
    oldest = found[("warning", f"{INFRA}: tfstate_password")]
    assert oldest.message == "unchanged for 365 days (since 2025-01-01; policy 90)"
    assert "sops edit" in oldest.fix and "configure" in oldest.fix
    assert ("warning", f"{APP}: stringData.CLOUDFLARE_TOKEN") not in found  # changed: new
    assert "1 value(s) changed since configure last recorded them (stringData.CLOUDFLARE_TOKEN)" in found[("info", APP)].message
    assert "not recorded yet (stringData.TOKEN): dated by sops lastmodified" in found[("info", HAND)].message
    # the data key's age is about the encryption, not the credentials (a fresh data key here: no warning)
    assert not [f for f in report.findings if f.check == "rotation"]
    text = "\n".join(report.table()) + repr(report.credentials)
    for value in ("hand-SENTINEL", "fresh-SENTINEL", "demo-token", "pa\"ss", "00000000-demo", "0123456789abcdef0123"):
        assert value not in text
    # a longer policy: nothing over age, one line says so
    calm = diagnose(DoctorOptions(root=root, environ=environ, now=NOW, max_age_days=400))
    assert calm.credentials == []
    assert [f.message for f in calm.findings if f.check == "credential age" and f.severity == "ok"] == [
        "8 credential(s), none unchanged for more than 400 days (the oldest: 365 day(s))"]


def test_the_dates_file_absent_unreadable_or_not_committed(tmp_path):
    root, environ, _sops = configured(tmp_path)
    subprocess.run(["git", "init", "-q", str(root)], check=True)

    def findings() -> set[tuple[str, str]]:
        report = diagnose(DoctorOptions(root=root, environ=environ, now=NOW))
        return {(f.severity, f.message.split(":")[0]) for f in report.findings if f.check == "credential age" and f.subject == DATES_FILE}

    assert ("warning", "not committed to git") in findings()
    subprocess.run(["git", "-C", str(root), "add", DATES_FILE], check=True)
    assert ("warning", "not committed to git") not in findings()
    (root / DATES_FILE).write_text("<<<<<<< HEAD\n")
    assert ("warning", "cannot be read") in findings()
    (root / DATES_FILE).unlink()
    subprocess.run(["git", "-C", str(root), "rm", "-q", "--cached", DATES_FILE], check=True)
    assert findings() == {("info", "not found")}
