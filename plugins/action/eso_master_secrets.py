# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.eso_master_secrets (documentation in plugins/modules/eso_master_secrets.py).

The result holds decrypted Secret manifests, so it is always marked no_log: Ansible
censors it in every callback whatever the task says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import ESO_MASTER_SECRETS_SPEC
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_master_secrets import load_master_secrets
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import ExternalSecretsError, resolve_settings
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops


class ActionModule(ClusterSecretsAction):
    ARGUMENT_SPEC = ESO_MASTER_SECRETS_SPEC
    USER_ERRORS = user_error_types(ExternalSecretsError)
    RESULT_IS_SECRET = True

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        settings = resolve_settings({k: args[k] for k in ("namespace", "master_glob", "gitops_path")}, None)
        sops = Sops.open(Path(args["cluster_root"]).resolve(), args["age_key_file"], args["sops_binary"])
        masters = load_master_secrets(sops, settings)
        result.update({
            "changed": False,
            "names": [m.name for m in masters],
            "secrets": [m.manifest for m in masters],
            "msg": f"{len(masters)} master secret(s) decrypted in memory from {args['master_glob']}",
        })
        return result
