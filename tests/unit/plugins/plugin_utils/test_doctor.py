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
