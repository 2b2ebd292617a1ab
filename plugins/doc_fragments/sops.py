# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options of the actions that run sops. Kept in sync with
    # plugins/plugin_utils/_argspec.py:SOPS_OPTIONS (tests/unit/plugins/action/test_options.py checks it).
    DOCUMENTATION = r"""
options:
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
