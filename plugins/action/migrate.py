# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.migrate (documentation in plugins/modules/migrate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import MIGRATE_SPEC
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
from ansible_collections.cluster.secrets.plugins.plugin_utils._migrate import (
    MigrateError,
    apply_migration,
    plan_migration,
    verify_configure,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import scrub


class ActionModule(ClusterSecretsAction):
    ARGUMENT_SPEC = MIGRATE_SPEC
    USER_ERRORS = user_error_types(MigrateError)
    # The values read from the secret files so far: no message may show them, even before they reach cluster.yaml.
    migrated_values: list[str]

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        root = Path(args["cluster_root"])
        options = ConfigureOptions(root=root, cluster_file=args["cluster_file"], nodes_file=args["nodes_file"],
                                   age_key_file=args["age_key_file"], sops_binary=args["sops_binary"])
        self.migrated_values = []
        with repository_lock(root, "migrate"):  # one writer per repository
            planned = plan_migration(root, options.cluster_file, args["sources"], args["overwrite"],
                                     args["age_key_file"], args["sops_binary"])
            self.migrated_values = planned.values
            backup = None
            # Also when nothing changed: a rerun must say why configure still stops, not send the user back to migrate.
            problem = verify_configure(planned, options) if args["verify"] else None
            if not self.check_mode:
                backup = apply_migration(planned, root, args["backup_dir"])
        # "skipped" is a reserved result key (Ansible reads it as a boolean): the keys left alone are "not_migrated".
        for name, status in (("added", "added"), ("replaced", "replaced"), ("unchanged", "unchanged"),
                             ("not_migrated", "skipped"), ("conflicts", "conflict")):
            result[name] = [item.as_dict() for item in planned.by_status(status)]
        result["backup"] = str(backup) if backup else None
        result["changed"] = planned.changed
        lines = planned.summary_lines(self.check_mode)
        if backup:
            lines.append(f"backup of the previous {planned.cluster_file.name} (mode 0600): {backup}")
        warnings = list(planned.warnings)
        if problem:
            warnings.append("after this migration configure would still stop:\n" + scrub(problem, self.migrated_values))
        elif planned.changed:
            lines.append("next: run `ansible-playbook cluster.secrets.configure` (it will keep the migrated values)")
        result["msg"] = "\n".join(lines)
        result["lines"] = lines
        if warnings:
            result["warnings"] = warnings
        if self.diff_mode and planned.changed:
            result["diff"] = planned.diff()
        return result

    def error_message(self, exc: Exception, args: dict[str, Any]) -> str:
        return scrub(super().error_message(exc, args), getattr(self, "migrated_values", []))
