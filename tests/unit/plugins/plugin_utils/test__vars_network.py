# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_network import as_network, check_networks


def problems(data: dict) -> list[str]:
    cluster = ClusterVars(data=data, files=["cluster.yaml"])
    check_networks(cluster)
    return [f"{f.path}: {f.message}" for f in cluster.findings]


def test_networks_must_be_disjoint_including_the_defaults():
    assert problems({"node_cidr": "10.42.1.0/24"}) == [
        "('node_cidr',): node_cidr 10.42.1.0/24 is inside cluster_pod_cidr 10.42.0.0/16"]
    assert problems({"node_cidr": "10.0.0.0/24", "cluster_svc_cidr": "10.0.0.0/24"}) == [
        "('cluster_svc_cidr',): node_cidr 10.0.0.0/24 is the same network as cluster_svc_cidr 10.0.0.0/24"]


def test_addresses_inside_node_cidr_usable_and_unique():
    out = problems({"node_cidr": "10.0.0.0/24", "cluster_api_addr": "10.0.0.0", "cluster_gateway_addr": "10.0.1.5",
                    "nodes": [{"name": "a", "address": "10.0.0.0"}]})
    assert out == ["('cluster_api_addr',): 10.0.0.0 is the network or broadcast address of node_cidr",
                   "('cluster_gateway_addr',): 10.0.1.5 is outside node_cidr 10.0.0.0/24",
                   "('nodes', 0, 'address'): 10.0.0.0 is already used by cluster_api_addr"]


def test_bgp_is_all_or_nothing():
    assert problems({"cilium_bgp_router_asn": "64513"}) == [
        "('cilium_bgp_router_asn',): BGP is half configured: cilium_bgp_node_asn, cilium_bgp_router_addr missing"]
    assert problems({"cilium_bgp_router_addr": "10.0.0.1", "cilium_bgp_router_asn": "64513", "cilium_bgp_node_asn": "64514"}) == []


def test_as_network_wants_cidr_form():
    assert str(as_network("10.0.0.0/8")) == "10.0.0.0/8"
    assert as_network("10.0.0.1/8") is None and as_network("10.0.0.0") is None and as_network(8) is None
