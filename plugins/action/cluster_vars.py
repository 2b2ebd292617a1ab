# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.cluster_vars (documentation in plugins/modules/cluster_vars.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import failure, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import cluster_vars_argument_spec
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import (
    load_and_validate,
    load_schema,
    secret_keys,
    with_defaults,
    without_secrets,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=cluster_vars_argument_spec())
        options = ConfigureOptions(root=Path(args["cluster_root"]), cluster_file=args["cluster_file"],
                                   nodes_file=args["nodes_file"], known_keys=args["known_keys"])
        try:
            cluster = load_and_validate(options.vars_files, known_keys=options.known_keys,
                                        own_only=options.layout().makejinja)
        except user_error_types() as exc:
            return failure(result, exc, options)
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
