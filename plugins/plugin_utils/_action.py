# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the action plugins share: which errors are the user's to fix, and how to report them.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import errno
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import (
    ClusterVarsError,
    load_cluster_vars,
    scrub,
    secret_values,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import LockError
from ansible_collections.cluster.secrets.plugins.plugin_utils._render import RenderError
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureError, ConfigureOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import SopsToolError

UserErrors = tuple[type[Exception], ...]


def user_error_types(*extra: type[Exception]) -> UserErrors:
    """The errors that are the user's to fix (reported as a failed task, never as a traceback), plus ``extra``."""
    return (ConfigureError, ClusterVarsError, RenderError, AgeKeyError, SopsToolError, LockError, OSError, *extra)


def os_error_message(exc: OSError) -> str:
    """An operating-system error in words: what failed, on which file when known, and nothing is left half-written."""
    cause = exc.strerror or exc.__class__.__name__
    where = f": {exc.filename}" if exc.filename else ""
    hint = " (free some space and run again)" if exc.errno == errno.ENOSPC else ""
    return f"{cause}{where}{hint}; every file configure was writing is either wholly old or wholly new"


def failure(result: dict[str, Any], exc: BaseException, options: ConfigureOptions) -> dict[str, Any]:
    """Fail the task with the error's message, with every secret value from cluster vars masked."""
    message = str(exc) if not isinstance(exc, OSError) else os_error_message(exc)
    try:
        data = load_cluster_vars(options.vars_files_or_guess()).data
        message = scrub(message, secret_values(data))
    except Exception:
        message = "an error occurred, and its message could not be checked for secrets: " + exc.__class__.__name__
    result["failed"] = True
    result["msg"] = message
    return result
