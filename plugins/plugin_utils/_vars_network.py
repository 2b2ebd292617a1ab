# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network checks of the cluster vars: node, pod and service networks disjoint; gateway, API and node
addresses unique and inside node_cidr; node names unique; BGP set all or nothing.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars


def as_network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """``value`` as a network when it is one in CIDR form (host bits clear), else None."""
    try:
        return ipaddress.ip_network(value, strict=True) if isinstance(value, str) and "/" in value else None
    except ValueError:
        return None


def _address(value: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(value) if isinstance(value, str) else None
    except ValueError:
        return None


NETWORK_KEYS = ("node_cidr", "cluster_pod_cidr", "cluster_svc_cidr")
VIP_KEYS = ("cluster_api_addr", "cluster_gateway_addr", "cluster_dns_gateway_addr", "cloudflare_gateway_addr")
NETWORK_DEFAULTS = {"cluster_pod_cidr": "10.42.0.0/16", "cluster_svc_cidr": "10.43.0.0/16"}


def check_networks(cluster: ClusterVars) -> None:
    """Add a finding to ``cluster`` for every network rule the vars break."""
    data = cluster.data
    networks = {}
    for key in NETWORK_KEYS:
        net = as_network(data.get(key, NETWORK_DEFAULTS.get(key)))
        if net is not None:
            networks[key] = net
    for (key_a, net_a), (key_b, net_b) in itertools.combinations(networks.items(), 2):
        if net_a.version == net_b.version and net_a.overlaps(net_b):
            if net_a == net_b:
                relation = "is the same network as"
            elif net_b.subnet_of(net_a):  # type: ignore[arg-type]  # same version, checked above
                relation = "contains"
            elif net_a.subnet_of(net_b):  # type: ignore[arg-type]
                relation = "is inside"
            else:
                relation = "overlaps"
            path_key = key_b if key_b in data else key_a
            cluster.add((path_key,), f"{key_a} {net_a} {relation} {key_b} {net_b}",
                        "networks must be disjoint; pick non-overlapping ranges (defaults: pods 10.42.0.0/16, services 10.43.0.0/16)")
    node_net = networks.get("node_cidr")
    used: dict[ipaddress.IPv4Address, str] = {}
    for key in (*VIP_KEYS, "node_default_gateway"):
        addr = _address(data.get(key))
        if addr is None:
            continue
        if addr in used:
            cluster.add((key,), f"{addr} is already used by {used[addr]}", "every gateway and API address must be unique")
        else:
            used[addr] = key
        if key in VIP_KEYS and node_net is not None and node_net.version == 4:
            if addr not in node_net:
                cluster.add((key,), f"{addr} is outside node_cidr {node_net}", "pick an unused address inside node_cidr")
            elif addr in (node_net.network_address, node_net.broadcast_address):
                cluster.add((key,), f"{addr} is the network or broadcast address of node_cidr", "pick a usable host address")
    names: dict[str, int] = {}
    for index, node in enumerate(data.get("nodes") or []):
        if not isinstance(node, dict):
            continue
        name = node.get("name")
        if isinstance(name, str):
            if name in names:
                cluster.add(("nodes", index, "name"), f"node name '{name}' is also used by nodes[{names[name]}]", "node names must be unique")
            names.setdefault(name, index)
        addr = _address(node.get("address"))
        if addr is None:
            continue
        label = f"nodes[{index}]"
        if addr in used:
            cluster.add(("nodes", index, "address"), f"{addr} is already used by {used[addr]}",
                        "each node needs its own address, distinct from the gateway and API addresses")
        else:
            used[addr] = label
        if node_net is not None and node_net.version == 4 and addr not in node_net:
            cluster.add(("nodes", index, "address"), f"{addr} is outside node_cidr {node_net}", "node addresses must be inside node_cidr")
    bgp = [k for k in ("cilium_bgp_router_addr", "cilium_bgp_router_asn", "cilium_bgp_node_asn") if data.get(k) not in (None, "")]
    if 0 < len(bgp) < 3:
        missing = sorted({"cilium_bgp_router_addr", "cilium_bgp_router_asn", "cilium_bgp_node_asn"} - set(bgp))
        cluster.add((bgp[0],), f"BGP is half configured: {', '.join(missing)} missing", "set all three cilium_bgp_* keys, or none")
