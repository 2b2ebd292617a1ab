# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The JSON schema of the cluster vars (schemas/cluster.schema.json): read once per process, narrowed to
the collection's own keys for a repository with its own makejinja.toml, and its defaults.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_network import as_network

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "cluster.schema.json"


@functools.cache
def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The schema at ``path``, read once per process: every caller shares it, and none may change it."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# The keys the collection's own features read: in a repository with its own makejinja.toml (and its own
# idea of what its templates need) only these are checked against the schema.
OWN_KEYS = ("cf_account_id", "tfstate_username", "tfstate_password", "tfstate_url", "proxmox_api_url", "proxmox_node",
            "proxmox_api_token_id", "proxmox_api_token_secret", "external_secrets")


def own_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema narrowed to the collection's own keys."""
    narrowed = {key: value for key, value in schema.items() if key not in ("properties", "required")}
    narrowed["properties"] = {key: value for key, value in schema.get("properties", {}).items() if key in OWN_KEYS}
    return narrowed


def with_defaults(data: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """The data the templates see: schema defaults filled in, derived values added."""
    # Copies: the schema is shared, and templates and plugins may change the data they are given.
    merged = {name: copy.deepcopy(prop["default"]) for name, prop in schema.get("properties", {}).items() if "default" in prop}
    merged.update(data)
    node_net = as_network(merged.get("node_cidr"))
    if "node_default_gateway" not in merged and node_net is not None and node_net.num_addresses > 2:
        merged["node_default_gateway"] = str(next(node_net.hosts()))
    merged["infrastructure_enabled"] = bool(merged.get("proxmox_api_url") and merged.get("proxmox_node"))
    merged["cilium_bgp_enabled"] = all(merged.get(k) not in (None, "") for k in ("cilium_bgp_router_addr", "cilium_bgp_router_asn", "cilium_bgp_node_asn"))
    return merged
