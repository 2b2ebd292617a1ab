#!/usr/bin/python
# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet
short_description: Sum up a play over several clusters, and find secret values they share
version_added: 0.3.0
description:
  - Runs once, after a role of this collection has run for every host of the play, where each host is a cluster
    (an environment such as C(prod) or C(staging)) with its own repository and age key. The roles call it; a
    playbook of your own rarely needs to.
  - Returns one summary line per cluster, in inventory order, with its outcome (V(changed), V(ok), V(failed),
    V(not run)), its repository and the first line of what the step said.
  - With O(reuse), decrypts the secret files of every cluster whose step succeeded and reports every secret value
    (a leaf sops encrypted) that two clusters or more share, by cluster, file and key path, never the value. Values
    are compared by an HMAC-SHA256 keyed from the age identities of all the clusters compared, held in memory only.
    Two clusters using one age key are reported too.
  - Collects the over-age credentials doctor returned for each cluster (its C(credentials)) into one table, oldest
    first.
  - Reads each host's facts named by O(repository_fact) (a mapping with C(root), C(age_key_file), C(sops_binary),
    C(secret_pattern)) and O(result_fact) (the registered result of the step). Writes nothing. Runs on the controller.
extends_documentation_fragment:
  - cluster.secrets.attributes
  - cluster.secrets.attributes.read_only
options:
  step:
    description: The name of the step summed up (V(configure), V(doctor), ...), for the first summary line.
    type: str
    required: true
  repository_fact:
    description: The name of the fact in which each host's role keeps the repository it worked on.
    type: str
    required: true
  result_fact:
    description: The name of the fact in which each host's role registered the step's result.
    type: str
    required: true
  reuse:
    description:
      - V(off) compares nothing; V(report) lists the shared values in RV(lines) and RV(shared); V(warn) also warns.
      - The task never fails because values are shared; the doctor role fails the play on them.
    type: str
    choices: ["off", "report", "warn"]
    default: "off"
  reuse_ignore:
    description:
      - Shell-style patterns of key paths (C(stringData.username)) or C(file:key path) whose shared values are
        allowed, such as user names or e-mail addresses kept in secret files.
    type: list
    elements: str
    default: []
  max_age_days:
    description: The credential age policy, named in the credential table's heading.
    type: int
attributes:
  action_group:
    membership: []
author:
  - cluster.secrets contributors (@cluster-secrets)
"""

EXAMPLES = r"""
- name: One line per cluster, and the secret values clusters share
  cluster.secrets.fleet:
    step: configure
    repository_fact: my_repository
    result_fact: my_configure_result
    reuse: warn
  register: fleet
  run_once: true
  delegate_to: localhost
  when: ansible_play_hosts_all | length > 1
"""

RETURN = r"""
lines:
  description: The summary (a line per cluster), then the shared values and the credential table when there are any.
  returned: always
  type: list
  elements: str
clusters:
  description: How many clusters the play had.
  returned: always
  type: int
shared:
  description: The values two clusters or more share, each as the clusters and the locations (cluster, file, key).
  returned: always
  type: list
  elements: dict
"""
