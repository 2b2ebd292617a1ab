# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validating the cluster vars: every problem at once, each with file, line and key path, never with a secret value.

The JSON schema (``_vars_schema``) with its errors turned into plain messages, the typo hints (``_vars_hints``),
the network checks (``_vars_network``), and what enabled infrastructure requires.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars, ClusterVarsError, load_cluster_vars
from ansible_collections.cluster.secrets.plugins.plugin_utils._findings import Finding
from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import is_secret_path
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_hints import check_misspellings
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_network import check_networks
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import SCHEMA_PATH, load_schema, own_schema


def _jsonschema() -> Any:
    """jsonschema, imported on first use: plugins that only read cluster vars need not pay for it."""
    try:
        import jsonschema  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return jsonschema


def _format_checker(jsonschema: Any) -> Any:
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("ipv4", raises=ValueError)
    def _ipv4(value: object) -> bool:
        if not isinstance(value, str):
            return True
        ipaddress.IPv4Address(value)
        return True

    @checker.checks("cidr", raises=ValueError)
    def _cidr(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if "/" not in value:
            raise ValueError("no prefix length")
        ipaddress.ip_network(value, strict=True)
        return True

    @checker.checks("domain")
    def _domain(value: object) -> bool:
        if not isinstance(value, str):
            return True
        labels = value.rstrip(".").split(".")
        return len(labels) >= 2 and all(re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", x) for x in labels)

    return checker


_TYPE_NAMES = {"string": "a string", "integer": "a whole number", "boolean": "true or false", "array": "a list",
               "object": "a mapping", "number": "a number", "null": "empty"}


def _yaml_type(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a string"


def _schema_message(error: Any, secret: bool) -> tuple[str, str | None]:
    """A message for one jsonschema error that never quotes a secret value."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("x-hint")
    shown = "" if secret else f" (got {json.dumps(error.instance, default=str)})"
    kind = error.validator
    if kind == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        name = missing[0] if missing else "a key"
        return f"required key '{name}' is missing", "add it; see the sample cluster.yaml for its meaning"
    if kind == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        names = " or ".join(str(_TYPE_NAMES.get(w, w)) for w in wanted)
        type_hint = None
        if "string" in wanted and not isinstance(error.instance, str):
            type_hint = "quote the value in YAML, e.g. key: \"yes\", so it stays text"
        return f"must be {names}, but YAML read it as {_yaml_type(error.instance)}", type_hint or hint
    if kind == "minLength":
        return "must not be empty", hint or "set a value, or remove the key if it is optional"
    if kind == "pattern":
        return f"has the wrong form{shown}", hint or f"it must match {error.validator_value}"
    if kind == "format":
        what = {"ipv4": "an IPv4 address", "cidr": "a network in CIDR form", "domain": "a domain name"}.get(error.validator_value, error.validator_value)
        return f"is not {what}{shown}", hint
    if kind == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"must be one of: {allowed}{shown}", None
    if kind in ("minimum", "maximum"):
        return f"is out of range ({kind} {error.validator_value}){shown}", hint
    return f"is invalid ({kind}){shown}", hint


def validate(cluster: ClusterVars, schema: Mapping[str, Any], known_keys: Iterable[str] = (),
             own_only: bool = False) -> list[Finding]:
    """Add every schema, semantic and misspelling problem to ``cluster.findings``; return them all.

    ``own_only``: the repository has its own makejinja.toml; check only the collection's own keys (and the
    network rules on the keys that are present), never what the repository's templates may or may not need.
    """
    if own_only:
        schema = own_schema(schema)
    jsonschema = _jsonschema()
    if jsonschema is None:
        cluster.add((), "the Python package jsonschema is required to validate cluster vars", "pip install jsonschema")
        return cluster.findings
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema, format_checker=_format_checker(jsonschema))
    for error in sorted(validator.iter_errors(cluster.data), key=lambda e: [str(p) for p in e.absolute_path]):
        path = tuple(error.absolute_path)
        if error.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", error.message)
            path = path + tuple(missing[:1])
        message, hint = _schema_message(error, is_secret_path(path, schema))
        cluster.add(path, message, hint)
    check_misspellings(cluster, schema, known_keys)
    check_networks(cluster)
    _check_infrastructure(cluster)
    return cluster.findings


INFRASTRUCTURE_TOKEN_KEYS = ("proxmox_api_token_id", "proxmox_api_token_secret")


def _check_infrastructure(cluster: ClusterVars) -> None:
    """With proxmox_api_url and proxmox_node set (infrastructure enabled) the token is required."""
    data = cluster.data
    if not (data.get("proxmox_api_url") and data.get("proxmox_node")):
        return
    for key in INFRASTRUCTURE_TOKEN_KEYS:
        if key not in data:
            cluster.add((key,), f"required key '{key}' is missing: infrastructure is enabled (proxmox_api_url and proxmox_node are set)",
                        "add it to cluster.yaml; if it is already in infrastructure/secrets.sops.yaml, "
                        "run `ansible-playbook cluster.secrets.migrate` to copy it over")


def load_and_validate(files: Sequence[Path] | Path, nodes_file: Path | None = None, schema_path: Path | None = None,
                      known_keys: Iterable[str] = (), own_only: bool = False) -> ClusterVars:
    """Load and validate; raise ClusterVarsError listing every error at once."""
    cluster = load_cluster_vars(files, nodes_file)
    if not cluster.errors:
        validate(cluster, load_schema(schema_path or SCHEMA_PATH), known_keys, own_only)
    if cluster.errors:
        raise ClusterVarsError(cluster.findings)
    return cluster
