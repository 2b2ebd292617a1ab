# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.rotate (documentation in plugins/modules/rotate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import LockError, repository_lock
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate import RotateError, RotateOptions, rotate, rotate_argument_spec
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import SopsToolError


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=rotate_argument_spec())
        try:
            options = RotateOptions(root=Path(args["cluster_root"]), mode=args["mode"], age_key_file=args["age_key_file"],
                                    sops_binary=args["sops_binary"], secret_pattern=args["secret_pattern"],
                                    backup_dir=args["backup_dir"])
            with repository_lock(options.root, "rotate"):  # one writer per repository
                outcome = rotate(options, check_mode=self._task.check_mode)
        except LockError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        except (RotateError, SopsToolError, AgeKeyError) as exc:
            result.update(failed=True, msg=f"{exc} (rerun the rotate playbook to continue: every file still decrypts "
                                           "with the old or the new key)" if isinstance(exc, SopsToolError) else str(exc))
            return result
        except OSError as exc:
            result.update(failed=True, msg=f"{exc.strerror}: {exc.filename} (rerun the rotate playbook to continue)")
            return result
        lines = outcome.lines(self._task.check_mode)
        result.update(
            changed=outcome.changed or (self._task.check_mode and bool(outcome.files)),
            # "skipped" is a reserved result key (Ansible reads it as a boolean): the files left alone are "files_skipped".
            files=outcome.files, files_skipped=outcome.skipped, new_recipient=outcome.new_recipient,
            removed_recipients=outcome.removed_recipients, key_file=outcome.key_file, key_backup=outcome.key_backup,
            resumed=outcome.resumed, stale_key_files=outcome.stale_key_files, lines=lines, msg="\n".join(lines),
        )
        if outcome.warnings:
            result["warnings"] = outcome.warnings
        return result
