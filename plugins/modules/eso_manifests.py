#!/usr/bin/python
# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: eso_manifests
short_description: Build the External Secrets Operator manifests, and write them for GitOps
version_added: 0.1.0
description:
  - Resolves the settings (options over the C(external_secrets) mapping of cluster.yaml over defaults) and returns the
    non-secret objects in apply order, namespaces first; API C(external-secrets.io/v1).
  - Only the ClusterSecretStore depends on O(provider); every other object, and every ExternalSecret, stays the same
    when the provider changes.
  - With O(write) in mode C(gitops), writes the GitOps tree under O(gitops_path) (Flux Kustomizations, operator
    HelmRepository and HelmRelease, store objects, ExternalSecrets, kustomizations) and the master secrets, decrypted
    in memory and re-encrypted with the repository's C(.sops.yaml). A file is written only when its bytes change, an
    encrypted one only when its decrypted content or its recipients change.
  - Least privilege. The Role lets the store's service account C(get) only the named Secrets (C(resourceNames)),
    the master secrets (decrypted in memory with O(write) to learn their names; values dropped) and the names the
    ExternalSecrets ask for; C(list) and C(watch) only when an ExternalSecret uses C(find). The ClusterSecretStore's
    C(spec.conditions) allow only the namespaces of the ExternalSecrets and O(store_namespaces).
  - In mode C(gitops), stops without writing anything when O(gitops_path) holds a file this module would write but
    did not (no C(# Managed by cluster.secrets) header); the repository's own ESO app lives there, and two writers
    would undo each other on every run. Give the role a folder of its own.
  - Runs on the controller. Use the role C(cluster.secrets.external_secrets) rather than this module directly.
extends_documentation_fragment:
  - cluster.secrets.repository
  - cluster.secrets.cluster_vars
  - cluster.secrets.sops
  - cluster.secrets.attributes
options:
  use_cluster_vars:
    description: Read the C(external_secrets) mapping of cluster.yaml (when the file exists) for options left unset.
    type: bool
    default: true
  only_when_enabled:
    description: Do nothing unless the resolved O(enabled) is true.
    type: bool
    default: false
  write:
    description: In mode C(gitops), write the files (check mode only reports them).
    type: bool
    default: false
  prune:
    description: Delete files under C(store/master-secrets) and C(store/externalsecrets) that are no longer generated.
    type: bool
    default: false
  enabled:
    description: Whether External Secrets are enabled (cluster.yaml C(external_secrets.enabled)).
    type: bool
  mode:
    description: C(apply) or C(gitops). Unset means cluster.yaml's, else C(gitops).
    type: str
  provider:
    description:
      - Provider of the ClusterSecretStore, C(kubernetes), C(vault) or C(infisical). Unset means cluster.yaml's, else
        C(kubernetes).
    type: str
  namespace:
    description: Namespace of the master secrets. Unset means C(secrets).
    type: str
  store_name:
    description: Name of the ClusterSecretStore. Unset means C(main-store).
    type: str
  service_account:
    description: Service account of the kubernetes provider. Unset means C(external-secrets-store).
    type: str
  master_glob:
    description: Glob of the SOPS files holding the master Secrets. Unset means C(kubernetes/secrets/*.sops.yaml).
    type: str
  install_operator:
    description: Add the Flux HelmRepository and HelmRelease of the operator. Unset means true.
    type: bool
  operator_namespace:
    description: Namespace of the operator. Unset means C(external-secrets).
    type: str
  chart_version:
    description: Version of the external-secrets chart. Unset means C(2.9.0).
    type: str
  chart_repo_url:
    description: Helm repository of the chart. Unset means C(https://charts.external-secrets.io).
    type: str
  refresh_interval:
    description: Default refreshInterval of the ExternalSecrets. Unset means C(1h).
    type: str
  sync:
    description: The ExternalSecrets, as the role's C(external_secrets_sync).
    type: list
    elements: dict
  vault:
    description: Settings of the vault provider, as the role's C(external_secrets_vault).
    type: dict
  infisical:
    description:
      - Settings of the infisical provider, as the role's C(external_secrets_infisical); C(project_slug),
        C(environment_slug), C(path) (default C(/)), C(host_api) (default C(https://app.infisical.com/api)) and
        C(universal_auth).
      - C(universal_auth) names the Kubernetes Secret (C(name), C(namespace)) that holds the machine identity's client
        id and client secret under the keys C(clientId) and C(clientSecret); the values stay in it and are never read.
    type: dict
  gitops_path:
    description: Output folder of the GitOps files. Unset means C(kubernetes/apps/external-secrets).
    type: str
  flux_source_name:
    description: The Flux GitRepository of the generated Kustomizations. Unset means C(flux-system).
    type: str
  flux_namespace:
    description: Namespace of the generated Flux Kustomizations. Unset means C(flux-system).
    type: str
  flux_decryption_secret:
    description: Secret with the age key for Flux's SOPS decryption. Unset means C(sops-age).
    type: str
  create_target_namespaces:
    description: Also create the namespaces of the ExternalSecrets. Unset means false.
    type: bool
  store_namespaces:
    description:
      - Namespaces whose ExternalSecrets may use the ClusterSecretStore besides those of O(sync); the store's
        C(spec.conditions) lists exactly these. With none at all, only the secrets namespace is listed.
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    details: Computes what would change and writes nothing.
  diff_mode:
    support: full
    details: Plain files show a text diff; encrypted files show only the names of the keys that changed.
  action_group:
    membership:
      - cluster.secrets.cluster_secrets
      - cluster.secrets.cluster_vars
      - cluster.secrets.sops
author:
  - cluster.secrets contributors (@cluster-secrets)
"""

EXAMPLES = r"""
- name: Build the objects for the infisical provider (only the ClusterSecretStore differs)
  cluster.secrets.eso_manifests:
    cluster_root: /srv/home-ops
    provider: infisical
    infisical:
      project_slug: home-ops
      environment_slug: prod
      universal_auth:
        name: infisical-universal-auth

- name: Write the GitOps tree for the kubernetes provider
  cluster.secrets.eso_manifests:
    cluster_root: /srv/home-ops
    mode: gitops
    write: true
    sync:
      - name: db-credentials
        namespace: talent-mesh
        data:
          - key: DATABASE_URL
            remote_key: postgres-credentials
            property: url
"""

RETURN = r"""
enabled:
  description: The resolved O(enabled).
  returned: always
  type: bool
settings:
  description: The resolved settings (mode, provider, namespace, store name, ...).
  returned: success
  type: dict
objects:
  description: The non-secret objects in apply order.
  returned: success
  type: list
  elements: dict
object_ids:
  description: C(Kind/name) or C(Kind/namespace/name) of every object.
  returned: success
  type: list
  elements: str
store_id:
  description: Identifier of the ClusterSecretStore.
  returned: success
  type: str
external_secret_ids:
  description: Identifiers of the ExternalSecrets.
  returned: success
  type: list
  elements: str
object_namespaces:
  description: Namespaces the namespaced objects live in.
  returned: success
  type: list
  elements: str
namespaces:
  description: Namespaces the role creates.
  returned: success
  type: list
  elements: str
readable_secrets:
  description:
    - The Secrets the store's service account may C(get) (the Role's C(resourceNames)), the master secrets (read
      with O(write)) and the names the ExternalSecrets ask for.
  returned: success
  type: list
  elements: str
store_namespaces:
  description: The namespaces the ClusterSecretStore's C(spec.conditions) allow.
  returned: success
  type: list
  elements: str
master_secrets:
  description: Names of the master secrets written (gitops).
  returned: when written
  type: list
  elements: str
created:
  description: Files created (gitops).
  returned: when written
  type: list
  elements: str
updated:
  description: Files rewritten (gitops).
  returned: when written
  type: list
  elements: str
unchanged:
  description: Number of files left as they were (gitops).
  returned: when written
  type: int
removed:
  description: Files deleted by O(prune) (gitops).
  returned: when written
  type: list
  elements: str
stale:
  description: Files no longer generated and left in place because O(prune) is off.
  returned: when written
  type: list
  elements: str
msg:
  description: One-line summary.
  returned: always
  type: str
"""
