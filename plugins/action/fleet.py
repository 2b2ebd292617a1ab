# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.fleet (documentation in plugins/modules/fleet.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.utils.display import Display

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import FLEET_SPEC
from ansible_collections.cluster.secrets.plugins.plugin_utils._fleet import (
    FleetMember,
    credential_table,
    find_shared_values,
    summary_lines,
)

display = Display()


def _plain(value: Any) -> Any:
    """A fact as plain data (Ansible hands out its own containers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class ActionModule(ClusterSecretsAction):
    ARGUMENT_SPEC = FLEET_SPEC

    def _fact(self, host: str, name: str) -> Any:
        try:
            return _plain(self.task_vars["hostvars"][host][name])
        except (KeyError, TypeError):
            return None

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        hosts = list(self.task_vars.get("ansible_play_hosts_all") or [])
        batch = set(self.task_vars.get("ansible_play_batch") or hosts)
        members = [FleetMember(host, self._fact(host, args["repository_fact"]) or {}, self._fact(host, args["result_fact"]),
                               in_batch=host in batch)
                   for host in hosts]
        lines = summary_lines(args["step"], members)
        result.update(changed=False, clusters=len(members), shared=[])
        if args["reuse"] != "off":
            report = find_shared_values(members, args["reuse_ignore"])
            lines += report.lines()
            if self.check_mode and report.compared:
                lines.append("  (check mode: compared as the repositories are now, not as the run would leave them)")
            result["shared"] = report.as_dicts()
            for note in report.same_key:
                display.warning(f"{' and '.join(note)} use the same age key: give each environment its own")
            if report.shared and args["reuse"] == "warn":
                display.warning(f"{len(report.shared)} secret value(s) are shared across clusters "
                                "(never the same secret in two environments): see the fleet summary")
        lines += credential_table(members, args["max_age_days"])
        result["lines"] = lines
        result["msg"] = lines[0]
        return result

    # Several repositories, so no one cluster vars file to scrub a message with: a user error says what the door or the
    # file system said (files and keys, never values); anything else only its type.
    def error_message(self, exc: Exception, args: dict[str, Any]) -> str:
        if isinstance(exc, OSError):
            return f"fleet: could not read a repository: {exc.strerror}: {exc.filename}"
        return f"fleet: {exc}"

    def unexpected_error_message(self, exc: Exception, args: dict[str, Any]) -> str:
        return (f"{self._task.action} stopped on an unexpected error ({exc.__class__.__name__}). This is a bug in "
                "cluster.secrets: please report it")
