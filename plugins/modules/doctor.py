#!/usr/bin/python
# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: doctor
short_description: Diagnose a cluster repository's secrets, keys and tools
version_added: 0.2.0
description:
  - Checks a cluster repository and returns one finding per check, each with a severity (V(ok), V(info),
    V(warning), V(error)), the file or tool it concerns, what was found and how to fix it.
  - The age key is found (and where), and its public key is among each file's recipients and in the C(.sops.yaml) rules.
  - Every C(*.sops.*) file (outside template folders) is really encrypted (a plaintext secret is an error, worse when
    git tracks it), decrypts, matches a creation rule and has the recipients of that rule.
  - Every credential (key path of a value sops encrypted) unchanged for more than O(max_age_days) is a warning, oldest
    first, naming the file and the key path, with the day it last changed. The day comes from C(.credential-dates.yaml),
    which configure keeps, checked against the value doctor decrypts (a keyed fingerprint, never the value); a value
    changed since configure recorded it counts as new; a value not recorded yet falls back to its file's
    C(sops.lastmodified), which a data-key rotation resets (the finding says so). RV(credentials) lists them.
  - C(.credential-dates.yaml) missing while secret files exist (a note to run configure), unreadable (a warning), or
    not committed to git (a warning).
  - Files whose data key (C(sops.lastmodified)) is older than O(max_age_days) are reported for data-key rotation;
    that dates the file's encryption, not the age of its credentials.
  - C(.gitignore) covers C(cluster.yaml), C(age.key) and C(*.tfvars); git tracks neither C(cluster.yaml) nor C(age.key).
    For a pattern such as C(*.tfvars) the files that exist decide (or the folders holding C(*.tf) code), so a
    C(.gitignore) in a subfolder counts.
  - No tracked file holds an age private key under any name (C(keys.txt), ...), and no tracked file not named
    C(*.sops.*) holds a plaintext Kubernetes C(Secret) with values. Tracked files up to 1 MiB, text only.
  - The git history holds no age private key (a key untracked with C(git rm --cached) is still there); the newest
    200 commits that added or removed one are searched, within 60 seconds, and the finding says whether the key is
    still in use.
  - Temp files an interrupted run left next to a file (C(.<name>.XXXXXXXX.tmp), C(.<name>.cluster-secrets-XXXX.tmp))
    are reported as stale temp files to delete, not as secrets.
  - C(cluster.yaml), C(nodes.yaml) and C(cluster.toml) are readable by their owner only (a warning with the
    C(chmod 600) fix otherwise).
  - sops, age (or pyrage) and OpenTofu or terraform are found, with their versions.
  - With O(recovery_key_file), a recovery test decrypts one file with only that backed-up key.
  - The module never fails because of findings; the doctor role fails when there are errors. Writes nothing.
    Decrypted content is only held in memory, to prove it decrypts and to compare its values with the recorded
    fingerprints, and each file is decrypted once. Runs on the controller.
extends_documentation_fragment:
  - cluster.secrets.repository
  - cluster.secrets.sops
  - cluster.secrets.attributes
  - cluster.secrets.attributes.read_only
options:
  secret_pattern:
    description: Regular expression on relative paths that marks secret files.
    type: str
    default: '\.sops\.[^/]+$'
  max_age_days:
    description:
      - Report credentials unchanged for more than this many days, and files whose data key was last rotated more
        than this many days ago.
    type: int
    default: 90
  recovery_key_file:
    description: A backed-up age key file; one file is decrypted with only this key.
    type: path
  gitignore_errors:
    description: Paths or patterns that C(.gitignore) must cover; a missing one is an error.
    type: list
    elements: str
    default: [cluster.yaml, age.key]
  gitignore_warnings:
    description: Paths or patterns that C(.gitignore) should cover; a missing one is a warning.
    type: list
    elements: str
    default: ["*.tfvars"]
attributes:
  action_group:
    membership:
      - cluster.secrets.cluster_secrets
      - cluster.secrets.sops
author:
  - cluster.secrets contributors (@cluster-secrets)
"""

EXAMPLES = r"""
- name: Diagnose the repository
  cluster.secrets.doctor:
    cluster_root: /srv/home-ops
  register: doctor

- name: Recovery test with the key from the password manager
  cluster.secrets.doctor:
    cluster_root: /srv/home-ops
    recovery_key_file: /media/usb/age-backup.key
"""

RETURN = r"""
findings:
  description: Every finding, with C(severity), C(check), C(subject), C(message) and C(fix).
  returned: success
  type: list
  elements: dict
credentials:
  description:
    - The credentials unchanged for more than O(max_age_days), oldest first; names and days only, never a value.
  returned: success
  type: list
  elements: dict
  contains:
    file:
      description: The secret file, relative to O(cluster_root).
      type: str
    key:
      description: The key path of the value in the file, such as C(stringData.TOKEN).
      type: str
    changed:
      description: The day (UTC, C(YYYY-MM-DD)) the value last changed, or is known to be unchanged since.
      type: str
    days:
      description: Days since RV(credentials[].changed).
      type: int
    source:
      description:
        - V(recorded) (from C(.credential-dates.yaml), the value as recorded), V(changed since recorded) (the value
          differs from the one configure recorded; counted as new), or V(sops lastmodified) (not recorded yet; the
          file's last sops write, which a data-key rotation resets).
      type: str
lines:
  description: The findings as an aligned table, errors first, each problem followed by its fix.
  returned: success
  type: list
  elements: str
errors:
  description: Number of error findings.
  returned: success
  type: int
warnings_count:
  description: Number of warning findings.
  returned: success
  type: int
msg:
  description: One-line summary.
  returned: always
  type: str
"""
