# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The option of every action: the repository it works on. Kept in sync with
    # plugins/plugin_utils/_argspec.py:REPOSITORY_OPTIONS (tests/unit/plugins/action/test_options.py checks it).
    DOCUMENTATION = r"""
options:
  cluster_root:
    description:
      - The cluster repository to work on, a folder on the controller (the one that holds C(cluster.yaml)).
    type: path
    required: true
"""
