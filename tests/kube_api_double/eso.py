# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE: a tiny stand-in for the External Secrets Operator's controllers. Never used by the product.

It reconciles what the role relies on, with ESO's condition types and reasons:

- ClusterSecretStore, kubernetes provider: the remote namespace, the service account and
  a Role bound to it that allows get on secrets (any resourceNames: ESO's SelfSubjectRulesReview
  check only looks for the verb) and create on selfsubjectrulesreviews must exist; the CA
  ConfigMap must be referenced as ESO expects. Ready=True/Valid, or
  Ready=False/InvalidProviderConfig naming what is missing. Reading a Secret later needs get on
  that name (resourceNames empty or listing it), as the API server would enforce.
- ClusterSecretStore ``spec.conditions``: an ExternalSecret in a namespace no condition allows
  (``namespaces``, ``namespaceRegexes``, ``namespaceSelector.matchLabels``) is refused with ESO's
  message "using cluster store ... is not allowed from namespace ...: denied by spec.condition".
- ClusterSecretStore, vault provider: ``vault_kv`` (a dict) stands in for a KV v2 engine;
  server, path, version v2 and kubernetes auth (mountPath, role, serviceAccountRef) are required.
- ExternalSecret: resolves its store, reads ``data[].remoteRef`` and ``dataFrom[].extract``,
  writes the target Secret (owned by the ExternalSecret), and sets Ready=True/SecretSynced,
  or Ready=False/SecretSyncedError with the reason in the message.
"""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.kube_api_double.api import KubeApiDouble

ESO = "external-secrets.io/v1"
RBAC = "rbac.authorization.k8s.io/v1"


class SyncError(Exception):
    pass


def _condition(ready: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": "Ready", "status": "True" if ready else "False", "reason": reason, "message": message}


def _allows(rules: list[dict[str, Any]], group: str, resource: str, verbs: set[str], name: str | None = None) -> bool:
    """RBAC as the API server evaluates it; ``name`` given: only rules whose resourceNames are empty or list it."""
    granted: set[str] = set()
    for rule in rules:
        if group in rule.get("apiGroups", []) and (resource in rule.get("resources", []) or "*" in rule.get("resources", [])):
            if name is not None and rule.get("resourceNames") and name not in rule["resourceNames"]:
                continue
            granted |= set(rule.get("verbs", []))
    return "*" in granted or verbs <= granted


class EsoReconciler:
    def __init__(self, api: KubeApiDouble) -> None:
        self.api = api
        self.vault_kv: dict[str, dict[str, str]] = {}

    def reconcile(self) -> None:
        with self.api.lock:
            css_type = self.api.kind_type(ESO, "ClusterSecretStore")
            es_type = self.api.kind_type(ESO, "ExternalSecret")
            for store in self.api.list(css_type):
                ready, reason, message = self._validate_store(store)
                self.api.write_status(store, {"conditions": [_condition(ready, reason, message)],
                                              "capabilities": "ReadWrite" if "kubernetes" in store["spec"].get("provider", {}) else "ReadOnly"})
            for external in self.api.list(es_type):
                self._sync(external)

    # ------------------------------------------------------------------ stores

    def _validate_store(self, store: dict[str, Any]) -> tuple[bool, str, str]:
        provider = store.get("spec", {}).get("provider", {})
        try:
            if "kubernetes" in provider:
                self._validate_kubernetes(provider["kubernetes"])
            elif "vault" in provider:
                self._validate_vault(provider["vault"])
            else:
                raise SyncError(f"no supported provider in {sorted(provider)}")
        except SyncError as exc:
            return False, "InvalidProviderConfig", f"unable to validate store: {exc}"
        return True, "Valid", "store validated"

    def _validate_kubernetes(self, spec: dict[str, Any]) -> None:
        remote = spec.get("remoteNamespace", "default")
        ca = spec.get("server", {}).get("caProvider", {})
        if ca.get("type") != "ConfigMap" or ca.get("key") != "ca.crt":
            raise SyncError("server.caProvider must name a ConfigMap and key ca.crt")
        if self.api.find("v1", "ConfigMap", ca.get("namespace", ""), ca.get("name", "")) is None:
            raise SyncError(f'ConfigMap "{ca.get("name")}" not found in namespace "{ca.get("namespace")}"')
        account = spec.get("auth", {}).get("serviceAccount", {})
        sa_name, sa_namespace = account.get("name"), account.get("namespace")
        if not sa_name or not sa_namespace:
            raise SyncError("auth.serviceAccount needs name and namespace in a ClusterSecretStore")
        if self.api.find("v1", "ServiceAccount", sa_namespace, sa_name) is None:
            raise SyncError(f'serviceaccounts "{sa_name}" not found in namespace "{sa_namespace}"')
        rules = self._store_rules(spec)
        if not _allows(rules, "authorization.k8s.io", "selfsubjectrulesreviews", {"create"}):
            raise SyncError(f"client is not allowed to create selfsubjectrulesreviews in namespace {remote!r}")
        if not _allows(rules, "", "secrets", {"get"}):
            raise SyncError(f"client is not allowed to get secrets in namespace {remote!r}")

    def _store_rules(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """The RBAC rules of the store's service account in the remote namespace."""
        remote = spec.get("remoteNamespace", "default")
        account = spec.get("auth", {}).get("serviceAccount", {})
        sa_name, sa_namespace = account.get("name"), account.get("namespace")
        rules: list[dict[str, Any]] = []
        for binding in self.api.list(self.api.kind_type(RBAC, "RoleBinding"), remote):
            subjects = binding.get("subjects", [])
            if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name and s.get("namespace") == sa_namespace
                       for s in subjects):
                continue
            ref = binding.get("roleRef", {})
            role = self.api.find(RBAC, ref.get("kind", "Role"), remote if ref.get("kind") == "Role" else "", ref.get("name", ""))
            rules += (role or {}).get("rules", [])
        return rules

    def _validate_vault(self, spec: dict[str, Any]) -> None:
        if not spec.get("server") or not spec.get("path") or spec.get("version") != "v2":
            raise SyncError("vault needs server, path and version v2")
        auth = spec.get("auth", {}).get("kubernetes", {})
        if not auth.get("mountPath") or not auth.get("role") or not auth.get("serviceAccountRef", {}).get("name"):
            raise SyncError("vault kubernetes auth needs mountPath, role and serviceAccountRef.name")

    # ------------------------------------------------------------------ external secrets

    def _store_for(self, external: dict[str, Any]) -> dict[str, Any]:
        ref = external["spec"].get("secretStoreRef", {})
        kind = ref.get("kind", "SecretStore")
        namespace = "" if kind == "ClusterSecretStore" else external["metadata"]["namespace"]
        store = self.api.find(ESO, kind, namespace, ref.get("name", ""))
        if store is None:
            raise SyncError(f'could not get {kind} "{ref.get("name")}"')
        conditions = store.get("status", {}).get("conditions", [])
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            raise SyncError(f'{kind} "{ref.get("name")}" is not ready')
        namespace = external["metadata"]["namespace"]
        if kind == "ClusterSecretStore" and not self._store_allows(store, namespace):
            raise SyncError(f'using cluster store "{ref.get("name")}" is not allowed from namespace "{namespace}": '
                            "denied by spec.condition")
        return store

    def _store_allows(self, store: dict[str, Any], namespace: str) -> bool:
        conditions = store.get("spec", {}).get("conditions") or []
        if not conditions:
            return True
        labels = ((self.api.find("v1", "Namespace", "", namespace) or {}).get("metadata") or {}).get("labels") or {}
        for condition in conditions:
            if namespace in (condition.get("namespaces") or []):
                return True
            if any(re.fullmatch(pattern, namespace) for pattern in condition.get("namespaceRegexes") or []):
                return True
            selector = (condition.get("namespaceSelector") or {}).get("matchLabels")
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                return True
        return False

    def _remote_values(self, store: dict[str, Any], key: str) -> dict[str, str]:
        provider = store["spec"]["provider"]
        if "vault" in provider:
            if key not in self.vault_kv:
                raise SyncError(f"cannot read secret data from Vault: secret not found: {key}")
            return dict(self.vault_kv[key])
        remote = provider["kubernetes"].get("remoteNamespace", "default")
        if not _allows(self._store_rules(provider["kubernetes"]), "", "secrets", {"get"}, key):
            account = provider["kubernetes"].get("auth", {}).get("serviceAccount", {})
            raise SyncError(f'secrets "{key}" is forbidden: User "system:serviceaccount:{account.get("namespace")}:'
                            f'{account.get("name")}" cannot get resource "secrets" in API group "" in the namespace "{remote}"')
        secret = self.api.find("v1", "Secret", remote, key)
        if secret is None:
            raise SyncError(f'Secret "{key}" not found')
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def _sync(self, external: dict[str, Any]) -> None:
        spec = external.get("spec", {})
        meta = external["metadata"]
        target_name = spec.get("target", {}).get("name") or meta["name"]
        try:
            store = self._store_for(external)
            values: dict[str, str] = {}
            for index, item in enumerate(spec.get("dataFrom") or []):
                key = item.get("extract", {}).get("key", "")
                try:
                    values.update(self._remote_values(store, key))
                except SyncError as exc:
                    raise SyncError(f"error processing spec.dataFrom[{index}].extract, err: {exc}") from None
            for index, item in enumerate(spec.get("data") or []):
                ref = item.get("remoteRef", {})
                try:
                    remote = self._remote_values(store, ref.get("key", ""))
                except SyncError as exc:
                    raise SyncError(f"error processing spec.data[{index}] (key: {ref.get('key')}), err: {exc}") from None
                prop = ref.get("property")
                if prop is None:
                    values[item["secretKey"]] = json.dumps(remote, sort_keys=True)
                elif prop in remote:
                    values[item["secretKey"]] = remote[prop]
                else:
                    raise SyncError(f"error processing spec.data[{index}] (key: {ref.get('key')}), err: "
                                    f"property {prop!r} does not exist in key {ref.get('key')!r}")
        except SyncError as exc:
            status = dict(external.get("status", {}))
            status["conditions"] = [_condition(False, "SecretSyncedError", f"could not get secret data from provider: {exc}")]
            self.api.write_status(external, status)
            return
        data = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())}
        target = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
            "metadata": {"name": target_name, "namespace": meta["namespace"],
                         "labels": {"reconcile.external-secrets.io/managed": "true"},
                         "ownerReferences": [{"apiVersion": ESO, "kind": "ExternalSecret", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
        }
        secret_type = self.api.type_for("", "secrets")
        self.api.patch(secret_type, target, meta["namespace"], target_name, "application/apply-patch+yaml", "external-secrets")
        self.api.write_status(external, {
            "conditions": [_condition(True, "SecretSynced", "secret synced")],
            "binding": {"name": target_name},
            "syncedResourceVersion": f"{meta.get('generation', 1)}-test-double",
        })
