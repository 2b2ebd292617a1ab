# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the action plugins share: one base class that runs the preamble, which errors are the user's to fix,
and how to report them without a secret value and without a traceback.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import copy
import errno
import traceback
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import Spec
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVarsError, load_cluster_vars
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import LockError
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_problems import RenderError
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureError, ConfigureOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import scrub, secret_values
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import SopsToolError

UserErrors = tuple[type[Exception], ...]

display = Display()


def user_error_types(*extra: type[Exception]) -> UserErrors:
    """The errors that are the user's to fix (reported as a failed task, never as a traceback), plus ``extra``."""
    return (ConfigureError, ClusterVarsError, RenderError, AgeKeyError, SopsToolError, LockError, OSError, *extra)


def os_error_message(exc: OSError) -> str:
    """An operating-system error in words: what failed, on which file when known, and nothing is left half-written."""
    cause = exc.strerror or exc.__class__.__name__
    where = f": {exc.filename}" if exc.filename else ""
    hint = " (free some space and run again)" if exc.errno == errno.ENOSPC else ""
    return f"{cause}{where}{hint}; every file configure was writing is either wholly old or wholly new"


def scrubbed(message: str, exc: BaseException, options: ConfigureOptions) -> str:
    """``message`` with every secret value of the cluster vars masked; when they cannot be read, only the error's
    type (a message that could not be checked is never shown)."""
    try:
        return scrub(message, secret_values(load_cluster_vars(options.vars_files_or_guess()).data))
    except Exception:
        return "an error occurred, and its message could not be checked for secrets: " + exc.__class__.__name__


def failure(result: dict[str, Any], exc: BaseException, options: ConfigureOptions) -> dict[str, Any]:
    """Fail the task with the error's message, with every secret value from cluster vars masked."""
    message = str(exc) if not isinstance(exc, OSError) else os_error_message(exc)
    result["failed"] = True
    result["msg"] = scrubbed(message, exc, options)
    return result


class ClusterSecretsAction(ActionBase):
    """The base of every action of the collection: a subclass declares its options and implements :meth:`act`.

    ``run`` does the rest, once for all: validates the task's arguments against :attr:`ARGUMENT_SPEC` (an unknown or
    mistyped option fails the task), reads check mode and diff mode, and turns an error the user can fix
    (:attr:`USER_ERRORS`) into a failed task whose message names no secret value. Any other exception fails the task
    the same way, named as a bug; its traceback (scrubbed as well) is only shown with ``-vvv``.
    """

    TRANSFERS_FILES = False
    _supports_check_mode = True

    #: The options the action accepts: pieces of ``_argspec`` (one per doc fragment) plus its own.
    ARGUMENT_SPEC: ClassVar[Spec] = {}
    #: The errors that are the user's to fix, reported by :meth:`error_message`.
    USER_ERRORS: ClassVar[UserErrors] = user_error_types()
    #: The result holds secret values: Ansible censors it whatever the task says; a failure stays readable.
    RESULT_IS_SECRET: ClassVar[bool] = False

    # Set by run() before act() is called.
    check_mode: bool = False
    diff_mode: bool = False
    task_vars: dict[str, Any]

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        del tmp
        try:
            _validation, args = self.validate_argument_spec(argument_spec=copy.deepcopy(self.ARGUMENT_SPEC))
        except AnsibleActionFail as exc:
            result.update(failed=True, msg=exc.message)
            return result
        self.check_mode = bool(self._task.check_mode)
        self.diff_mode = bool(self._task.diff)
        self.task_vars = task_vars or {}
        if self.RESULT_IS_SECRET:
            result["_ansible_no_log"] = True
        try:
            return self.act(args, result)
        except AnsibleError:
            raise  # Ansible's own (a skip, a templating error): it reports them itself
        except self.USER_ERRORS as exc:
            message = self.error_message(exc, args)
        except Exception as exc:
            message = self.unexpected_error_message(exc, args)
        result.update(failed=True, msg=message)
        if self.RESULT_IS_SECRET:
            result["_ansible_no_log"] = False  # the message names files and keys, never values
        return result

    @abstractmethod
    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """Do the work with the validated ``args``: fill ``result`` (it may already hold keys) and return it.

        Raise one of :attr:`USER_ERRORS` to fail the task; :attr:`check_mode`, :attr:`diff_mode` and
        :attr:`task_vars` are set.
        """

    def scrub_options(self, args: dict[str, Any]) -> ConfigureOptions:
        """Where the cluster vars are whose secret values no message may show."""
        return ConfigureOptions(root=Path(args["cluster_root"]), cluster_file=args.get("cluster_file"),
                                nodes_file=args.get("nodes_file"))

    def error_message(self, exc: Exception, args: dict[str, Any]) -> str:
        """The failed task's message for a user error, every secret value of the cluster vars masked."""
        return failure({}, exc, self.scrub_options(args))["msg"]

    def unexpected_error_message(self, exc: Exception, args: dict[str, Any]) -> str:
        """An exception nobody expected: a bug. Named as one, scrubbed, with the traceback at -vvv only."""
        options = self.scrub_options(args)
        display.vvv(scrubbed(traceback.format_exc(), exc, options))
        what = scrubbed(f"{exc.__class__.__name__}: {exc}", exc, options)
        return (f"{self._task.action} stopped on an unexpected error ({what}). This is a bug in cluster.secrets: "
                "please report it with the output of -vvv (it shows where, and no secret value)")
