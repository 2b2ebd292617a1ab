# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options of the actions that read the cluster vars. Kept in sync with
    # plugins/plugin_utils/_argspec.py:CLUSTER_VARS_OPTIONS (tests/unit/plugins/action/test_options.py checks it).
    DOCUMENTATION = r"""
options:
  cluster_file:
    description:
      - The cluster vars file (YAML, TOML or JSON).
      - Defaults to the files C(makejinja.toml)'s C(data) names, else C(<cluster_root>/cluster.yaml), else
        C(<cluster_root>/cluster.toml). Given, it takes the place of the C(data) entry of the same stem.
    type: path
  nodes_file:
    description:
      - Optional second vars file, merged over O(cluster_file) when it exists.
      - Defaults to C(<cluster_root>/nodes.yaml) (or the C(nodes.*) entry of C(makejinja.toml)'s C(data)).
    type: path
"""
