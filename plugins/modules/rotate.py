#!/usr/bin/python
# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rotate
short_description: Rotate the age key of a cluster repository, or the data keys of its SOPS files
version_added: 0.2.0
description:
  - With O(mode=age_key), generates a new age key and re-encrypts every SOPS file in the repository for it.
    The key file is first copied to a 0600 backup; the new identity is added to the key file next to the old one;
    the new public key is added to every C(.sops.yaml) rule that lists an old one; every file gets
    C(sops updatekeys) and C(sops rotate) (a new data key) and must then decrypt with the new key alone.
    Only then are the old public keys removed from C(.sops.yaml) and from every file (with another C(sops rotate),
    so the final data keys were never encrypted for the old key), and the key file keeps only the new key.
  - Every file is processed on a ciphertext copy beside it that replaces the file only after it verifies, so a
    failure or a killed run leaves each file decryptable by the old key, the new key or both. A journal (public keys
    and file names only) in O(backup_dir) lets a rerun finish the rotation.
  - With O(mode=data_keys), runs C(sops rotate) on every file (same recipients), for a periodic rotation policy.
    This renews the encryption, not the credentials; no value changes, C(sops.lastmodified) does, and the dates in
    C(.credential-dates.yaml) (when each value last changed, which doctor reports) stay as they are.
  - Plaintext never touches the disk. sops runs with exactly the keys given, never the ones in C(~/.config).
  - C(sops edit FILE) remains the way to change one credential by hand.
  - A file that holds the age private key itself (the Flux C(sops-age) Secret) is re-encrypted but still holds the
    old key; the result names it in RV(stale_key_files) and says to rerun the configure playbook, which re-renders it
    with the new key.
  - The new key comes from the same generator as the init playbook, the Python package pyrage or else C(age-keygen).
  - Runs on the controller.
extends_documentation_fragment:
  - cluster.secrets.repository
  - cluster.secrets.sops
  - cluster.secrets.attributes
options:
  age_key_file:
    description:
      - The age key file to rotate (it receives the new key). Defaults to the file where the repository's key was found.
  mode:
    description:
      - V(age_key) replaces the age key; V(data_keys) only gives every file a new data key.
    type: str
    choices: [age_key, data_keys]
    default: age_key
  secret_pattern:
    description: Regular expression on relative paths that marks secret files.
    type: str
    default: '\.sops\.[^/]+$'
  backup_dir:
    description:
      - Folder for the backup of the old key and the rotation journal.
      - Defaults to C(<cluster_root>/.secrets-backup), created 0700 with a C(.gitignore) that keeps it out of git.
    type: path
attributes:
  check_mode:
    support: full
    details: Reports the files and keys it would rotate; generates no key and writes nothing.
  diff_mode:
    support: none
  action_group:
    membership:
      - cluster.secrets.cluster_secrets
      - cluster.secrets.sops
author:
  - cluster.secrets contributors (@cluster-secrets)
"""

EXAMPLES = r"""
- name: Replace the age key and re-encrypt every file
  cluster.secrets.rotate:
    cluster_root: /srv/home-ops

- name: New data keys for every file (90-day policy)
  cluster.secrets.rotate:
    cluster_root: /srv/home-ops
    mode: data_keys
"""

RETURN = r"""
files:
  description: Files rotated (or that would be in check mode), relative to O(cluster_root).
  returned: success
  type: list
  elements: str
files_skipped:
  description:
    - Files left alone, with the reason (not encrypted for your key, deleted meanwhile).
    - Called C(skipped) in earlier versions, a name Ansible reserves (it marked the task as skipped).
  returned: success
  type: list
  elements: str
new_recipient:
  description: The new age public key (O(mode=age_key)).
  returned: success
  type: str
removed_recipients:
  description: The old age public keys removed from C(.sops.yaml) and every file.
  returned: success
  type: list
  elements: str
key_file:
  description: The age key file that now holds the new key.
  returned: success
  type: str
key_backup:
  description: The 0600 backup of the key file as it was before the rotation.
  returned: success
  type: str
resumed:
  description: Whether an interrupted rotation was continued.
  returned: success
  type: bool
stale_key_files:
  description:
    - Files whose decrypted content still holds the old age private key, such as the Flux C(sops-age) Secret
      (C(bootstrap/sops-age.sops.yaml)). The rotation re-encrypts them but cannot rewrite their content; rerun the
      configure playbook to re-render them with the new key, then apply the new Secret to the cluster.
  returned: success
  type: list
  elements: str
credential_dates_updated:
  description:
    - Whether C(.credential-dates.yaml) was rewritten to follow the rotation, every date kept. A data-key rotation
      only updates the content hash of each file whose old bytes were the recorded ones; an age-key rotation
      fingerprints every value with the new key (the old fingerprints compared with the old key first). Commit it
      with the rotated files. Without that file (configure never ran) nothing is written.
  returned: success
  type: bool
lines:
  description: A readable report.
  returned: success
  type: list
  elements: str
msg:
  description: The report as one text.
  returned: always
  type: str
"""
