# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""External Secrets manifests: the objects the store needs, built from ``Settings``, and their readiness.

``build_objects`` turns settings into the non-secret manifests, in the order they are applied; only the
ClusterSecretStore depends on the provider (kubernetes, Vault or Infisical), so switching providers leaves every other
object byte-identical. ``operator_objects`` are the Flux HelmRepository and HelmRelease of the operator.
``readiness_problems`` reads the objects back from the cluster and says which are not Ready, and why.
Everything here is pure: settings in, manifests out.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import SecretKeyRef, Settings, SyncItem

ESO_API = "external-secrets.io/v1"
MANAGED_BY = {"app.kubernetes.io/managed-by": "cluster.secrets"}
COMPONENT_LABEL = "cluster.secrets/component"
COMPONENT = "external-secrets"
LABELS = {**MANAGED_BY, COMPONENT_LABEL: COMPONENT}


def object_metadata(name: str, namespace: str | None = None) -> dict[str, Any]:
    """``metadata`` of an object this collection manages: its name, namespace and the managed-by labels."""
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(LABELS)
    return meta


def namespace_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": object_metadata(name)}


def referenced_names(settings: Settings) -> set[str]:
    """Master secrets the ExternalSecrets of ``sync`` read by name (data[].remoteRef.key, dataFrom[].extract.key)."""
    return {d.remote_key for item in settings.sync for d in item.data} | {e for item in settings.sync for e in item.extract}


def readable_names(settings: Settings, master_names: Iterable[str] = ()) -> list[str]:
    """The Secrets the store's service account may get: the master secrets and the names ExternalSecrets ask for."""
    return sorted(set(master_names) | referenced_names(settings))


def rbac_objects(settings: Settings, master_names: Iterable[str] = ()) -> list[dict[str, Any]]:
    """What the kubernetes provider needs: a reader of the secrets namespace that ESO impersonates, least privilege.

    ``get`` only, and only on the named Secrets (``resourceNames``): the master secrets and what the ExternalSecrets
    ask for. ``list``/``watch`` (which cannot be limited by name) only when an ExternalSecret uses ``find``. ESO
    validates the store with a SelfSubjectRulesReview that looks for ``get`` on secrets, so the store stays Valid.
    An empty ``resourceNames`` would mean every Secret: with no name at all, no ``get`` rule is emitted.
    """
    name, ns = settings.service_account, settings.namespace
    rules: list[dict[str, Any]] = []
    names = readable_names(settings, master_names)
    if names:
        rules.append({"apiGroups": [""], "resources": ["secrets"], "resourceNames": names, "verbs": ["get"]})
    if any(item.find for item in settings.sync):
        rules.append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]})
    rules.append({"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectrulesreviews"], "verbs": ["create"]})
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": object_metadata(name, ns)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": object_metadata(name, ns), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": object_metadata(name, ns),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
    ]


def secret_key_selector(ref: SecretKeyRef) -> dict[str, str]:
    """An ESO SecretKeySelector: which key of which Secret holds a credential (the credential stays there)."""
    return {"name": ref.name, "key": ref.key, "namespace": ref.namespace}


def kubernetes_provider(settings: Settings) -> dict[str, Any]:
    """Reads the master secrets in the secrets namespace as the store's service account (see ``rbac_objects``)."""
    return {"kubernetes": {
        "remoteNamespace": settings.namespace,
        "server": {"caProvider": {"type": "ConfigMap", "name": "kube-root-ca.crt", "key": "ca.crt",
                                  "namespace": settings.namespace}},
        "auth": {"serviceAccount": {"name": settings.service_account, "namespace": settings.namespace}},
    }}


def vault_provider(settings: Settings) -> dict[str, Any]:
    """Reads a KV engine, logging in with Kubernetes auth as ESO's service account."""
    vault = settings.vault
    return {"vault": {
        "server": vault.server, "path": vault.path, "version": vault.version,
        "auth": {"kubernetes": {
            "mountPath": vault.mount_path, "role": vault.role,
            "serviceAccountRef": {"name": vault.service_account, "namespace": vault.service_account_namespace,
                                  "audiences": list(vault.audiences)},
        }},
    }}


def infisical_provider(settings: Settings) -> dict[str, Any]:
    """Reads one folder of one environment of an Infisical project, logging in with universal auth; the client id and
    secret stay in the Kubernetes Secret the selectors name."""
    infisical = settings.infisical
    return {"infisical": {
        "hostAPI": infisical.host_api,
        "auth": {"universalAuthCredentials": {"clientId": secret_key_selector(infisical.client_id),
                                              "clientSecret": secret_key_selector(infisical.client_secret)}},
        "secretsScope": {"projectSlug": infisical.project_slug, "environmentSlug": infisical.environment_slug,
                         "secretsPath": infisical.path},
    }}


PROVIDER_SPECS = {"infisical": infisical_provider, "kubernetes": kubernetes_provider, "vault": vault_provider}


def store_object(settings: Settings) -> dict[str, Any]:
    """The ClusterSecretStore: the only object that depends on the provider."""
    provider = PROVIDER_SPECS[settings.provider](settings)
    return {"apiVersion": ESO_API, "kind": "ClusterSecretStore", "metadata": object_metadata(settings.store_name),
            "spec": {"provider": provider, "conditions": [{"namespaces": store_namespaces(settings)}]}}


def store_namespaces(settings: Settings) -> list[str]:
    """The namespaces whose ExternalSecrets may use the store (``spec.conditions``): those of ``sync`` and
    ``store_namespaces``. Without conditions any namespace could read every master secret; with neither, only the
    secrets namespace itself is listed, so no other namespace can."""
    namespaces = {item.namespace for item in settings.sync} | set(settings.store_namespaces)
    return sorted(namespaces or {settings.namespace})


def external_secret_object(item: SyncItem, store_name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "refreshInterval": item.refresh_interval,
        "secretStoreRef": {"kind": "ClusterSecretStore", "name": store_name},
        "target": {"name": item.target, "creationPolicy": "Owner"},
    }
    if item.data:
        spec["data"] = []
        for data in item.data:
            ref: dict[str, Any] = {"key": data.remote_key}
            if data.property is not None:
                ref["property"] = data.property
            spec["data"].append({"secretKey": data.key, "remoteRef": ref})
    if item.extract or item.find:
        spec["dataFrom"] = [{"extract": {"key": key}} for key in item.extract] \
            + [{"find": {"name": {"regexp": regexp}}} for regexp in item.find]
    return {"apiVersion": ESO_API, "kind": "ExternalSecret", "metadata": object_metadata(item.name, item.namespace), "spec": spec}


def operator_objects(settings: Settings) -> list[dict[str, Any]]:
    """Flux HelmRepository and HelmRelease for the external-secrets chart (GitOps mode)."""
    ns = settings.operator_namespace
    release = {
        "interval": "1h",
        "chart": {"spec": {"chart": "external-secrets", "version": settings.chart_version,
                           "sourceRef": {"kind": "HelmRepository", "name": "external-secrets", "namespace": ns}}},
        "install": {"crds": "CreateReplace", "remediation": {"retries": 3}},
        "upgrade": {"crds": "CreateReplace", "remediation": {"retries": 3}},
        "values": {"installCRDs": True},
    }
    return [
        namespace_object(ns),
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository", "metadata": object_metadata("external-secrets", ns),
         "spec": {"interval": "1h", "url": settings.chart_repo_url}},
        {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": object_metadata("external-secrets", ns),
         "spec": release},
    ]


def build_objects(settings: Settings, master_names: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every non-secret object the store needs, in apply order (namespaces first, ExternalSecrets last).

    ``master_names`` are the names of the master secrets: the Role lets the store read those (and what the
    ExternalSecrets ask for) and nothing else.
    """
    objects = [namespace_object(settings.namespace)]
    if settings.create_target_namespaces:
        for ns in sorted({item.namespace for item in settings.sync} - {settings.namespace}):
            objects.append(namespace_object(ns))
    objects += rbac_objects(settings, master_names)
    objects.append(store_object(settings))
    objects += [external_secret_object(item, settings.store_name) for item in settings.sync]
    return objects


def object_id(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('namespace') + '/' if meta.get('namespace') else ''}{meta.get('name')}"


def readiness_problems(resources: list[Mapping[str, Any]], expected: list[str]) -> list[str]:
    """One line per expected object that is missing or not Ready, with the condition's reason and message."""
    by_id = {object_id(r): r for r in resources}
    problems = []
    for wanted in expected:
        found = by_id.get(wanted)
        if found is None:
            problems.append(f"{wanted}: not found")
            continue
        conditions = (found.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Ready"), None)
        if ready is None:
            problems.append(f"{wanted}: no Ready condition yet (is the External Secrets Operator running?)")
        elif str(ready.get("status")) != "True":
            problems.append(f"{wanted}: Ready={ready.get('status')} reason={ready.get('reason') or '?'}: "
                            f"{ready.get('message') or '(no message)'}")
    return problems
