# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of the action plugins, in pieces that each match one doc fragment.

===========================  ==================================  ===========================================
piece                        doc fragment                        module_defaults group (meta/runtime.yml)
===========================  ==================================  ===========================================
``REPOSITORY_OPTIONS``       ``cluster.secrets.repository``      ``group/cluster.secrets.cluster_secrets``
``CLUSTER_VARS_OPTIONS``     ``cluster.secrets.cluster_vars``    ``group/cluster.secrets.cluster_vars``
``SOPS_OPTIONS``             ``cluster.secrets.sops``            ``group/cluster.secrets.sops``
===========================  ==================================  ===========================================

Each ``*_SPEC`` below is what one action accepts: the pieces its module documentation extends, plus the
options that module documents itself. ``tests/unit/plugins/action/test_options.py`` checks that every spec,
its module's documentation and the action groups agree.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Spec = dict[str, dict[str, Any]]

# Defaults the module documentation states word for word; the unit test checks them against the constants of
# _sops_files, _opentofu_options and _rotate_result, which are not imported here so that this table stays free of their imports.
SECRET_FILE_PATTERN = r"\.sops\.[^/]+$"  # noqa: S105 - a file name pattern, not a password
OPENTOFU_COMMANDS = ["init", "plan", "apply", "destroy", "example"]
ROTATE_MODES = ["age_key", "data_keys"]


def combine(*pieces: Mapping[str, Mapping[str, Any]]) -> Spec:
    """One spec from several pieces (later pieces win), copied so that no caller changes a shared piece."""
    spec: Spec = {}
    for piece in pieces:
        for name, option in piece.items():
            spec[name] = copy.deepcopy(dict(option))
    return spec


# ---------------------------------------------------------------------------- shared pieces

# Every action works on one cluster repository on the controller.
REPOSITORY_OPTIONS: Spec = {
    "cluster_root": {"type": "path", "required": True},
}

# The actions that read the cluster vars.
CLUSTER_VARS_OPTIONS: Spec = {
    "cluster_file": {"type": "path"},
    "nodes_file": {"type": "path"},
}

# The actions that run sops (decrypt or encrypt). A key file's path is not a secret.
SOPS_OPTIONS: Spec = {
    "age_key_file": {"type": "path", "no_log": False},
    "sops_binary": {"type": "path"},
}

# What shapes the External Secrets Operator objects; None means cluster.yaml's external_secrets value, else the default.
ESO_SETTINGS_OPTIONS: Spec = {
    "enabled": {"type": "bool"},
    "mode": {"type": "str"},
    "provider": {"type": "str"},
    "namespace": {"type": "str"},
    "store_name": {"type": "str"},
    "service_account": {"type": "str"},
    "master_glob": {"type": "str"},
    "install_operator": {"type": "bool"},
    "operator_namespace": {"type": "str"},
    "chart_version": {"type": "str"},
    "chart_repo_url": {"type": "str"},
    "refresh_interval": {"type": "str"},
    "sync": {"type": "list", "elements": "dict"},
    "vault": {"type": "dict"},
    # References to the Secret keys holding the credentials, never the credentials: nothing here is secret.
    "infisical": {"type": "dict"},
    "gitops_path": {"type": "str"},
    "flux_source_name": {"type": "str"},
    "flux_namespace": {"type": "str"},
    "flux_decryption_secret": {"type": "str", "no_log": False},
    "create_target_namespaces": {"type": "bool"},
    "store_namespaces": {"type": "list", "elements": "str"},
}

# ---------------------------------------------------------------------------- one spec per action

AGE_KEY_SPEC = combine(REPOSITORY_OPTIONS, {
    "age_key_file": {"type": "path", "no_log": False},
    "generate": {"type": "bool", "default": True},
})

CLUSTER_VARS_SPEC = combine(REPOSITORY_OPTIONS, CLUSTER_VARS_OPTIONS, {
    "known_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
})

DOCTOR_SPEC = combine(REPOSITORY_OPTIONS, SOPS_OPTIONS, {
    "secret_pattern": {"type": "str", "default": SECRET_FILE_PATTERN},
    "max_age_days": {"type": "int", "default": 90},
    "recovery_key_file": {"type": "path", "no_log": False},
    "gitignore_errors": {"type": "list", "elements": "str", "default": ["cluster.yaml", "age.key"]},
    "gitignore_warnings": {"type": "list", "elements": "str", "default": ["*.tfvars"]},
})

ESO_MANIFESTS_SPEC = combine(REPOSITORY_OPTIONS, CLUSTER_VARS_OPTIONS, SOPS_OPTIONS, ESO_SETTINGS_OPTIONS, {
    "use_cluster_vars": {"type": "bool", "default": True},
    "write": {"type": "bool", "default": False},
    "prune": {"type": "bool", "default": False},
    "only_when_enabled": {"type": "bool", "default": False},
})

ESO_MASTER_SECRETS_SPEC = combine(REPOSITORY_OPTIONS, CLUSTER_VARS_OPTIONS, SOPS_OPTIONS, {
    "namespace": {"type": "str", "default": "secrets"},
    "master_glob": {"type": "str", "default": "kubernetes/secrets/*.sops.yaml"},
    "gitops_path": {"type": "str", "default": "kubernetes/apps/external-secrets"},
})

MIGRATE_SPEC = combine(REPOSITORY_OPTIONS, CLUSTER_VARS_OPTIONS, SOPS_OPTIONS, {
    "sources": {"type": "dict"},
    "overwrite": {"type": "bool", "default": False},
    "backup_dir": {"type": "path"},
    "verify": {"type": "bool", "default": True},
})

OPENTOFU_SPEC = combine(REPOSITORY_OPTIONS, SOPS_OPTIONS, {
    "command": {"type": "str", "default": "init", "choices": OPENTOFU_COMMANDS},
    "confirm": {"type": "str", "default": ""},
    "init_required": {"type": "bool", "default": False},
    "binary": {"type": "str"},
    "tofu_dir": {"type": "str", "default": "infrastructure/tofu"},
    "secrets_file": {"type": "str", "default": "infrastructure/secrets.sops.yaml", "no_log": False},
    "arguments": {"type": "list", "elements": "str", "default": []},
    "timeout": {"type": "int", "default": 1800},
    "progress": {"type": "bool", "default": True},
    "allow_local_state": {"type": "bool", "default": False},
})

RENDER_SPEC = combine(REPOSITORY_OPTIONS, CLUSTER_VARS_OPTIONS, SOPS_OPTIONS, {
    "templates": {"type": "list", "elements": "path", "default": []},
    "builtin_templates": {"type": "bool", "default": True},
    "exclude_patterns": {"type": "list", "elements": "str", "default": []},
    "secret_pattern": {"type": "str", "default": SECRET_FILE_PATTERN},
    "known_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
    "cache": {"type": "bool", "default": True},
    "cache_dir": {"type": "path"},
    "allow_secret_overwrite": {"type": "bool", "default": False, "no_log": False},
    "undefined": {"type": "str", "choices": ["warn", "strict"], "default": "warn"},
    "lock_timeout": {"type": "float", "default": 120.0},
    "opentofu": {"type": "dict", "options": {
        "init_required": {"type": "bool", "default": False},
        "binary": {"type": "str"},
        "tofu_dir": {"type": "str", "default": "infrastructure/tofu"},
        "secrets_file": {"type": "str", "default": "infrastructure/secrets.sops.yaml", "no_log": False},
        "timeout": {"type": "int", "default": 1800},
    }},
    "external_secrets": {"type": "dict", "options": {
        "prune": {"type": "bool", "default": False},
    }},
})

ROTATE_SPEC = combine(REPOSITORY_OPTIONS, SOPS_OPTIONS, {
    "mode": {"type": "str", "default": "age_key", "choices": ROTATE_MODES},
    "secret_pattern": {"type": "str", "default": SECRET_FILE_PATTERN},
    "backup_dir": {"type": "path"},
})

# Not one repository: every cluster of the play, read from each host's facts (no cluster_root, in no group).
FLEET_SPEC: Spec = {
    "step": {"type": "str", "required": True},
    "repository_fact": {"type": "str", "required": True},
    "result_fact": {"type": "str", "required": True},
    "reuse": {"type": "str", "choices": ["off", "report", "warn"], "default": "off"},
    "reuse_ignore": {"type": "list", "elements": "str", "default": []},
    "max_age_days": {"type": "int"},
}
