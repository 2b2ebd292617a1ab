# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""doctor's pieces that need neither sops nor git."""

from __future__ import annotations

import datetime

from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import (
    DoctorOptions,
    DoctorReport,
    check_files,
    gitignore_covers,
    secret_files,
)


def test_gitignore_reading(tmp_path):
    (tmp_path / ".gitignore").write_text("# secrets\n/cluster.yaml\nage.key\n*.tfvars\n!*.tfvars.sops.*\n")
    assert gitignore_covers(tmp_path, "cluster.yaml")
    assert gitignore_covers(tmp_path, "age.key")
    assert gitignore_covers(tmp_path, "infrastructure/terraform.tfvars")
    assert not gitignore_covers(tmp_path, "nodes.yaml")
    (tmp_path / ".gitignore").unlink()
    assert not gitignore_covers(tmp_path, "cluster.yaml")


def test_secret_files_skip_templates_tools_and_the_sops_config(tmp_path):
    for relpath in ("a/x.sops.yaml", "templates/t.sops.yaml.j2", "other/t.sops.yaml.j2", ".git/y.sops.yaml", ".sops.yaml",
                    ".secrets-backup/z.sops.yaml", "b/.rotate-tmp.w.sops.yaml", "b/plain.yaml"):
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text("x: 1\n")
    assert secret_files(tmp_path, r"\.sops\.[^/]+$") == ["a/x.sops.yaml"]


def test_plaintext_and_old_data_keys(tmp_path):
    (tmp_path / "plain.sops.yaml").write_text("password: hunter2-value\n")
    (tmp_path / "old.sops.yaml").write_text(
        "x: ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\n"
        "sops:\n  age:\n    - recipient: age1someone\n      enc: x\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: ENC[x]\n")
    report = DoctorReport()
    options = DoctorOptions(root=tmp_path, now=datetime.datetime(2024, 6, 1, tzinfo=datetime.UTC))
    check_files(options, report, ["old.sops.yaml", "plain.sops.yaml"], None, None, {"plain.sops.yaml"}, None)
    found = {(f.severity, f.check, f.subject) for f in report.findings}
    assert ("error", "encryption", "plain.sops.yaml") in found
    assert ("warning", "rotation", "old.sops.yaml") in found
    lines = report.table()
    assert lines[0].startswith("doctor: 1 error(s), 1 warning(s)")
    assert lines[2].startswith("ERROR")
    assert any("fix: sops encrypt --in-place plain.sops.yaml" in line for line in lines)
    assert "hunter2-value" not in "\n".join(lines)


def test_stale_temp_names_both_patterns():
    from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import is_stale_temp

    assert is_stale_temp(".secrets.sops.yaml.k2j4x9_a.tmp")  # tempfile.mkstemp today
    assert is_stale_temp(".cluster-settings.yaml.cluster-secrets-3fz9.tmp")  # the coming name
    for name in ("secrets.sops.yaml", ".secrets.sops.yaml.tmp", "notes.tmp", ".sops.yaml", ".x.sops.yaml.short.tmp"):
        assert not is_stale_temp(name), name


def test_a_stale_temp_is_not_a_secret_file_but_its_own_warning(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import check_stale_temps

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


def test_plaintext_secrets_names_keys_never_values():
    from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import plaintext_secrets

    text = ("---\napiVersion: v1\nkind: ConfigMap\ndata:\n  a: b\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n"
            "stringData:\n  PASSWORD: hunter2-value\n  EMPTY: ''\ndata:\n  TOKEN: aGVsbG8=\n")
    assert plaintext_secrets(text) == [("db", ["PASSWORD", "TOKEN"])]
    encrypted = "kind: Secret\nstringData:\n  A: ENC[AES256_GCM,data:AA==,type:str]\nsops:\n  mac: x\n"
    assert plaintext_secrets(encrypted) == []
    assert plaintext_secrets("kind: Secret\nmetadata: {name: x}\n") == []  # no values: nothing leaks
    assert plaintext_secrets("kind: Secret\n  bad: [yaml\n") == []


def test_tfvars_covered_by_a_nested_gitignore_outside_git(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import glob_uncovered

    (tmp_path / ".gitignore").write_text("cluster.yaml\n")
    infra = tmp_path / "infrastructure"
    infra.mkdir()
    (infra / "main.tf").write_text("")
    assert glob_uncovered(tmp_path, "*.tfvars") == ["infrastructure/terraform.tfvars"]  # no file yet: probed where .tf is
    (infra / ".gitignore").write_text("*.tfvars\n")
    assert glob_uncovered(tmp_path, "*.tfvars") == []
    (infra / "prod.tfvars").write_text("x = 1\n")
    (tmp_path / "other.tfvars").write_text("x = 1\n")
    assert glob_uncovered(tmp_path, "*.tfvars") == ["other.tfvars"]


def test_cluster_vars_readable_by_others_is_a_warning_with_the_chmod(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import check_cluster_vars_modes

    for name, mode in (("cluster.yaml", 0o644), ("nodes.yaml", 0o600), ("cluster.toml", 0o640)):
        (tmp_path / name).write_text("x: 1\n")
        (tmp_path / name).chmod(mode)
    report = DoctorReport()
    check_cluster_vars_modes(DoctorOptions(root=tmp_path), report)
    found = {f.subject: (f.severity, f.fix) for f in report.findings}
    assert found["cluster.yaml"] == ("warning", f"chmod 600 {tmp_path.resolve() / 'cluster.yaml'}")
    assert found["cluster.toml"][0] == "warning"
    assert found["nodes.yaml"][0] == "ok"
