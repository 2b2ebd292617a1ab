# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import (
    ClusterVarsError,
    likely_misspelling,
    load_and_validate,
    load_cluster_vars,
    load_yaml_with_lines,
    scrub,
    secret_values,
    with_defaults,
)

VALID = """\
node_cidr: "192.168.1.0/24"
cluster_api_addr: "192.168.1.10"
cluster_gateway_addr: "192.168.1.11"
cluster_dns_gateway_addr: "192.168.1.12"
cloudflare_gateway_addr: "192.168.1.13"
repository_name: "owner/repo"
cloudflare_domain: "example.com"
cloudflare_token: "tok-secret-123"
"""


def write(tmp_path: Path, text: str, name: str = "cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def messages(tmp_path: Path, text: str) -> str:
    with pytest.raises(ClusterVarsError) as info:
        load_and_validate(write(tmp_path, text), tmp_path / "nodes.yaml")
    return str(info.value)


def test_valid_file_loads_and_derives_defaults(tmp_path):
    cluster = load_and_validate(write(tmp_path, VALID), tmp_path / "nodes.yaml")
    data = with_defaults(cluster.data, {"properties": {"cluster_pod_cidr": {"default": "10.42.0.0/16"}}})
    assert data["cluster_pod_cidr"] == "10.42.0.0/16"
    assert data["node_default_gateway"] == "192.168.1.1"
    assert data["infrastructure_enabled"] is False
    assert with_defaults({"proxmox_api_url": "https://x", "proxmox_node": "pve"}, {})["infrastructure_enabled"] is True


def test_values_are_data_never_templates(tmp_path):
    text = VALID.replace('"tok-secret-123"', "\"{{ lookup('pipe', 'id') }} p{%w0rd\"")
    cluster = load_and_validate(write(tmp_path, text), tmp_path / "nodes.yaml")
    assert cluster.data["cloudflare_token"] == "{{ lookup('pipe', 'id') }} p{%w0rd"


def test_lines_are_recorded_and_duplicates_reported():
    data, lines, findings = load_yaml_with_lines("a: 1\nb:\n  c: 2\na: 3\n", "f.yaml")
    assert data == {"a": 3, "b": {"c": 2}}
    assert lines[("b", "c")] == 3
    assert [f.line for f in findings] == [4]
    assert "more than once" in findings[0].message


def test_yaml_syntax_error_has_line_and_no_content(tmp_path):
    out = messages(tmp_path, VALID + 'tfstate_password: "unterminated secret\n')
    assert "cluster.yaml:" in out and "invalid YAML" in out
    assert "unterminated secret" not in out


def test_every_problem_at_once_without_secret_values(tmp_path):
    text = (VALID.replace('"192.168.1.11"', '"192.168.1.10"')
            .replace('"tok-secret-123"', "12345678")
            + 'proxmox_api_token_id: "nope"\ntfstate_pasword: "hunter2-typo"\ncluster_svc_cidr: "192.168.0.0/16"\n')
    out = messages(tmp_path, text)
    assert "cluster.yaml:3: cluster_gateway_addr: 192.168.1.10 is already used by cluster_api_addr" in out
    assert "cluster.yaml:8: cloudflare_token: must be a string" in out
    assert "proxmox_api_token_id: has the wrong form" in out
    assert "likely a misspelling of 'tfstate_password'" in out
    assert "cluster.yaml:11: cluster_svc_cidr: node_cidr 192.168.1.0/24 is inside cluster_svc_cidr 192.168.0.0/16" in out
    assert "12345678" not in out and "hunter2-typo" not in out


def test_nodes_file_is_merged_and_checked(tmp_path):
    write(tmp_path, "nodes:\n  - name: a\n    address: 192.168.1.20\n    controller: true\n"
                    "  - name: a\n    address: 10.9.9.9\n    controler: false\n", "nodes.yaml")
    with pytest.raises(ClusterVarsError) as info:
        load_and_validate(write(tmp_path, VALID), tmp_path / "nodes.yaml")
    out = str(info.value)
    assert "nodes.yaml:5: nodes[1].name: node name 'a' is also used by nodes[0]" in out
    assert "nodes.yaml:6: nodes[1].address: 10.9.9.9 is outside node_cidr" in out
    assert "nodes[1].controler: unknown key, likely a misspelling of 'controller'" in out
    # Whether a node needs `controller` is the templates' business: the schema requires no cluster-template key.
    assert "required key" not in out


@pytest.mark.parametrize(("name", "guess"), [
    ("cloudflare_tokn", "cloudflare_token"), ("Node_CIDR", "node_cidr"), ("tfstate_pasword", "tfstate_password"),
    ("my_own_setting", None), ("echo_greeting", None), ("cluster_api_adr", "cluster_api_addr"),
])
def test_likely_misspelling(name, guess):
    known = ["cloudflare_token", "node_cidr", "tfstate_password", "cluster_api_addr", "cluster_gateway_addr"]
    assert likely_misspelling(name, known) == guess


def test_missing_file_is_reported(tmp_path):
    cluster = load_cluster_vars(tmp_path / "cluster.yaml", tmp_path / "nodes.yaml")
    assert "file not found" in cluster.findings[0].message


def test_secret_values_and_scrub():
    data = {"cloudflare_token": "abc-token-1", "my_api_key": "k-123456", "public": "visible", "tfstate_password": "CHANGE-ME"}
    values = secret_values(data)
    assert set(values) == {"abc-token-1", "k-123456"}
    assert scrub("x abc-token-1 y k-123456 visible", values) == "x ******** y ******** visible"


def test_enabled_infrastructure_requires_the_token(tmp_path):
    out = messages(tmp_path, VALID + 'proxmox_api_url: "https://pve:8006/api2/json"\nproxmox_node: "pve"\n')
    assert "proxmox_api_token_id: required key 'proxmox_api_token_id' is missing: infrastructure is enabled" in out
    assert "proxmox_api_token_secret: required key" in out and "cluster.secrets.migrate" in out


def test_scrub_catches_escaped_and_encoded_forms():
    value = 'q"uote\\back ${x}'
    text = f'raw {value} json {json.dumps(value)} hcl {json.dumps(value)[1:-1].replace("${", "$${")} b64 {base64.b64encode(value.encode()).decode()}'
    cleaned = scrub(text, [value])
    assert "uote" not in cleaned and base64.b64encode(value.encode()).decode() not in cleaned


def test_nested_secrets_are_left_out():
    from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import load_schema, without_secrets

    data = {"my_app": {"db_password": "x", "host": "h"}, "cloudflare_token": "t", "items": [{"api_key": "k", "n": 1}]}
    assert without_secrets(data, load_schema()) == {"my_app": {"host": "h"}, "items": [{"n": 1}]}


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


def test_own_only_checks_only_the_collections_keys(tmp_path):
    path = write(tmp_path, "cloudflare_token: 5\nnode_cidr: not-a-cidr\ntfstate_url: ftp://x\ntfstate_pasword: x\n")
    with pytest.raises(ClusterVarsError) as info:
        load_and_validate([path], own_only=True)
    out = str(info.value)
    assert "cloudflare_token" not in out and "node_cidr" not in out
    assert "tfstate_url" in out and "likely a misspelling of 'tfstate_password'" in out


def test_external_secrets_store_namespaces_and_find_are_valid_cluster_vars(tmp_path):
    section = "external_secrets:\n  enabled: true\n  store_namespaces: [apps]\n  sync:\n    - {name: db, namespace: apps, find: ['^db-']}\n"
    path = write(tmp_path, VALID + section)
    load_and_validate([path])
    bad = write(tmp_path, VALID + "external_secrets:\n  store_namespaces: [Not_A_Name]\n", "bad.yaml")
    with pytest.raises(ClusterVarsError, match="store_namespaces"):
        load_and_validate([bad])
