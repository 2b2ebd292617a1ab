# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import OWN_KEYS, load_schema, own_schema, with_defaults


def test_the_schema_is_read_once_per_process():
    assert load_schema() is load_schema()


def test_defaults_are_copies_the_templates_may_change():
    schema = load_schema()
    data = with_defaults({}, schema)
    data["node_dns_servers"].append("9.9.9.9")
    assert "9.9.9.9" not in schema["properties"]["node_dns_servers"]["default"]
    assert with_defaults({}, schema)["node_dns_servers"] == ["1.1.1.1", "1.0.0.1"]


def test_derived_values():
    data = with_defaults({"node_cidr": "10.0.0.0/24", "cilium_bgp_router_addr": "10.0.0.1", "cilium_bgp_router_asn": "64513",
                          "cilium_bgp_node_asn": "64514"}, {})
    assert data["node_default_gateway"] == "10.0.0.1" and data["cilium_bgp_enabled"] is True
    assert with_defaults({"node_default_gateway": "10.0.0.254", "node_cidr": "10.0.0.0/24"}, {})["node_default_gateway"] == "10.0.0.254"


def test_own_schema_keeps_only_the_collections_keys():
    narrowed = own_schema(load_schema())
    assert set(narrowed["properties"]) <= set(OWN_KEYS) and "tfstate_password" in narrowed["properties"]
    assert "required" not in narrowed
