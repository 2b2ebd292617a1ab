#!/usr/bin/python
# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migrate
short_description: Copy the values of hand-edited SOPS secret files into cluster.yaml
version_added: 0.2.0
description:
  - Decrypts existing secret files (by default C(infrastructure/secrets.sops.yaml)) with sops; the plaintext
    only travels through pipes and stays in memory.
  - Adds their values to C(cluster.yaml) with a ruamel.yaml round trip, so comments, key order, quoting and blank
    lines are kept. New keys go at the end under a comment that names the file they came from.
  - Never migrates empty values or C(CHANGE-ME) placeholders. A key that C(cluster.yaml) already sets to a different
    real value is a conflict; it is kept and reported, unless O(overwrite=true).
  - Writes a backup of C(cluster.yaml) (mode 0600) to O(backup_dir) before changing it, then the new file atomically,
    readable by its owner only.
  - With O(verify), checks (writing nothing) that configure would run with the migrated C(cluster.yaml), and warns
    with the reason when it would still stop.
  - Reports file and key names, never values. Runs on the controller.
extends_documentation_fragment:
  - cluster.secrets.repository
  - cluster.secrets.cluster_vars
  - cluster.secrets.sops
  - cluster.secrets.attributes
options:
  sources:
    description:
      - Secret files to migrate, relative to O(cluster_root), each mapped to a dictionary from key paths in the file to C(cluster.yaml) keys.
      - An empty mapping takes every top-level key of the file under the same name.
      - Nested key paths are dotted, list items indexed, for example C(stringData.CLOUDFLARE_TOKEN) or C(items[0].token).
      - Defaults to C(infrastructure/secrets.sops.yaml) with an empty mapping.
    type: dict
  overwrite:
    description:
      - Replace a value C(cluster.yaml) already has when the secret file holds a different one.
    type: bool
    default: false
  backup_dir:
    description:
      - Folder for the backup of C(cluster.yaml).
      - Defaults to C(<cluster_root>/.secrets-backup), created 0700 with a C(.gitignore) that keeps it out of git.
    type: path
  verify:
    description:
      - Plan a configure run (nothing written) with the migrated C(cluster.yaml) and warn when it would still stop.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Reports what would be added, skipped and in conflict; writes no file, not even the backup.
  diff_mode:
    support: full
    details: Shows the names of the keys added or replaced, never their values.
  action_group:
    membership:
      - cluster.secrets.cluster_secrets
      - cluster.secrets.cluster_vars
      - cluster.secrets.sops
author:
  - cluster.secrets contributors (@cluster-secrets)
"""

EXAMPLES = r"""
- name: Move the hand-edited infrastructure secrets into cluster.yaml
  cluster.secrets.migrate:
    cluster_root: /srv/home-ops

- name: Also take a token from a Kubernetes secret, under another name
  cluster.secrets.migrate:
    cluster_root: /srv/home-ops
    sources:
      infrastructure/secrets.sops.yaml: {}
      kubernetes/apps/network/external/secret.sops.yaml:
        stringData.CLOUDFLARE_TOKEN: cloudflare_token
"""

RETURN = r"""
added:
  description: Keys added to C(cluster.yaml) (or that would be in check mode), each with C(file), C(key), C(cluster_key).
  returned: success
  type: list
  elements: dict
replaced:
  description: Keys whose C(cluster.yaml) value was replaced (only with O(overwrite=true)).
  returned: success
  type: list
  elements: dict
unchanged:
  description: Keys that C(cluster.yaml) already holds with the same value.
  returned: success
  type: list
  elements: dict
not_migrated:
  description:
    - Keys not migrated, with the C(reason) (empty, placeholder, not a single value, file not found).
    - Called C(skipped) in earlier versions, a name Ansible reserves (it marked the task as skipped).
  returned: success
  type: list
  elements: dict
conflicts:
  description: Keys that C(cluster.yaml) sets to a different value; kept as they were.
  returned: success
  type: list
  elements: dict
backup:
  description: Path of the 0600 backup of the previous C(cluster.yaml); null when nothing was written.
  returned: success
  type: str
lines:
  description: A readable report, one line per key.
  returned: success
  type: list
  elements: str
msg:
  description: The report as one text.
  returned: always
  type: str
"""
