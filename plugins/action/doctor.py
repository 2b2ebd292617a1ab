# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.doctor (documentation in plugins/modules/doctor.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import DoctorOptions, diagnose, doctor_argument_spec


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=doctor_argument_spec())
        gitignore = {pattern: "warning" for pattern in args["gitignore_warnings"]}
        gitignore.update({pattern: "error" for pattern in args["gitignore_errors"]})
        options = DoctorOptions(
            root=Path(args["cluster_root"]), age_key_file=args["age_key_file"], sops_binary=args["sops_binary"],
            secret_pattern=args["secret_pattern"], max_age_days=args["max_age_days"],
            recovery_key_file=args["recovery_key_file"], gitignore=gitignore,
        )
        try:
            report = diagnose(options)
        except OSError as exc:
            result.update(failed=True, msg=f"doctor could not read the repository: {exc.strerror}: {exc.filename}")
            return result
        result.update(
            changed=False,
            findings=[f.as_dict() for f in report.findings],
            lines=report.table(),
            errors=report.count("error"),
            warnings_count=report.count("warning"),
            msg=report.summary(),
        )
        return result
