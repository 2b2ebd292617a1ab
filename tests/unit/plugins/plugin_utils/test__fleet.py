# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet in process: the summary, the shared values (real sops, real age keys, three repositories) and the table of
old credentials."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._fleet import (
    FleetMember,
    credential_table,
    find_shared_values,
    summary_lines,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config

SHARED = "the same password in prod and staging"


def cluster(tmp_path: Path, name: str, files: dict[str, bytes], key_of: Path | None = None) -> FleetMember:
    root = tmp_path / name
    root.mkdir()
    key_file = key_of or root / "age.key"
    recipient = generate_key_file(key_file) if key_of is None else key_of.read_text().split("public key: ")[1].split()[0]
    (root / ".sops.yaml").write_text(default_sops_config([recipient]))
    sops = Sops.open(root, str(key_file), environ={"HOME": str(tmp_path / "home")})
    for relpath, plaintext in files.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(sops.encrypt(plaintext, relpath))
    return FleetMember(name, {"root": str(root), "age_key_file": str(key_file)}, {"changed": True, "msg": f"{name} done"})


def test_values_two_clusters_share_are_found_by_location_never_shown(tmp_path):
    prod = cluster(tmp_path, "prod", {"infra/secrets.sops.yaml": f"password: {SHARED}\nuser: admin\n".encode(),
                                      "apps/token.sops.env": b"TOKEN=prod-token\n"})
    staging = cluster(tmp_path, "staging", {"infra/secrets.sops.yaml": b"password: staging-own\nuser: admin\n",
                                            "apps/db.sops.json": f'{{"db": {{"pw": "{SHARED}"}}}}'.encode()})
    lab = cluster(tmp_path, "lab", {"infra/secrets.sops.yaml": b"password: lab-own\nuser: root\n"})
    report = find_shared_values([prod, staging, lab], environ={"HOME": str(tmp_path / "home")})
    assert report.compared == ["prod", "staging", "lab"]
    assert [[str(loc) for loc in group] for group in report.shared] == [
        ["prod infra/secrets.sops.yaml password", "staging apps/db.sops.json db.pw"],
        ["prod infra/secrets.sops.yaml user", "staging infra/secrets.sops.yaml user"],
    ]
    lines = report.lines()
    assert lines[0] == "secret values shared across clusters: 2 (compared 3 clusters: prod, staging, lab)"
    assert not any(SHARED in line or "admin" in line for line in lines)
    assert report.as_dicts()[0]["clusters"] == ["prod", "staging"]
    # allowed by a key path pattern (user names), or a file:key pattern
    assert len(find_shared_values([prod, staging, lab], ["user"], {"HOME": str(tmp_path / "home")}).shared) == 1
    assert len(find_shared_values([prod, staging], ["infra/*:user", "apps/db.sops.json:db.*"],
                                  {"HOME": str(tmp_path / "home")}).shared) == 0


def test_only_clusters_whose_step_succeeded_count_and_one_key_for_two_is_said(tmp_path):
    prod = cluster(tmp_path, "prod", {"s.sops.yaml": f"password: {SHARED}\n".encode()})
    staging = cluster(tmp_path, "staging", {"s.sops.yaml": f"password: {SHARED}\n".encode()},
                      key_of=Path(prod.repository["age_key_file"]))
    failed = FleetMember("broken", {"root": str(tmp_path / "nowhere")}, {"failed": True, "msg": "stopped"})
    report = find_shared_values([prod, staging, failed], environ={"HOME": str(tmp_path / "home")})
    assert report.compared == ["prod", "staging"]
    assert report.same_key == [["prod", "staging"]]
    assert "prod and staging use the same age key: give each environment its own" in "\n".join(report.lines())
    alone = find_shared_values([prod, failed], environ={"HOME": str(tmp_path / "home")})
    assert alone.shared == [] and alone.lines()[0].startswith("secret values across clusters: not compared (1 cluster")


def test_a_cluster_without_its_key_is_named_not_compared(tmp_path):
    prod = cluster(tmp_path, "prod", {"s.sops.yaml": b"password: one\n"})
    staging = cluster(tmp_path, "staging", {"s.sops.yaml": b"password: one\n"})
    Path(staging.repository["age_key_file"]).unlink()
    report = find_shared_values([prod, staging], environ={"HOME": str(tmp_path / "home")})
    assert report.compared == ["prod"] and report.shared == []
    assert any(line.startswith("  staging: ") for line in report.lines())


def test_summary_one_line_per_cluster_in_inventory_order():
    members = [
        FleetMember("prod", {"root": "/srv/prod"}, {"changed": True, "msg": "3 files written\nmore"}),
        FleetMember("staging", {"root": "/srv/staging"}, {"changed": False, "summary": ["nothing to do"]}),
        FleetMember("lab", {"root": "/srv/lab"}, {"failed": True, "msg": "cluster.yaml: line 3: bad"}),
        FleetMember("new", {}, None),
        FleetMember("checked", {"root": "/srv/checked"}, {"changed": False, "errors": 2, "msg": "doctor: 2 error(s)"}),
    ]
    lines = summary_lines("configure", members)
    assert lines[0] == "configure on 5 cluster(s): 1 changed, 1 error, 1 failed, 1 not run, 1 ok"
    assert [line.split()[:3] for line in lines[1:]] == [
        ["prod", "changed", "/srv/prod"], ["staging", "ok", "/srv/staging"], ["lab", "failed", "/srv/lab"],
        ["new", "not", "run"], ["checked", "error", "/srv/checked"]]
    assert lines[1].endswith("3 files written") and lines[2].endswith("nothing to do")
    assert lines[4].endswith("stopped before this step (see the errors above)")


def test_with_serial_a_host_of_a_later_batch_is_pending_not_failed():
    members = [FleetMember("prod", {"root": "/srv/prod"}, {"changed": False, "msg": "nothing to do"}),
               FleetMember("lab", {}, None, in_batch=False)]
    lines = summary_lines("configure", members)
    assert lines[0] == "configure on 2 cluster(s): 1 ok, 1 pending"
    assert lines[2].split()[:2] == ["lab", "pending"] and lines[2].endswith("in another batch of the play")
    assert lines[1] == "prod     ok       /srv/prod  nothing to do"


def test_credential_table_oldest_first_across_clusters():
    members = [
        FleetMember("prod", {"root": "/p"}, {"credentials": [
            {"file": "a.sops.yaml", "key": "pw", "changed": "2026-01-01", "days": 326, "source": "recorded"}]}),
        FleetMember("staging", {"root": "/s"}, {"credentials": [
            {"file": "b.sops.yaml", "key": "token", "changed": "2025-06-01", "days": 540, "source": "sops lastmodified"},
            {"file": "a.sops.yaml", "key": "pw", "changed": "2026-08-01", "days": 114, "source": "recorded"}]}),
        FleetMember("lab", {"root": "/l"}, {"credentials": []}),
    ]
    lines = credential_table(members, 90)
    assert lines[0] == "credentials to change, oldest first (policy: 90 days): 3"
    assert [line.split()[:4] for line in lines[2:]] == [
        ["540", "2025-06-01", "staging", "b.sops.yaml"], ["326", "2026-01-01", "prod", "a.sops.yaml"],
        ["114", "2026-08-01", "staging", "a.sops.yaml"]]
    assert lines[2].endswith("(sops lastmodified)") and lines[3].endswith("a.sops.yaml pw")
    assert credential_table(members[2:]) == []
