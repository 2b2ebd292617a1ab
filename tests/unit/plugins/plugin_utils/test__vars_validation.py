# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVarsError
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import with_defaults
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_validation import load_and_validate

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


def test_enabled_infrastructure_requires_the_token(tmp_path):
    out = messages(tmp_path, VALID + 'proxmox_api_url: "https://pve:8006/api2/json"\nproxmox_node: "pve"\n')
    assert "proxmox_api_token_id: required key 'proxmox_api_token_id' is missing: infrastructure is enabled" in out
    assert "proxmox_api_token_secret: required key" in out and "cluster.secrets.migrate" in out


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
