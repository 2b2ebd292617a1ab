# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # What every action of the collection is: a controller-side action with check mode, in the action group
    # cluster.secrets.cluster_secrets (meta/runtime.yml) when it works on one repository. A module adds how it supports check and diff mode
    # (support, details) and the list of its action groups (attributes.action_group.membership): fragments merge
    # one level deep, so membership lists cannot be added up from several fragments.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and report what would change without changing it.
  diff_mode:
    description: Shows what changed (or would change in check mode) in diff mode.
  platform:
    description: Runs on the controller and works on a repository on the controller's file system.
    support: full
    platforms: posix
  action_group:
    description:
      - Options shared with other actions can be set once for a play in C(module_defaults), through the groups
        listed here; each group only holds actions that accept its options.
      - C(group/cluster.secrets.cluster_secrets) (every action that works on one repository) for C(cluster_root);
        C(group/cluster.secrets.sops) for C(age_key_file) and C(sops_binary);
        C(group/cluster.secrets.cluster_vars) for C(cluster_file) and C(nodes_file).
    support: full
"""

    # For the actions that only read: check mode does what a normal run does, and there is never a diff.
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: The action only reads, so a run in check mode is the same as any other run.
  diff_mode:
    support: N/A
    details: The action changes nothing.
"""
