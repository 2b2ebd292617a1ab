# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.render (documentation in plugins/modules/render.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import failure, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import render_argument_spec
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import (
    ConfigureOptions,
    Plan,
    apply,
    plan,
    secrets_summary_lines,
)

# Paths listed per kind in the summary; the task result (-v) lists them all.
SUMMARY_LIMIT = 20


def summary_lines(planned: Plan, check_mode: bool) -> list[str]:
    """What a person reads after a run: one count line, then each path written, then what needs attention."""
    summary = planned.summary()
    lines = [next(iter(secrets_summary_lines(planned, check_mode)))]
    for label, paths in (("created", summary["created"]), ("updated", summary["updated"])):
        lines += [f"{label}: {path}" for path in paths[:SUMMARY_LIMIT]]
        if len(paths) > SUMMARY_LIMIT:
            lines.append(f"{label}: and {len(paths) - SUMMARY_LIMIT} more (-v lists them all)")
    lines += [f"plaintext, gitignored (0600): {path}" for path in summary["plaintext_gitignored"]]
    if summary["kept"]:
        lines.append(f"left as they are (force = false in makejinja.toml): {len(summary['kept'])} file(s)")
    if summary["undefined_printed"]:
        lines.append(f"needs attention: {len(summary['undefined_printed'])} undefined value(s) printed into files "
                     "(the warning names them; configure_undefined=strict stops on them)")
    return lines


def external_secrets_enabled(data: Any) -> bool:
    """Whether the cluster vars turn the External Secrets Operator on (configure then runs its role)."""
    section = data.get("external_secrets") if isinstance(data, dict) else None
    return isinstance(section, dict) and bool(section.get("enabled"))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=render_argument_spec())
        options = ConfigureOptions(
            root=Path(args["cluster_root"]),
            cluster_file=args["cluster_file"],
            nodes_file=args["nodes_file"],
            age_key_file=args["age_key_file"],
            sops_binary=args["sops_binary"],
            secret_pattern=args["secret_pattern"],
            builtin_templates=args["builtin_templates"],
            extra_inputs=[Path(p) for p in args["templates"]],
            exclude_patterns=args["exclude_patterns"],
            known_keys=args["known_keys"],
            cache=args["cache"],
            cache_dir=Path(args["cache_dir"]) if args["cache_dir"] else None,
            allow_secret_overwrite=args["allow_secret_overwrite"],
            undefined=args["undefined"],
            lock_timeout=args["lock_timeout"],
        )
        try:
            with repository_lock(options.root, "configure", options.lock_timeout):
                planned = plan(options)
                if not self._task.check_mode:
                    apply(planned)
        except user_error_types() as exc:
            return failure(result, exc, options)
        summary = planned.summary()
        result.update(summary)
        result["changed"] = planned.changed
        result["msg"] = "\n".join(secrets_summary_lines(planned, self._task.check_mode))
        result["summary"] = summary_lines(planned, bool(self._task.check_mode))
        result["external_secrets_enabled"] = external_secrets_enabled(planned.cluster.data)
        if planned.warnings:
            result["warnings"] = planned.warnings
        if self._task.diff and planned.changed:
            result["diff"] = planned.diff()
        return result
