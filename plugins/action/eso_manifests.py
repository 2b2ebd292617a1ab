# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.eso_manifests (documentation in plugins/modules/eso_manifests.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import ESO_MANIFESTS_SPEC, ESO_SETTINGS_OPTIONS
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_gitops import plan_gitops
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_manifests import (
    build_objects,
    object_id,
    readable_names,
    store_namespaces,
    store_object,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_master_secrets import MasterSecret, load_master_secrets
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import ExternalSecretsError
from ansible_collections.cluster.secrets.plugins.plugin_utils._external_secrets import eso_settings
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops


class ActionModule(ClusterSecretsAction):
    ARGUMENT_SPEC = ESO_MANIFESTS_SPEC
    USER_ERRORS = user_error_types(ExternalSecretsError)

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        options = ConfigureOptions(root=Path(args["cluster_root"]), cluster_file=args["cluster_file"], nodes_file=args["nodes_file"])
        settings = eso_settings({k: args[k] for k in ESO_SETTINGS_OPTIONS}, root=options.root if args["use_cluster_vars"] else None,
                                cluster_file=options.cluster_file, nodes_file=options.nodes_file)
        enabled = settings.enabled or not args["only_when_enabled"]
        masters: list[MasterSecret] = []
        sops: Sops | None = None
        if args["write"] and enabled:
            # The Role names the Secrets the store may read: the master secrets' names are needed in both modes.
            # Their values are dropped here (in apply mode eso_master_secrets decrypts them again, no_log).
            sops = Sops.open(options.root, args["age_key_file"], args["sops_binary"])
            masters = load_master_secrets(sops, settings)
        objects = build_objects(settings, [m.name for m in masters])
        result.update({
            "changed": False,
            "enabled": settings.enabled,
            "settings": settings.as_dict(),
            "objects": objects,
            "object_ids": [object_id(o) for o in objects],
            "store_id": object_id(store_object(settings)),
            "external_secret_ids": [object_id(o) for o in objects if o["kind"] == "ExternalSecret"],
            "namespaces": [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"],
            "object_namespaces": sorted({o["metadata"]["namespace"] for o in objects if "namespace" in o["metadata"]}),
            "readable_secrets": readable_names(settings, [m.name for m in masters]),
            "store_namespaces": store_namespaces(settings),
        })
        if not result["readable_secrets"] and settings.provider == "kubernetes" and enabled:
            result["warnings"] = ["no master secret and no ExternalSecret: the store's service account may read no "
                                  "Secret, so the store stays not Ready until you add master secrets"]
        if args["only_when_enabled"] and not settings.enabled:
            result["msg"] = "external_secrets.enabled is not true in cluster.yaml: nothing to do"
            return result
        if args["write"] and settings.mode == "gitops" and sops is not None:
            with repository_lock(Path(args["cluster_root"]), "external_secrets (gitops)"):  # one writer per repository
                planned = plan_gitops(sops, settings, masters, args["prune"])
                if not self.check_mode:
                    planned.apply()
            summary = planned.summary()
            result.update(summary)
            result["master_secrets"] = [m.name for m in masters]
            result["changed"] = planned.changed
            result["msg"] = planned.message(self.check_mode)
            if planned.warnings or planned.stale:
                result.setdefault("warnings", []).extend(planned.warnings + planned.stale_warnings())
            if self.diff_mode and planned.changed:
                result["diff"] = planned.diff()
        else:
            result["msg"] = f"{len(objects)} object(s) for the {settings.provider} provider, mode {settings.mode}"
        return result
