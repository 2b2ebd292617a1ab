# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.render (documentation in plugins/modules/render.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import RENDER_SPEC
from ansible_collections.cluster.secrets.plugins.plugin_utils._credential_dates import DATES_FILE
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_gitops import GitopsChanges
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import ExternalSecretsError
from ansible_collections.cluster.secrets.plugins.plugin_utils._external_secrets import plan_external_secrets
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu import Outcome, run_opentofu
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import TofuOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import (
    ConfigureOptions,
    Plan,
    apply,
    plan,
    plan_dates,
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
    if planned.credentials_changed:
        lines.append(f"credential dates: {len(planned.credentials_changed)} secret value(s) new or changed since the last "
                     f"run, dated in {DATES_FILE}")
    return lines


def init_opentofu(planned: Plan, settings: dict[str, Any], check_mode: bool, diff: bool) -> Outcome:
    """configure's last step, in the same task: OpenTofu init with the infrastructure secrets this run rendered,
    handed over in memory (neither read nor decrypted again); from disk when this run rendered none."""
    options = TofuOptions(
        root=planned.options.root, command="init", binary=settings["binary"] or None, tofu_dir=settings["tofu_dir"],
        secrets_file=settings["secrets_file"], age_key_file=planned.options.age_key_file,
        sops_binary=planned.options.sops_binary, init_required=settings["init_required"], timeout=settings["timeout"],
    )
    return run_opentofu(options, check_mode=check_mode, diff=diff, sops=planned.sops,
                        secrets=planned.secret_data(settings["secrets_file"]))


def opentofu_line(outcome: dict[str, Any]) -> str | None:
    """The summary line for OpenTofu: an init with nothing to do says nothing."""
    if outcome.get("changed") or "cause" in outcome or "skipped_reason" in outcome or outcome.get("failed"):
        return str(outcome.get("msg") or "") or None
    return None


def report_gitops(result: dict[str, Any], gitops: GitopsChanges, check_mode: bool) -> None:
    """The GitOps tree in configure's result: its own summary, one line (and the paths written) in configure's."""
    summary = gitops.summary()
    result["external_secrets"] = {**summary, "msg": gitops.message(check_mode)}
    result["external_secrets_written"] = True
    result["changed"] = result["changed"] or gitops.changed
    if gitops.changed:
        result["summary"].append("External Secrets GitOps: " + gitops.message(check_mode))
        result["summary"] += [f"{label}: {path}" for label, key in (("created", "created"), ("updated", "updated"),
                                                                    ("removed", "removed")) for path in summary[key]]


def external_secrets_enabled(data: Any) -> bool:
    """Whether the cluster vars turn the External Secrets Operator on (configure then runs its role)."""
    section = data.get("external_secrets") if isinstance(data, dict) else None
    return isinstance(section, dict) and bool(section.get("enabled"))


class ActionModule(ClusterSecretsAction):
    ARGUMENT_SPEC = RENDER_SPEC
    USER_ERRORS = user_error_types(ExternalSecretsError)

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
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
        with repository_lock(options.root, "configure", options.lock_timeout):
            planned = plan(options, credential_dates=False)
            # The External Secrets GitOps tree, from the cluster vars, the door and the secrets this run holds: planned
            # before configure writes, so .credential-dates.yaml dates its secrets in this run too.
            gitops, gitops_error = None, None
            if args["external_secrets"]:
                try:
                    gitops = plan_external_secrets(planned.sops, planned.cluster, prune=args["external_secrets"]["prune"],
                                                   held=planned.plaintexts)
                except self.USER_ERRORS as exc:  # configure still writes: keep its result, and fail with the reason
                    gitops_error = exc
            plan_dates(planned, gitops.files if gitops is not None else (), gitops.plaintexts if gitops is not None else None)
            if not self.check_mode:
                apply(planned)
            outcome = init_opentofu(planned, args["opentofu"], self.check_mode, self.diff_mode) if args["opentofu"] else None
            if gitops is not None and not self.check_mode:
                try:
                    gitops.apply()
                except self.USER_ERRORS as exc:
                    gitops_error = exc
        summary = planned.summary()
        result.update(summary)
        result["changed"] = planned.changed
        result["credentials_changed"] = len(planned.credentials_changed)
        result["msg"] = "\n".join(secrets_summary_lines(planned, self.check_mode))
        result["summary"] = summary_lines(planned, self.check_mode)
        result["external_secrets_enabled"] = external_secrets_enabled(planned.cluster.data)
        if outcome is not None:
            tofu = result["opentofu"] = outcome.result()
            line = opentofu_line(tofu)
            result["summary"] += [line] if line else []
            result["changed"] = result["changed"] or outcome.changed
            planned.warnings += outcome.warnings
            if outcome.failed:
                result["failed"] = True
                result["msg"] = outcome.msg
        if gitops is not None:
            report_gitops(result, gitops, self.check_mode)
            planned.warnings += gitops.warnings + gitops.stale_warnings()
        if planned.warnings:
            result["warnings"] = planned.warnings
        if gitops_error is not None:
            earlier = result["msg"] + "\n" if result.get("failed") else ""
            result["failed"] = True
            result["msg"] = earlier + "External Secrets GitOps tree: " + self.error_message(gitops_error, args)
        diffs = planned.diff() if self.diff_mode and planned.changed else []
        if gitops is not None and self.diff_mode and gitops.changed:
            diffs += gitops.diff()
        if outcome is not None and outcome.diff is not None:
            diffs.append(outcome.diff)
        if diffs:
            result["diff"] = diffs
        return result
