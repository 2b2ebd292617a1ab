# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option specifications shared by the action plugins; kept in sync with doc_fragments/repository.py.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from typing import Any


def repository_argument_spec() -> dict[str, Any]:
    """Options every plugin that works on a cluster repository accepts."""
    return {
        "cluster_root": {"type": "path", "required": True},
        "cluster_file": {"type": "path"},
        "nodes_file": {"type": "path"},
        "age_key_file": {"type": "path", "no_log": False},
        "sops_binary": {"type": "path"},
    }


def render_argument_spec() -> dict[str, Any]:
    spec = repository_argument_spec()
    spec.update({
        "templates": {"type": "list", "elements": "path", "default": []},
        "builtin_templates": {"type": "bool", "default": True},
        "exclude_patterns": {"type": "list", "elements": "str", "default": []},
        "secret_pattern": {"type": "str", "default": r"\.sops\.[^/]+$"},
        "known_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
        "cache": {"type": "bool", "default": True},
        "cache_dir": {"type": "path"},
        "allow_secret_overwrite": {"type": "bool", "default": False, "no_log": False},
        "undefined": {"type": "str", "choices": ["warn", "strict"], "default": "warn"},
        "lock_timeout": {"type": "float", "default": 120.0},
    })
    return spec


def cluster_vars_argument_spec() -> dict[str, Any]:
    spec = repository_argument_spec()
    spec.update({
        "known_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
    })
    return spec


def age_key_argument_spec() -> dict[str, Any]:
    return {
        "cluster_root": {"type": "path", "required": True},
        "age_key_file": {"type": "path", "no_log": False},
        "generate": {"type": "bool", "default": True},
    }
