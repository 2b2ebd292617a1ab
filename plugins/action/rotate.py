# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.rotate (documentation in plugins/modules/rotate.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import ROTATE_SPEC
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import LockError, repository_lock
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate import RotateError, RotateOptions, rotate
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import SopsToolError

# Every file decrypts with the old key, the new key or both at any moment: a rerun finishes the rotation.
RERUN = "rerun the rotate playbook to continue"


class ActionModule(ClusterSecretsAction):
    ARGUMENT_SPEC = ROTATE_SPEC
    USER_ERRORS = user_error_types(RotateError)

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        options = RotateOptions(root=Path(args["cluster_root"]), mode=args["mode"], age_key_file=args["age_key_file"],
                                sops_binary=args["sops_binary"], secret_pattern=args["secret_pattern"],
                                backup_dir=args["backup_dir"])
        with repository_lock(options.root, "rotate"):  # one writer per repository
            outcome = rotate(options, check_mode=self.check_mode)
        lines = outcome.lines(self.check_mode)
        result.update(
            changed=outcome.changed or (self.check_mode and bool(outcome.files)),
            # "skipped" is a reserved result key (Ansible reads it as a boolean): the files left alone are "files_skipped".
            files=outcome.files, files_skipped=outcome.skipped, new_recipient=outcome.new_recipient,
            removed_recipients=outcome.removed_recipients, key_file=outcome.key_file, key_backup=outcome.key_backup,
            resumed=outcome.resumed, stale_key_files=outcome.stale_key_files, lines=lines, msg="\n".join(lines),
            credential_dates_updated=outcome.credential_dates_updated,
        )
        if outcome.warnings:
            result["warnings"] = outcome.warnings
        return result

    def error_message(self, exc: Exception, args: dict[str, Any]) -> str:
        # Rotation's own messages name files and public keys, never a secret value.
        if isinstance(exc, SopsToolError):
            return f"{exc} ({RERUN}: every file still decrypts with the old or the new key)"
        if isinstance(exc, (LockError, RotateError, AgeKeyError)):
            return str(exc)
        if isinstance(exc, OSError):
            return f"{exc.strerror}: {exc.filename} ({RERUN})"
        return super().error_message(exc, args)
