# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""doctor's checks of keys, sops and files, in process: real age keys, and the real sops where a file must decrypt."""

from __future__ import annotations

import datetime
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeys, generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import DoctorOptions, DoctorReport
from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor_checks import (
    check_age_key,
    check_cluster_vars_modes,
    check_files,
    check_recovery,
    check_sops_config,
    check_stale_temps,
    check_tools,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config
from ansible_collections.cluster.secrets.plugins.plugin_utils._tree import secret_files

SECRET = "infrastructure/secrets.sops.yaml"


def no_keys(root: Path) -> Sops:
    return Sops(root, AgeKeys(identities=[], looked=[]))


def options(root: Path, **extra) -> DoctorOptions:
    return DoctorOptions(root=root, environ={"XDG_CONFIG_HOME": str(root / "no-config")}, **extra)


def repository(tmp_path: Path) -> tuple[Path, str]:
    """age.key, the generated .sops.yaml and one encrypted file."""
    root = tmp_path / "repo"
    root.mkdir()
    recipient = generate_key_file(root / "age.key")
    (root / ".sops.yaml").write_text(default_sops_config([recipient]))
    sops = Sops.open(root, environ={"XDG_CONFIG_HOME": str(root / "no-config")})
    (root / "infrastructure").mkdir()
    (root / SECRET).write_bytes(sops.encrypt(b"token: hunter2-value\n", SECRET))
    return root, recipient


def found(report: DoctorReport) -> set[tuple[str, str, str]]:
    return {(f.severity, f.check, f.subject) for f in report.findings}


def test_plaintext_and_old_data_keys(tmp_path):
    (tmp_path / "plain.sops.yaml").write_text("password: hunter2-value\n")
    (tmp_path / "old.sops.yaml").write_text(
        "x: ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\n"
        "sops:\n  age:\n    - recipient: age1someone\n      enc: x\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: ENC[x]\n")
    report = DoctorReport()
    doctor_options = DoctorOptions(root=tmp_path, now=datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC))
    check_files(doctor_options, report, no_keys(tmp_path), ["old.sops.yaml", "plain.sops.yaml"], None, {"plain.sops.yaml"}, False)
    assert ("error", "encryption", "plain.sops.yaml") in found(report)
    assert ("warning", "rotation", "old.sops.yaml") in found(report)
    [rotation] = [f for f in report.findings if f.check == "rotation"]
    assert "not its credentials" in rotation.message  # the data key's age, not the values'
    lines = report.table()
    assert lines[0].startswith("doctor: 1 error(s), 1 warning(s)")
    assert lines[2].startswith("ERROR")
    assert any("fix: sops encrypt --in-place plain.sops.yaml" in line for line in lines)
    assert "hunter2-value" not in "\n".join(lines)


def test_an_encrypted_file_is_read_once_and_proven_to_decrypt(tmp_path):
    root, recipient = repository(tmp_path)
    report = DoctorReport()
    sops = check_age_key(options(root), report, True)
    rules = check_sops_config(report, sops, True)
    status = sops.status(SECRET)
    assert check_files(options(root), report, sops, [SECRET], rules, None, True) == {SECRET: {recipient}}
    assert sops.status(SECRET) is status  # the metadata was parsed once, by the door
    [ok] = [f for f in report.findings if f.subject == SECRET]
    assert (ok.severity, ok.check) == ("ok", "secret file")
    assert ok.message.startswith("encrypted, for your key, matches its rule, decrypts, rotated 0 day(s) ago")
    assert ("ok", "sops config", ".sops.yaml") in found(report)
    # what it decrypted is handed on (to the credential age check), not decrypted again
    calls: list[str] = []
    real = sops.decrypt
    sops.decrypt = lambda relpath, content=None: calls.append(relpath) or real(relpath, content)  # type: ignore[method-assign]
    plaintexts: dict[str, bytes] = {}
    check_files(options(root), DoctorReport(), sops, [SECRET], rules, None, True, plaintexts=plaintexts)
    assert calls == [SECRET] and plaintexts == {SECRET: b"token: hunter2-value\n"}


def test_a_file_that_does_not_decrypt_is_an_error_without_its_content(tmp_path):
    root, _recipient = repository(tmp_path)
    path = root / SECRET
    path.write_text(path.read_text().replace("token: ENC[AES256_GCM,data:", "token: ENC[AES256_GCM,data:AAAA"))
    report = DoctorReport()
    sops = check_age_key(options(root), report, True)
    check_files(options(root), report, sops, [SECRET], check_sops_config(report, sops, True), None, True)
    assert ("error", "decrypt", SECRET) in found(report)
    assert "hunter2-value" not in "\n".join(report.table())


def test_a_broken_key_file_is_reported_and_the_checks_go_on_without_keys(tmp_path):
    root, _recipient = repository(tmp_path)
    (root / "age.key").write_text("not a key\n")
    report = DoctorReport()
    sops = check_age_key(options(root), report, True)
    assert sops.keys.identities == []
    [error] = report.errors
    assert (error.check, error.subject) == ("age key", "age key") and "age.key" in error.message
    assert check_files(options(root), report, sops, [SECRET], None, None, True)  # still read: the metadata needs no key


def test_a_key_file_others_can_read_is_a_warning_wherever_it_was_found(tmp_path):
    root, _recipient = repository(tmp_path)
    key = root / "age.key"
    moved = tmp_path / "elsewhere.key"
    key.rename(moved)
    moved.chmod(0o644)
    report = DoctorReport()
    check_age_key(DoctorOptions(root=root, environ={"SOPS_AGE_KEY_FILE": str(moved)}), report, True)
    assert ("warning", "age key", str(moved)) in found(report)
    assert any(f.fix == f"chmod 600 {moved}" for f in report.findings)


def test_sops_config_problems(tmp_path):
    root, _recipient = repository(tmp_path)
    report = DoctorReport()
    (root / ".sops.yaml").write_text("creation_rules:\n  - path_regex: x\n    age: [unclosed\n")
    assert check_sops_config(report, check_age_key(options(root), report, True), True) is None
    [error] = report.errors
    assert error.message.startswith(".sops.yaml:") and "invalid YAML" in error.message
    other = generate_key_file(tmp_path / "other.key")
    (root / ".sops.yaml").write_text(default_sops_config([other]))
    report = DoctorReport()
    check_sops_config(report, check_age_key(options(root), report, True), True)
    [error] = report.errors
    assert error.message.startswith("your public key (age1")
    (root / ".sops.yaml").unlink()
    report = DoctorReport()
    assert check_sops_config(report, no_keys(root), False) is None
    assert ("warning", "sops config", ".sops.yaml") in found(report)


def test_tools_find_sops_through_the_door(tmp_path):
    report = DoctorReport()
    assert check_tools(options(tmp_path), report, no_keys(tmp_path))
    [sops_line] = [f for f in report.findings if f.subject == "sops"]
    assert sops_line.severity == "ok" and sops_line.message.startswith("sops 3.")
    report = DoctorReport()
    missing = Sops(tmp_path, AgeKeys(identities=[], looked=[]), str(tmp_path / "no-sops"))
    assert not check_tools(options(tmp_path), report, missing)
    assert ("error", "tools", "sops") in found(report)


def test_recovery_with_only_the_backed_up_key(tmp_path):
    root, recipient = repository(tmp_path)
    backup = tmp_path / "backup.key"
    backup.write_bytes((root / "age.key").read_bytes())
    report = DoctorReport()
    sops = check_age_key(options(root), report, True)
    check_recovery(options(root, recovery_key_file=str(backup)), report, sops, {SECRET: {recipient}}, True)
    assert ("ok", "recovery", str(backup)) in found(report)
    stale = tmp_path / "stale.key"
    stale_recipient = generate_key_file(stale)
    report = DoctorReport()
    # a file that claims the stale key as a recipient, so sops must really try (and fail) with it alone
    check_recovery(options(root, recovery_key_file=str(stale)), report, sops, {SECRET: {recipient, stale_recipient}}, True)
    [error] = report.errors
    assert error.message.startswith(f"decrypting {SECRET} with only the backed-up key failed")


def test_a_stale_temp_is_not_a_secret_file_but_its_own_warning(tmp_path):
    (tmp_path / "infrastructure").mkdir()
    (tmp_path / "infrastructure" / "secrets.sops.yaml").write_text("x: 1\n")
    (tmp_path / "infrastructure" / ".secrets.sops.yaml.abcd1234.tmp").write_text("x: 1\n")
    assert secret_files(tmp_path, r"\.sops\.[^/]+$") == ["infrastructure/secrets.sops.yaml"]
    report = DoctorReport()
    check_stale_temps(DoctorOptions(root=tmp_path), report, {"infrastructure/.secrets.sops.yaml.abcd1234.tmp"})
    [item] = report.findings
    assert (item.severity, item.check) == ("warning", "temp file")
    assert item.message.startswith("stale temporary file from an interrupted run: delete it")
    assert "infrastructure/secrets.sops.yaml" in item.message and "tracked by git" in item.message
    assert "rm infrastructure/.secrets.sops.yaml.abcd1234.tmp" in item.fix


def test_cluster_vars_readable_by_others_is_a_warning_with_the_chmod(tmp_path):
    for name, mode in (("cluster.yaml", 0o644), ("nodes.yaml", 0o600), ("cluster.toml", 0o640)):
        (tmp_path / name).write_text("x: 1\n")
        (tmp_path / name).chmod(mode)
    report = DoctorReport()
    check_cluster_vars_modes(DoctorOptions(root=tmp_path), report)
    result = {f.subject: (f.severity, f.fix) for f in report.findings}
    assert result["cluster.yaml"] == ("warning", f"chmod 600 {tmp_path.resolve() / 'cluster.yaml'}")
    assert result["cluster.toml"][0] == "warning"
    assert result["nodes.yaml"][0] == "ok"
