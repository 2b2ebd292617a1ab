# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import load_cluster_vars


def test_missing_file_is_reported(tmp_path):
    cluster = load_cluster_vars(tmp_path / "cluster.yaml", tmp_path / "nodes.yaml")
    assert "file not found" in cluster.findings[0].message


def test_toml_vars_with_lines_and_merge_order(tmp_path):
    (tmp_path / "cluster.toml").write_text('[network]\nnode_cidr = "10.0.0.0/24"\n\n[[nodes]]\nname = "a"\n\n[[nodes]]\n'
                                           'name = "b"\n[dns]\ntoken = "s3cr3t-token"\n')
    (tmp_path / "extra.json").write_text('{"dns": {"token": "other"}, "x": 1}')
    cluster = load_cluster_vars([tmp_path / "cluster.toml", tmp_path / "extra.json"])
    assert cluster.data["dns"] == {"token": "other"} and cluster.data["nodes"][1] == {"name": "b"}
    assert cluster.locate(("network", "node_cidr")) == ("cluster.toml", 2)
    assert cluster.locate(("nodes", 1, "name")) == ("cluster.toml", 8)
    assert cluster.locate(("dns", "token"))[1] is None  # replaced by extra.json, which has no line numbers


def test_bad_toml_names_file_and_line_without_values(tmp_path):
    (tmp_path / "cluster.toml").write_text('[dns]\ntoken = "s3cr3t\nx = 1\n')
    cluster = load_cluster_vars([tmp_path / "cluster.toml"])
    [finding] = cluster.findings
    assert finding.file == "cluster.toml" and finding.line == 2 and "s3cr3t" not in finding.render()


def test_vars_files_hold_one_document_and_later_files_replace_top_level_keys(tmp_path):
    (tmp_path / "cluster.yaml").write_text("a: 1\n---\nb: 2\n")
    cluster = load_cluster_vars([tmp_path / "cluster.yaml"])
    assert cluster.data == {} and cluster.errors[0].file == "cluster.yaml" and "invalid YAML" in cluster.errors[0].message
    (tmp_path / "cluster.yaml").write_text("a:\n  x: 1\n  y: 2\nb: 1\n")
    (tmp_path / "nodes.yaml").write_text("\na:\n  z: 3\n")
    cluster = load_cluster_vars(tmp_path / "cluster.yaml", tmp_path / "nodes.yaml")
    assert cluster.data == {"a": {"z": 3}, "b": 1} and cluster.files == ["cluster.yaml", "nodes.yaml"]
    assert cluster.locate(("a", "z")) == ("nodes.yaml", 3) and cluster.locate(("a", "x")) == ("nodes.yaml", 2)
    assert cluster.locate(("b",)) == ("cluster.yaml", 4)


def test_a_lone_surrogate_is_reported_where_it_is(tmp_path):
    (tmp_path / "cluster.json").write_text('{"a": {"b": "\\ud800"}}')
    [finding] = load_cluster_vars([tmp_path / "cluster.json"]).findings
    assert finding.path == ("a", "b") and "surrogate" in finding.message
