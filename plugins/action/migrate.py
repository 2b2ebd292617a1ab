# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.migrate (documentation in plugins/modules/migrate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import failure, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import scrub
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
from ansible_collections.cluster.secrets.plugins.plugin_utils._migrate import (
    MigrateError,
    apply_migration,
    migrate_argument_spec,
    plan_migration,
    verify_configure,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureOptions


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=migrate_argument_spec())
        root = Path(args["cluster_root"])
        options = ConfigureOptions(root=root, cluster_file=args["cluster_file"], nodes_file=args["nodes_file"],
                                   age_key_file=args["age_key_file"], sops_binary=args["sops_binary"])
        values: list[str] = []
        try:
            with repository_lock(root, "migrate"):  # one writer per repository
                planned = plan_migration(root, options.cluster_file, args["sources"], args["overwrite"],
                                         args["age_key_file"], args["sops_binary"])
                values = planned.values
                backup = None
                # Also when nothing changed: a rerun must say why configure still stops, not send the user back to migrate.
                problem = verify_configure(planned, options) if args["verify"] else None
                if not self._task.check_mode:
                    backup = apply_migration(planned, root, args["backup_dir"])
        except user_error_types(MigrateError) as exc:
            failed = failure(result, exc, options)
            failed["msg"] = scrub(failed["msg"], values)
            return failed
        # "skipped" is a reserved result key (Ansible reads it as a boolean): the keys left alone are "not_migrated".
        for name, status in (("added", "added"), ("replaced", "replaced"), ("unchanged", "unchanged"),
                             ("not_migrated", "skipped"), ("conflicts", "conflict")):
            result[name] = [item.as_dict() for item in planned.by_status(status)]
        result["backup"] = str(backup) if backup else None
        result["changed"] = planned.changed
        lines = planned.summary_lines(self._task.check_mode)
        if backup:
            lines.append(f"backup of the previous {planned.cluster_file.name} (mode 0600): {backup}")
        warnings = list(planned.warnings)
        if problem:
            warnings.append("after this migration configure would still stop:\n" + scrub(problem, values))
        elif planned.changed:
            lines.append("next: run `ansible-playbook cluster.secrets.configure` (it will keep the migrated values)")
        result["msg"] = "\n".join(lines)
        result["lines"] = lines
        if warnings:
            result["warnings"] = warnings
        if self._task.diff and planned.changed:
            result["diff"] = planned.diff()
        return result
