# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The data templates see: the cluster vars loaded and validated once per run (a keyed fingerprint lets a run
skip the validation the last one did), makejinja's data on top, and where the built-in OpenTofu layer belongs.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils import _cluster_vars as _cluster_vars_module
from ansible_collections.cluster.secrets.plugins.plugin_utils import (
    _data_files,
    _findings,
    _secrecy,
    _vars_hints,
    _vars_network,
    _vars_schema,
    _vars_validation,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars, ClusterVarsError, load_cluster_vars
from ansible_collections.cluster.secrets.plugins.plugin_utils._cue import SCHEMA_DIR as CUE_SCHEMA_DIR
from ansible_collections.cluster.secrets.plugins.plugin_utils._cue import run_cue
from ansible_collections.cluster.secrets.plugins.plugin_utils._makejinja import RepositoryLayout
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import SCHEMA_PATH, load_schema, with_defaults
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_validation import load_and_validate


def load_template_data(layout: RepositoryLayout, root: Path, known_keys: Iterable[str] = (),
                       environ: Mapping[str, str] | None = None, validated: bool = False) -> tuple[ClusterVars, dict[str, Any]]:
    """The cluster vars and the data templates see.

    In a repository with makejinja.toml, templates see exactly makejinja's data (the data files merged,
    then ``data_vars``); only the collection's own keys are validated. Elsewhere the whole schema applies
    and its defaults and derived values are filled in. ``validated`` skips the checks for input that passed
    them before.
    """
    if validated:
        cluster = load_cluster_vars(layout.vars_files)
        if cluster.errors:
            raise ClusterVarsError(cluster.findings)
    else:
        cluster = load_and_validate(layout.vars_files, known_keys=list(known_keys), own_only=layout.makejinja)
        findings, warnings = run_cue(root, layout.vars_files, environ)
        layout.warnings += warnings
        if findings:
            for finding in findings:
                finding.file, finding.line = finding.file or None, finding.line or cluster.locate(finding.path)[1]
            raise ClusterVarsError(findings)
    if not layout.makejinja:
        return cluster, with_defaults(cluster.data, load_schema())
    data = copy.deepcopy(cluster.data)
    for dotted, value in layout.settings.data_vars.items():
        here = data
        *parents, last = dotted.split(".")
        for part in parents:
            here = here.setdefault(part, {})
        here[last] = value
    return cluster, data


INFRASTRUCTURE_KEYS = ("cf_account_id", "tfstate_password", "tfstate_url", "proxmox_api_url", "proxmox_node",
                       "proxmox_api_token_id", "proxmox_api_token_secret")


BUILTIN_LAYER_FILES = ("infrastructure/secrets.sops.yaml", "infrastructure/tofu/backend.tf")


def wants_builtin_infrastructure(cluster: ClusterVars, root: Path, rendered: Iterable[str]) -> bool:
    """The built-in OpenTofu layer belongs where the cluster vars set infrastructure fields (or an earlier run
    wrote it), and never in a repository that renders an infrastructure layer of its own (its own secrets file
    or backend). A repository that only replaces some built-in files (``providers.tf``) keeps the others."""
    if set(BUILTIN_LAYER_FILES) & set(rendered):
        return False
    configured = any(cluster.data.get(key) not in (None, "") for key in INFRASTRUCTURE_KEYS)
    return configured or any((root / path).is_file() for path in BUILTIN_LAYER_FILES)


# The code validation runs: a change to any of it invalidates the remembered validation.
_VALIDATION_CODE = (_cluster_vars_module, _data_files, _findings, _secrecy, _vars_hints, _vars_network, _vars_schema,
                    _vars_validation)


def validation_fingerprint(key: bytes | None, layout: RepositoryLayout, root: Path, known_keys: Iterable[str]) -> str | None:
    """A keyed fingerprint of everything validation depends on: the vars files, known_keys, the schema and the rules.

    When it matches the one saved by the last successful run, the input is known to be valid and the
    (comparatively slow) JSON Schema validation is skipped. Keyed like the plaintext cache, it reveals nothing.
    """
    if key is None:
        return None
    digest = hmac.new(key, b"cluster.secrets validation v2", hashlib.sha256)
    cue_schemas = sorted((root / CUE_SCHEMA_DIR).glob("*.cue"))
    code = [Path(module.__file__ or "") for module in _VALIDATION_CODE]
    for path in (*layout.vars_files, *cue_schemas, SCHEMA_PATH, *code):
        try:
            # Only a regular file is read here: a FIFO or a device in its place is refused by the loader.
            content = Path(path).read_bytes() if Path(path).is_file() else b"(not a regular file)"
        except OSError:
            content = b"(absent)"
        digest.update(hashlib.sha256(content).digest())
    digest.update(json.dumps([sorted(known_keys), layout.makejinja]).encode())
    return digest.hexdigest()
