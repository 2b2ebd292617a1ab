# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.opentofu (documentation in plugins/modules/opentofu.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu import (
    OpenTofuError,
    TofuOptions,
    opentofu_argument_spec,
    run_opentofu,
)

display = Display()


def progress_printer(command: str, host: str) -> Callable[[str], None]:
    """Show each (already scrubbed) output line while the binary runs. Display, called from the worker process,
    hands the line to the main process, which prints it at once; on stderr, so that a machine-read stdout
    (the json callback, AWX's event stream) stays clean."""
    prefix = f"[{host}] opentofu {command} | "

    def show(line: str) -> None:
        display.display(prefix + line, stderr=True)

    return show


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=opentofu_argument_spec())
        # Progress for the long commands (plan, apply, destroy, and init when it is what was asked for); configure's
        # own quick init stays quiet and only reports its outcome.
        streams = args["progress"] and (args["command"] != "init" or args["init_required"])
        host = str((task_vars or {}).get("inventory_hostname", "localhost"))
        try:
            options = TofuOptions(
                root=Path(args["cluster_root"]),
                command=args["command"],
                binary=args["binary"],
                tofu_dir=args["tofu_dir"],
                secrets_file=args["secrets_file"],
                age_key_file=args["age_key_file"],
                sops_binary=args["sops_binary"],
                arguments=args["arguments"],
                confirm=args["confirm"],
                init_required=args["init_required"],
                timeout=args["timeout"],
                progress=progress_printer(args["command"], host) if streams else None,
            )
        except OpenTofuError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        outcome = run_opentofu(options, check_mode=bool(self._task.check_mode), diff=bool(self._task.diff))
        result.update(outcome.result())
        if outcome.diff is not None:
            result["diff"] = outcome.diff
        return result
