#!/usr/bin/python
# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: eso_master_secrets
short_description: Decrypt the SOPS-encrypted master secrets in memory, as Secret manifests
version_added: 0.1.0
description:
  - Decrypts every SOPS-encrypted YAML file matched by O(master_glob) (relative to O(cluster_root)) through sops'
    pipes, nothing written to disk, and returns its Kubernetes Secrets placed in O(namespace).
  - The result holds secret values, so it is always marked C(no_log) and censored in every output. Hand it only to
    tasks that are C(no_log) too, such as C(kubernetes.core.k8s) with server-side apply and C(hidden_fields).
  - Files under O(gitops_path) are skipped, so the GitOps output never feeds itself.
  - Errors name the file and document and never contain a value.
  - Runs on the controller.
extends_documentation_fragment:
  - cluster.secrets.repository
  - cluster.secrets.cluster_vars
  - cluster.secrets.sops
  - cluster.secrets.attributes
  - cluster.secrets.attributes.read_only
options:
  namespace:
    description: Namespace the Secrets are put in; a document naming another namespace is an error.
    type: str
    default: secrets
  master_glob:
    description: Glob of the SOPS files, relative to O(cluster_root).
    type: str
    default: kubernetes/secrets/*.sops.yaml
  gitops_path:
    description: Folder skipped by the glob (the GitOps output of the role).
    type: str
    default: kubernetes/apps/external-secrets
attributes:
  action_group:
    membership:
      - cluster.secrets.cluster_secrets
      - cluster.secrets.cluster_vars
      - cluster.secrets.sops
author:
  - cluster.secrets contributors (@cluster-secrets)
"""

EXAMPLES = r"""
- name: Decrypt the master secrets
  cluster.secrets.eso_master_secrets:
    cluster_root: /srv/home-ops
  register: masters
  no_log: true
"""

RETURN = r"""
names:
  description: Names of the Secrets.
  returned: success
  type: list
  elements: str
secrets:
  description: The Secret manifests with their decrypted C(data) and C(stringData).
  returned: success
  type: list
  elements: dict
msg:
  description: One-line summary.
  returned: always
  type: str
"""
