# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.opentofu (documentation in plugins/modules/opentofu.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.utils.display import Display

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction, user_error_types
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import OPENTOFU_SPEC
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu import run_opentofu
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import OpenTofuError, TofuOptions

display = Display()


def progress_printer(command: str, host: str) -> Callable[[str], None]:
    """Show each (already scrubbed) output line while the binary runs. Display, called from the worker process,
    hands the line to the main process, which prints it at once; on stderr, so that a machine-read stdout
    (the json callback, AWX's event stream) stays clean."""
    prefix = f"[{host}] opentofu {command} | "

    def show(line: str) -> None:
        display.display(prefix + line, stderr=True)

    return show


class ActionModule(ClusterSecretsAction):
    ARGUMENT_SPEC = OPENTOFU_SPEC
    USER_ERRORS = user_error_types(OpenTofuError)

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        # Progress for the long commands (plan, apply, destroy, and init when it is what was asked for); configure's
        # own quick init stays quiet and only reports its outcome.
        streams = args["progress"] and (args["command"] != "init" or args["init_required"])
        host = str(self.task_vars.get("inventory_hostname", "localhost"))
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
            allow_local_state=args["allow_local_state"],
            progress=progress_printer(args["command"], host) if streams else None,
        )
        outcome = run_opentofu(options, check_mode=self.check_mode, diff=self.diff_mode)
        result.update(outcome.result())
        if outcome.diff is not None:
            result["diff"] = outcome.diff
        return result

    def error_message(self, exc: Exception, args: dict[str, Any]) -> str:
        # OpenTofu's own errors are scrubbed of every decrypted value where they are made.
        return str(exc) if isinstance(exc, OpenTofuError) else super().error_message(exc, args)
