# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.eso_manifests (documentation in plugins/modules/eso_manifests.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import failure, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import repository_argument_spec
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import load_and_validate
from ansible_collections.cluster.secrets.plugins.plugin_utils._external_secrets import (
    ExternalSecretsError,
    MasterSecret,
    apply_gitops,
    build_objects,
    load_master_secrets,
    object_id,
    open_repository,
    plan_gitops,
    readable_names,
    resolve_settings,
    settings_argument_spec,
    store_namespaces,
    store_object,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions


def argument_spec() -> dict[str, Any]:
    spec = repository_argument_spec()
    spec.update(settings_argument_spec())
    spec.update({
        "use_cluster_vars": {"type": "bool", "default": True},
        "write": {"type": "bool", "default": False},
        "prune": {"type": "bool", "default": False},
        "only_when_enabled": {"type": "bool", "default": False},
    })
    return spec


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        options = ConfigureOptions(root=Path(args["cluster_root"]), cluster_file=args["cluster_file"], nodes_file=args["nodes_file"])
        try:
            section: dict[str, Any] = {}
            if args["use_cluster_vars"] and options.vars_files and all(p.is_file() for p in options.vars_files):
                cluster = load_and_validate(options.vars_files, own_only=options.layout().makejinja)
                section = cluster.data.get("external_secrets") or {}
            settings = resolve_settings({k: args[k] for k in settings_argument_spec()}, section)
            enabled = settings.enabled or not args["only_when_enabled"]
            masters: list[MasterSecret] = []
            repo = None
            if args["write"] and enabled:
                # The Role names the Secrets the store may read: the master secrets' names are needed in both modes.
                # Their values are dropped here (in apply mode eso_master_secrets decrypts them again, no_log).
                repo = open_repository(options.root, args["age_key_file"], args["sops_binary"])
                masters = load_master_secrets(repo, settings)
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
            if args["write"] and settings.mode == "gitops" and repo is not None:
                with repository_lock(Path(args["cluster_root"]), "external_secrets (gitops)"):  # one writer per repository
                    planned = plan_gitops(repo, settings, masters, args["prune"])
                    if not self._task.check_mode:
                        apply_gitops(planned)
                summary = planned.summary()
                result.update(summary)
                result["master_secrets"] = [m.name for m in masters]
                result["changed"] = planned.changed
                verb = "would be" if self._task.check_mode else "were"
                result["msg"] = (f"{len(summary['created'])} file(s) {verb} created, {len(summary['updated'])} updated, "
                                 f"{summary['unchanged']} unchanged, {len(summary['removed'])} removed under {settings.gitops_path}")
                if summary["stale"]:
                    result.setdefault("warnings", []).extend(
                        f"{path} is no longer managed; set external_secrets_prune to delete it" for path in summary["stale"])
                if self._task.diff and planned.changed:
                    result["diff"] = planned.diff()
            else:
                result["msg"] = f"{len(objects)} object(s) for the {settings.provider} provider, mode {settings.mode}"
        except user_error_types(ExternalSecretsError) as exc:
            return failure(result, exc, options)
        return result
