# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.cluster_vars (documentation in plugins/modules/cluster_vars.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import CLUSTER_VARS_SPEC
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import secret_keys, without_secrets
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import load_schema, with_defaults
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_validation import load_and_validate


class ActionModule(ClusterSecretsAction):
    ARGUMENT_SPEC = CLUSTER_VARS_SPEC

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        options = ConfigureOptions(root=Path(args["cluster_root"]), cluster_file=args["cluster_file"],
                                   nodes_file=args["nodes_file"], known_keys=args["known_keys"])
        cluster = load_and_validate(options.vars_files, known_keys=options.known_keys, own_only=options.layout().makejinja)
        schema = load_schema()
        hidden = secret_keys(schema, cluster.data)
        data = with_defaults(cluster.data, schema)
        result.update({
            "changed": False,
            "files": cluster.files,
            "secret_keys": sorted(k for k in data if k in hidden),
            "cluster_vars": without_secrets(data, schema),
            "infrastructure_enabled": data["infrastructure_enabled"],
            "findings": [f.as_dict() for f in cluster.findings],
        })
        return result
