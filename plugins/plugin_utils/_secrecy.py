# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which values of the cluster vars are secret, and keeping them out of everything shown.

A value is secret when its key is ``writeOnly`` in the schema or named like a secret (at any depth),
unless the schema declares that name public; a ``CHANGE-ME`` placeholder is no secret. A secret shows
up in text in many forms (escaped, URL-, HTML- or base64-encoded, line by line): ``encoded_forms`` and
``secret_fragments`` list them, ``scrub`` replaces them.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import base64
import html
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import iter_leaves
from ansible_collections.cluster.secrets.plugins.plugin_utils._findings import KeyPath, format_path
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import load_schema

SECRET_NAME_RE = re.compile(r"(?i)(passw(or)?d|secret|token|private[_-]?key|credential|api[_-]?key|passphrase)")
PLACEHOLDER_RE = re.compile(r"^CHANGE-?ME", re.IGNORECASE)


def secret_keys(schema: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> set[str]:
    """Top-level keys that hold secrets: writeOnly in the schema, or named like a secret."""
    keys = {name for name, prop in schema.get("properties", {}).items() if prop.get("writeOnly")}
    for name in data or {}:
        if isinstance(name, str) and SECRET_NAME_RE.search(name) and not _declared_public(schema, name):
            keys.add(name)
    return keys


def _declared_public(schema: Mapping[str, Any], name: str) -> bool:
    prop = schema.get("properties", {}).get(name)
    return prop is not None and not prop.get("writeOnly")


def is_secret_path(path: KeyPath, schema: Mapping[str, Any]) -> bool:
    if not path:
        return False
    top = path[0]
    if top in secret_keys(schema):
        return True
    return any(isinstance(p, str) and SECRET_NAME_RE.search(p) and not _declared_public(schema, p) for p in path)


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and bool(PLACEHOLDER_RE.match(value.strip()))


def secret_paths_by_value(data: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Every string held under a secret key, with the key paths that hold it (only the names are ever shown)."""
    schema = schema if schema is not None else load_schema()
    found: dict[str, list[str]] = {}
    for path, value in iter_leaves(data):
        if isinstance(value, str) and value.strip() and is_secret_path(path, schema) and not is_placeholder(value):
            found.setdefault(value, []).append(format_path(path))
    return found


def secret_values(data: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> list[str]:
    """Every string held under a secret key (for scrubbing messages and spotting plaintext leaks), longest first."""
    return sorted(secret_paths_by_value(data, schema), key=len, reverse=True)


def without_secrets(data: Any, schema: Mapping[str, Any], path: KeyPath = ()) -> Any:
    """A copy of ``data`` without any value held under a secret key, at any depth."""
    if isinstance(data, Mapping):
        return {key: without_secrets(value, schema, (*path, key)) for key, value in data.items()
                if not is_secret_path((*path, key), schema)}
    if isinstance(data, list):
        return [without_secrets(value, schema, (*path, index)) for index, value in enumerate(data)]
    return data


def encoded_forms(value: str) -> list[str]:
    """The ways a value shows up in text: as is, JSON/YAML/HCL-escaped (how Ansible, yaml_quote and
    terraform print it), YAML single-quoted, with HCL's doubled ``$${``/``%%{``, URL-encoded (a password
    in a DSN), HTML-escaped, and base64-encoded."""
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    forms = {value, escaped, json.dumps(value)[1:-1], escaped.replace("${", "$${").replace("%{", "%%{"),
             value.replace("'", "''"), urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
             urllib.parse.quote(value), html.escape(value), html.escape(value, quote=False),
             base64.b64encode(value.encode("utf-8")).decode("ascii")}
    return sorted(forms, key=len, reverse=True)


def secret_fragments(value: str, min_length: int) -> list[str]:
    """What to look for in a rendered file: the value, and each line of a multi-line value (a key pasted
    through ``indent()`` shows up line by line), in every encoded form, none shorter than ``min_length``."""
    parts = [value] + [line.strip() for line in value.splitlines() if line.strip() != value]
    found = {form for part in parts if len(part) >= min_length for form in encoded_forms(part) if len(form) >= min_length}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, values: Iterable[str]) -> str:
    """Replace any secret value, in any of its encoded forms, and its lines when it spans several, in ``text``."""
    for value in values:
        if len(value) < 3:
            continue
        for form in encoded_forms(value):
            text = text.replace(form, "********")
        for part in value.splitlines():
            if len(part) >= 6:
                for form in encoded_forms(part):
                    text = text.replace(form, "********")
    return text
