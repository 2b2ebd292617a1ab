# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the action plugins share: which errors are the user's to fix, and how to report them.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import (
    ClusterVarsError,
    load_cluster_vars,
    scrub,
    secret_values,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._render import RenderError
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureError, ConfigureOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import SopsToolError


def user_error_types() -> tuple[type[Exception], ...]:
    return (ConfigureError, ClusterVarsError, RenderError, AgeKeyError, SopsToolError, OSError)


def failure(result: dict[str, Any], exc: BaseException, options: ConfigureOptions) -> dict[str, Any]:
    """Fail the task with the error's message, with every secret value from cluster vars masked."""
    message = str(exc) if not isinstance(exc, OSError) else f"{exc.strerror}: {exc.filename}"
    try:
        data = load_cluster_vars(options.vars_files_or_guess()).data
        message = scrub(message, secret_values(data))
    except Exception:
        message = "an error occurred, and its message could not be checked for secrets: " + exc.__class__.__name__
    result["failed"] = True
    result["msg"] = message
    return result
