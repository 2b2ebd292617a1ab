#!/usr/bin/python
# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: age_key
short_description: Find the age key of a cluster repository, or generate one
version_added: 0.1.0
description:
  - Looks for age identities in O(age_key_file), E(SOPS_AGE_KEY), E(SOPS_AGE_KEY_FILE), C(<cluster_root>/age.key)
    and C(~/.config/sops/age/keys.txt), in that order. Post-quantum keys (C(AGE-SECRET-KEY-PQ-1...)) are recognised.
  - When none is found and O(generate=true), writes a new X25519 identity to O(age_key_file) or
    C(<cluster_root>/age.key) with mode 0600.
  - Writes the repository's age public key (recipient) to C(<cluster_root>/.age-public-key) when that file is absent,
    as one line with mode 0644, written atomically, meant to be committed so others can encrypt for the repository. The key
    written is the first one found that C(.sops.yaml) lists (any key found, when there is no C(.sops.yaml) yet).
    An existing C(.age-public-key) is never rewritten; one that names another key only raises a warning.
  - Returns only public information; the secret key never leaves the file.
  - Runs on the controller.
extends_documentation_fragment:
  - cluster.secrets.repository
  - cluster.secrets.attributes
options:
  age_key_file:
    description: Key file to look at first, and where a new key is written.
    type: path
  generate:
    description: Generate a key when none is found.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Reports whether a key would be generated or C(.age-public-key) written, and writes nothing.
  diff_mode:
    support: none
    details: The key file is secret; no diff is shown.
  action_group:
    membership:
      - cluster.secrets.cluster_secrets
author:
  - cluster.secrets contributors (@cluster-secrets)
"""

EXAMPLES = r"""
- name: Make sure the repository has an age key
  cluster.secrets.age_key:
    cluster_root: "{{ cluster_root }}"
  register: age
"""

RETURN = r"""
path:
  description: Where the key was found or written (a file path, or the environment variable's name).
  returned: success
  type: str
recipient:
  description: The age public key (recipient) of the first identity found or generated.
  returned: success
  type: str
recipients:
  description: Public keys of every identity found.
  returned: success
  type: list
  elements: str
public_key_file:
  description:
    - Path of C(.age-public-key), which holds (or would hold) the repository's public key.
    - Absent when the repository's public key is not known (no key found is a recipient of C(.sops.yaml)).
  returned: success
  type: str
looked:
  description: The places that were looked at, in order.
  returned: always
  type: list
  elements: str
"""
