# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""External Secrets Operator: the entry points the eso actions call, and configure with what it holds in memory.

Each entry point takes what a caller already has (the loaded cluster vars, the repository's open ``Sops``)
and loads or opens only what it was not given. The concerns live beside this file: ``_eso_settings``
(options over cluster.yaml's ``external_secrets``), ``_eso_manifests`` (the objects), ``_eso_master_secrets``
(the decrypted master secrets) and ``_eso_gitops`` (the GitOps tree as a change set).

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_gitops import GitopsChanges, plan_gitops
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_master_secrets import load_master_secrets
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import (
    Settings,
    external_secrets_section,
    resolve_settings,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._makejinja import repository_layout
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_validation import load_and_validate

__all__ = ["eso_settings", "load_cluster_section", "plan_external_secrets"]


def load_cluster_section(root: Path, cluster_file: Path | None = None, nodes_file: Path | None = None) -> Mapping[str, Any] | None:
    """cluster.yaml's ``external_secrets`` mapping, read from the vars files configure reads (makejinja.toml's
    ``data``, else cluster.yaml + nodes.yaml, else cluster.toml), validated as configure validates them.

    None when a vars file is missing: the options and the defaults decide alone.
    """
    layout = repository_layout(root, cluster_file=cluster_file, nodes_file=nodes_file)
    if not layout.vars_files or not all(path.is_file() for path in layout.vars_files):
        return None
    return external_secrets_section(load_and_validate(layout.vars_files, own_only=layout.makejinja))


def eso_settings(options: Mapping[str, Any], *, cluster: ClusterVars | Mapping[str, Any] | None = None,
                 root: Path | None = None, cluster_file: Path | None = None, nodes_file: Path | None = None) -> Settings:
    """The settings: ``options`` (None: not set) over cluster.yaml's ``external_secrets`` mapping over the defaults.

    ``cluster`` is the cluster vars already loaded and validated (a ``ClusterVars`` or its data), used as they are;
    without it they are loaded from ``root`` (``load_cluster_section``); with neither, the vars do not count.
    """
    section = external_secrets_section(cluster) if cluster is not None else (
        load_cluster_section(root, cluster_file, nodes_file) if root is not None else None)
    return resolve_settings(options, section)


def plan_external_secrets(sops: Sops, cluster: ClusterVars | Mapping[str, Any], options: Mapping[str, Any] | None = None,
                          prune: bool = False, held: Mapping[str, bytes] | None = None) -> GitopsChanges | None:
    """The GitOps tree a repository's cluster vars ask for, planned with the run's open ``Sops``; nothing is written.

    For configure, which holds both in memory: None when ``external_secrets.enabled`` is not true or the mode is
    not gitops. The master secrets are decrypted through ``sops`` (read once per run), except those in ``held``
    (plaintext the caller has in memory, by path), which need not be on disk yet (configure's check mode).
    """
    settings = eso_settings(options or {}, cluster=cluster)
    if not settings.enabled or settings.mode != "gitops":
        return None
    return plan_gitops(sops, settings, load_master_secrets(sops, settings, held), prune)
