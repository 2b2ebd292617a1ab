# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.doctor (documentation in plugins/modules/doctor.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import DOCTOR_SPEC
from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import DoctorOptions, diagnose


class ActionModule(ClusterSecretsAction):
    ARGUMENT_SPEC = DOCTOR_SPEC

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        gitignore = {pattern: "warning" for pattern in args["gitignore_warnings"]}
        gitignore.update({pattern: "error" for pattern in args["gitignore_errors"]})
        options = DoctorOptions(
            root=Path(args["cluster_root"]), age_key_file=args["age_key_file"], sops_binary=args["sops_binary"],
            secret_pattern=args["secret_pattern"], max_age_days=args["max_age_days"],
            recovery_key_file=args["recovery_key_file"], gitignore=gitignore,
        )
        report = diagnose(options)
        result.update(
            changed=False,
            findings=[f.as_dict() for f in report.findings],
            credentials=report.credentials,
            lines=report.table(),
            errors=report.count("error"),
            warnings_count=report.count("warning"),
            msg=report.summary(),
        )
        return result

    def error_message(self, exc: Exception, args: dict[str, Any]) -> str:
        # Findings are the doctor's answer; only a repository it cannot read stops it.
        if isinstance(exc, OSError):
            return f"doctor could not read the repository: {exc.strerror}: {exc.filename}"
        return super().error_message(exc, args)
