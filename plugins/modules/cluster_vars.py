#!/usr/bin/python
# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_vars
short_description: Load and validate cluster.yaml and nodes.yaml
version_added: 0.1.0
description:
  - Loads the cluster vars as data (values are never templated) and validates them against the collection's
    JSON Schema and semantic rules (overlapping networks, colliding addresses, likely misspelt keys).
  - Every problem is reported in one failure, each with file, line, key path and a hint, never with the value
    of a secret field.
  - Returns the non-secret vars with schema defaults and derived values; secret keys are listed by name only.
  - Runs on the controller.
extends_documentation_fragment:
  - cluster.secrets.repository
  - cluster.secrets.cluster_vars
  - cluster.secrets.attributes
  - cluster.secrets.attributes.read_only
options:
  known_keys:
    description:
      - Keys of your own that look like a misspelling of a known key but are intended.
    type: list
    elements: str
    default: []
attributes:
  action_group:
    membership:
      - cluster.secrets.cluster_secrets
      - cluster.secrets.cluster_vars
author:
  - cluster.secrets contributors (@cluster-secrets)
"""

EXAMPLES = r"""
- name: Validate cluster.yaml
  cluster.secrets.cluster_vars:
    cluster_root: "{{ cluster_root }}"
  register: cluster

- name: Show whether OpenTofu infrastructure is enabled
  ansible.builtin.debug:
    var: cluster.infrastructure_enabled
"""

RETURN = r"""
cluster_vars:
  description: The cluster vars with defaults filled in and derived values added; keys that hold secrets, at any depth, are left out.
  returned: success
  type: dict
secret_keys:
  description: Names of the keys that hold secrets (their values are not returned).
  returned: success
  type: list
  elements: str
infrastructure_enabled:
  description: True when C(proxmox_api_url) and C(proxmox_node) are set.
  returned: success
  type: bool
files:
  description: The vars files that were read.
  returned: success
  type: list
  elements: str
findings:
  description: Warnings found while validating (errors fail the task).
  returned: success
  type: list
  elements: dict
"""
