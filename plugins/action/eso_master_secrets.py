# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.eso_master_secrets (documentation in plugins/modules/eso_master_secrets.py).

The result holds decrypted Secret manifests, so it is always marked no_log: Ansible
censors it in every callback whatever the task says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import failure, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import repository_argument_spec
from ansible_collections.cluster.secrets.plugins.plugin_utils._external_secrets import (
    ExternalSecretsError,
    load_master_secrets,
    open_repository,
    resolve_settings,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions


def argument_spec() -> dict[str, Any]:
    spec = repository_argument_spec()
    spec.update({
        "namespace": {"type": "str", "default": "secrets"},
        "master_glob": {"type": "str", "default": "kubernetes/secrets/*.sops.yaml"},
        "gitops_path": {"type": "str", "default": "kubernetes/apps/external-secrets"},
    })
    return spec


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        result["_ansible_no_log"] = True
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        options = ConfigureOptions(root=Path(args["cluster_root"]), cluster_file=args["cluster_file"], nodes_file=args["nodes_file"])
        try:
            settings = resolve_settings({k: args[k] for k in ("namespace", "master_glob", "gitops_path")}, None)
            repo = open_repository(options.root, args["age_key_file"], args["sops_binary"])
            masters = load_master_secrets(repo, settings)
        except user_error_types(ExternalSecretsError) as exc:
            failed = failure(result, exc, options)
            failed["_ansible_no_log"] = False  # the message names files and keys, never values
            return failed
        result.update({
            "changed": False,
            "names": [m.name for m in masters],
            "secrets": [m.manifest for m in masters],
            "msg": f"{len(masters)} master secret(s) decrypted in memory from {args['master_glob']}",
        })
        return result
