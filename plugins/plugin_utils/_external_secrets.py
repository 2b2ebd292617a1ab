# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""External Secrets Operator wiring: settings, manifests, master secrets and the GitOps tree.

``resolve_settings`` merges the role's options over the ``external_secrets`` mapping of
cluster.yaml. ``build_objects`` turns settings into the non-secret manifests, in the order
they are applied; only the ClusterSecretStore depends on the provider, so switching from
the kubernetes provider to Vault leaves every other object byte-identical.

``load_master_secrets`` decrypts the SOPS files the glob matches, in memory, into Secret
manifests for the secrets namespace. ``plan_gitops`` renders the GitOps tree (Flux
Kustomizations, operator HelmRelease, store, master secrets re-encrypted with the
repository's .sops.yaml) and compares it with what is on disk: an encrypted file is
rewritten only when its decrypted content or its recipients differ. ``apply_gitops``
writes the planned files atomically.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError, AgeKeys, find_age_keys
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import (
    SOPS_CONFIG_NAME,
    SopsTool,
    SopsToolError,
    encrypted_metadata,
    file_recipients,
    find_sops_binary,
    load_sops_config,
    parallel_map,
    rule_for,
    rule_recipients,
)

ESO_API = "external-secrets.io/v1"
MANAGED_BY = {"app.kubernetes.io/managed-by": "cluster.secrets"}
COMPONENT_LABEL = "cluster.secrets/component"
COMPONENT = "external-secrets"
LABELS = {**MANAGED_BY, COMPONENT_LABEL: COMPONENT}
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SECRET_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
HEADER = "# Managed by cluster.secrets (role external_secrets); changes here are overwritten on the next run.\n"
MODES = ("apply", "gitops")
PROVIDERS = ("kubernetes", "vault")


class ExternalSecretsError(Exception):
    """A problem with the ESO settings or the master secrets; messages name files and keys, never values."""


# ---------------------------------------------------------------------------- settings


@dataclass
class SyncData:
    key: str
    remote_key: str
    property: str | None = None


@dataclass
class SyncItem:
    name: str
    namespace: str
    target: str
    refresh_interval: str
    data: list[SyncData] = field(default_factory=list)
    extract: list[str] = field(default_factory=list)
    find: list[str] = field(default_factory=list)  # name regular expressions (dataFrom[].find.name.regexp)


@dataclass
class VaultSettings:
    server: str = ""
    path: str = "secret"
    version: str = "v2"
    mount_path: str = "kubernetes"
    role: str = "external-secrets"
    service_account: str = "external-secrets"
    service_account_namespace: str = "external-secrets"
    audiences: list[str] = field(default_factory=lambda: ["vault"])


@dataclass
class Settings:
    enabled: bool = False
    mode: str = "gitops"
    provider: str = "kubernetes"
    namespace: str = "secrets"
    store_name: str = "main-store"
    service_account: str = "external-secrets-store"
    master_glob: str = "kubernetes/secrets/*.sops.yaml"
    install_operator: bool = True
    operator_namespace: str = "external-secrets"
    chart_version: str = "2.9.0"
    chart_repo_url: str = "https://charts.external-secrets.io"
    refresh_interval: str = "1h"
    sync: list[SyncItem] = field(default_factory=list)
    vault: VaultSettings = field(default_factory=VaultSettings)
    gitops_path: str = "kubernetes/apps/external-secrets"
    flux_source_name: str = "flux-system"
    flux_namespace: str = "flux-system"
    flux_decryption_secret: str = "sops-age"  # noqa: S105 - the name of a Secret, not a password
    create_target_namespaces: bool = False
    # Namespaces allowed to use the ClusterSecretStore besides those of the ExternalSecrets in `sync`.
    store_namespaces: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled, "mode": self.mode, "provider": self.provider, "namespace": self.namespace,
            "store_name": self.store_name, "service_account": self.service_account, "master_glob": self.master_glob,
            "install_operator": self.install_operator, "operator_namespace": self.operator_namespace,
            "chart_version": self.chart_version, "chart_repo_url": self.chart_repo_url, "gitops_path": self.gitops_path,
        }


# cluster.yaml keys (schemas/cluster.schema.json, "external_secrets") -> option names of the role and plugins.
CLUSTER_KEYS = {
    "enabled": "enabled", "mode": "mode", "provider": "provider", "namespace": "namespace", "store_name": "store_name",
    "sops_files": "master_glob", "install_operator": "install_operator", "chart_version": "chart_version",
    "gitops_path": "gitops_path", "sync": "sync", "vault": "vault",
}


def resolve_settings(options: Mapping[str, Any], cluster_section: Mapping[str, Any] | None) -> Settings:
    """Options that are not None win over cluster.yaml's ``external_secrets`` mapping, which wins over defaults."""
    merged: dict[str, Any] = {}
    for cluster_key, option in CLUSTER_KEYS.items():
        if cluster_section and cluster_section.get(cluster_key) is not None:
            merged[option] = cluster_section[cluster_key]
    for option, value in options.items():
        if value is not None:
            merged[option] = value
    problems: list[str] = []
    settings = Settings()
    for name in ("enabled", "install_operator", "create_target_namespaces"):
        if name in merged:
            setattr(settings, name, bool(merged[name]))
    for name in ("mode", "provider", "namespace", "store_name", "service_account", "master_glob", "operator_namespace",
                 "chart_version", "chart_repo_url", "refresh_interval", "gitops_path", "flux_source_name", "flux_namespace",
                 "flux_decryption_secret"):
        if name in merged:
            setattr(settings, name, str(merged[name]))
    if settings.mode not in MODES:
        problems.append(f"mode: {settings.mode!r} is not one of {', '.join(MODES)}")
    if settings.provider not in PROVIDERS:
        problems.append(f"provider: {settings.provider!r} is not one of {', '.join(PROVIDERS)}")
    for name in ("namespace", "store_name", "service_account", "operator_namespace"):
        if not NAME_RE.match(getattr(settings, name)):
            problems.append(f"{name}: {getattr(settings, name)!r} is not a valid Kubernetes name (lowercase letters, digits, '-')")
    if not DURATION_RE.match(settings.refresh_interval):
        problems.append(f"refresh_interval: {settings.refresh_interval!r} is not a duration such as 1h or 15m")
    if Path(settings.gitops_path).is_absolute() or ".." in Path(settings.gitops_path).parts:
        problems.append(f"gitops_path: {settings.gitops_path!r} must be a relative path inside the repository")
    settings.vault = _vault_settings(merged.get("vault") or {}, settings, problems)
    settings.sync = _sync_items(merged.get("sync") or [], settings.refresh_interval, problems)
    raw_namespaces = merged.get("store_namespaces") or []
    if not isinstance(raw_namespaces, list):
        problems.append("store_namespaces: must be a list of namespace names")
        raw_namespaces = []
    settings.store_namespaces = [str(ns) for ns in raw_namespaces]
    for index, ns in enumerate(settings.store_namespaces):
        if not NAME_RE.match(ns):
            problems.append(f"store_namespaces[{index}]: {ns!r} is not a valid Kubernetes name")
    if problems:
        raise ExternalSecretsError("external secrets settings: " + str(len(problems)) + " problem(s)\n"
                                   + "\n".join(f"  - {p}" for p in problems))
    return settings


def _vault_settings(raw: Mapping[str, Any], settings: Settings, problems: list[str]) -> VaultSettings:
    if not isinstance(raw, Mapping):
        problems.append("vault: must be a mapping")
        return VaultSettings()
    vault = VaultSettings(service_account_namespace=settings.operator_namespace)
    for name in ("server", "path", "version", "mount_path", "role", "service_account", "service_account_namespace"):
        if raw.get(name) is not None:
            setattr(vault, name, str(raw[name]))
    if raw.get("audiences") is not None:
        vault.audiences = [str(a) for a in raw["audiences"]]
    if settings.provider == "vault":
        if not re.match(r"^https?://", vault.server):
            problems.append("vault.server: set the Vault address (https://...) to use the vault provider")
        if vault.version not in ("v1", "v2"):
            problems.append(f"vault.version: {vault.version!r} is not v1 or v2")
    return vault


def _sync_items(raw: Any, default_interval: str, problems: list[str]) -> list[SyncItem]:
    if not isinstance(raw, list):
        problems.append("sync: must be a list of ExternalSecret definitions")
        return []
    items: list[SyncItem] = []
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(raw):
        where = f"sync[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: must be a mapping with name, namespace and data or extract")
            continue
        name, namespace = str(entry.get("name") or ""), str(entry.get("namespace") or "")
        for label, value in (("name", name), ("namespace", namespace)):
            if not NAME_RE.match(value):
                problems.append(f"{where}.{label}: {value!r} is not a valid Kubernetes name")
        if (namespace, name) in seen:
            problems.append(f"{where}: {namespace}/{name} is listed twice")
        seen.add((namespace, name))
        target = str(entry.get("target") or name)
        interval = str(entry.get("refresh_interval") or default_interval)
        if not DURATION_RE.match(interval):
            problems.append(f"{where}.refresh_interval: {interval!r} is not a duration such as 1h or 15m")
        data: list[SyncData] = []
        for d_index, item in enumerate(entry.get("data") or []):
            d_where = f"{where}.data[{d_index}]"
            if not isinstance(item, Mapping) or not item.get("key") or not item.get("remote_key"):
                problems.append(f"{d_where}: needs key (in the target Secret) and remote_key (the master secret)")
                continue
            if not SECRET_KEY_RE.match(str(item["key"])):
                problems.append(f"{d_where}.key: {item['key']!r} is not a valid Secret key (letters, digits, '-', '_', '.')")
            prop = item.get("property")
            data.append(SyncData(str(item["key"]), str(item["remote_key"]), None if prop is None else str(prop)))
        extract = [str(e) for e in entry.get("extract") or []]
        find = [str(f) for f in entry.get("find") or []]
        for f_index, regexp in enumerate(find):
            try:
                re.compile(regexp)
            except re.error:
                problems.append(f"{where}.find[{f_index}]: {regexp!r} is not a regular expression")
        if not data and not extract and not find:
            problems.append(f"{where}: needs data (key, remote_key, property), extract (master secret names) "
                            "or find (name regular expressions)")
        items.append(SyncItem(name, namespace, target, interval, data, extract, find))
    return items


# ---------------------------------------------------------------------------- manifests


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(LABELS)
    return meta


def namespace_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name)}


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
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, ns)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(name, ns), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(name, ns),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
    ]


def store_object(settings: Settings) -> dict[str, Any]:
    """The ClusterSecretStore: the only object that depends on the provider."""
    if settings.provider == "vault":
        vault = settings.vault
        provider: dict[str, Any] = {"vault": {
            "server": vault.server, "path": vault.path, "version": vault.version,
            "auth": {"kubernetes": {
                "mountPath": vault.mount_path, "role": vault.role,
                "serviceAccountRef": {"name": vault.service_account, "namespace": vault.service_account_namespace,
                                      "audiences": list(vault.audiences)},
            }},
        }}
    else:
        provider = {"kubernetes": {
            "remoteNamespace": settings.namespace,
            "server": {"caProvider": {"type": "ConfigMap", "name": "kube-root-ca.crt", "key": "ca.crt",
                                      "namespace": settings.namespace}},
            "auth": {"serviceAccount": {"name": settings.service_account, "namespace": settings.namespace}},
        }}
    return {"apiVersion": ESO_API, "kind": "ClusterSecretStore", "metadata": _meta(settings.store_name),
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
    return {"apiVersion": ESO_API, "kind": "ExternalSecret", "metadata": _meta(item.name, item.namespace), "spec": spec}


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
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository", "metadata": _meta("external-secrets", ns),
         "spec": {"interval": "1h", "url": settings.chart_repo_url}},
        {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": _meta("external-secrets", ns),
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


# ---------------------------------------------------------------------------- master secrets


@dataclass
class MasterSecret:
    name: str
    source: str
    manifest: dict[str, Any] = field(repr=False)


@dataclass
class Repository:
    root: Path
    keys: AgeKeys
    tool: SopsTool
    rules: list[dict[str, Any]]


def open_repository(root: Path, age_key_file: str | None, sops_binary: str | None, environ: Mapping[str, str] | None = None) -> Repository:
    try:
        keys = find_age_keys(root, age_key_file, environ)
    except AgeKeyError as exc:
        raise ExternalSecretsError(str(exc)) from None
    config = root / SOPS_CONFIG_NAME
    try:
        rules = load_sops_config(config) if config.is_file() else []
        tool = SopsTool(root, find_sops_binary(sops_binary), keys.sops_env(), config if config.is_file() else None)
    except SopsToolError as exc:
        raise ExternalSecretsError(str(exc)) from None
    return Repository(root, keys, tool, rules)


def master_secret_files(root: Path, pattern: str, exclude: str) -> list[str]:
    """Files the glob matches, relative to root, outside the GitOps output folder."""
    found = []
    for path in sorted(root.glob(pattern)):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not (rel + "/").startswith(exclude.rstrip("/") + "/"):
            found.append(rel)
    return found


def _decrypt(repo: Repository, relpath: str) -> bytes:
    content = (repo.root / relpath).read_bytes()
    if encrypted_metadata(content, "yaml") is None:
        raise ExternalSecretsError(f"{relpath}: is not SOPS-encrypted; encrypt it (sops encrypt -i {relpath}) before it is used "
                                   "as a master secret")
    if not repo.keys.identities:
        raise ExternalSecretsError(f"{relpath}: cannot decrypt it: no age key found (looked in: {repo.keys.where()})")
    try:
        return repo.tool.decrypt(relpath, content=content)
    except SopsToolError as exc:
        raise ExternalSecretsError(f"{exc} (age keys looked up in: {repo.keys.where()})") from None


def load_master_secrets(repo: Repository, settings: Settings) -> list[MasterSecret]:
    """Decrypt every matched file in memory and return its Secrets, placed in the secrets namespace."""
    files = master_secret_files(repo.root, settings.master_glob, settings.gitops_path)
    problems: list[str] = []

    def decrypt(relpath: str) -> tuple[str, bytes | ExternalSecretsError]:
        try:
            return relpath, _decrypt(repo, relpath)
        except ExternalSecretsError as exc:
            return relpath, exc

    secrets: dict[str, MasterSecret] = {}
    for relpath, result in parallel_map(decrypt, files):
        if isinstance(result, ExternalSecretsError):
            problems.append(str(result))
            continue
        try:
            docs = [doc for doc in yaml.safe_load_all(result) if doc is not None]
        except yaml.YAMLError:
            problems.append(f"{relpath}: the decrypted content is not valid YAML")
            continue
        for index, doc in enumerate(docs):
            where = f"{relpath} (document {index + 1})"
            if not isinstance(doc, dict) or doc.get("kind") != "Secret" or doc.get("apiVersion") != "v1":
                problems.append(f"{where}: is not a Kubernetes Secret (apiVersion: v1, kind: Secret)")
                continue
            meta = doc.get("metadata") or {}
            name = str(meta.get("name") or "")
            if not SECRET_NAME_RE.match(name):
                problems.append(f"{where}: metadata.name {name!r} is not a valid Secret name")
                continue
            if meta.get("namespace") not in (None, settings.namespace):
                problems.append(f"{where}: metadata.namespace is {meta['namespace']!r}, but master secrets live in "
                                f"{settings.namespace!r}; remove the namespace or change it")
                continue
            if name in secrets:
                problems.append(f"{where}: the Secret {name!r} is also defined in {secrets[name].source}")
                continue
            for section in ("data", "stringData"):
                if doc.get(section) is not None and not isinstance(doc[section], dict):
                    problems.append(f"{where}: {section} must be a mapping")
            manifest: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, settings.namespace)}
            labels = meta.get("labels") or {}
            manifest["metadata"]["labels"] = {**{str(k): str(v) for k, v in labels.items()}, **LABELS}
            if meta.get("annotations"):
                manifest["metadata"]["annotations"] = {str(k): str(v) for k, v in meta["annotations"].items()}
            manifest["type"] = str(doc.get("type") or "Opaque")
            for section in ("data", "stringData"):
                if isinstance(doc.get(section), dict) and doc[section]:
                    manifest[section] = {str(k): "" if v is None else str(v) for k, v in doc[section].items()}
            secrets[name] = MasterSecret(name, relpath, manifest)
    if problems:
        raise ExternalSecretsError("master secrets: " + str(len(problems)) + " problem(s)\n" + "\n".join(f"  - {p}" for p in problems))
    return [secrets[name] for name in sorted(secrets)]


# ---------------------------------------------------------------------------- GitOps tree


def dump_yaml(docs: list[dict[str, Any]], header: bool = True) -> bytes:
    text = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, explicit_start=True, width=1000)
    return ((HEADER if header else "") + text).encode()


def kustomization(resources: list[str]) -> dict[str, Any]:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}


def flux_kustomizations(settings: Settings) -> list[dict[str, Any]]:
    base = settings.gitops_path.strip("/")
    docs = []
    store: dict[str, Any] = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": _meta("external-secrets-store", settings.flux_namespace),
        "spec": {
            "interval": "1h", "path": f"./{base}/store", "prune": True, "wait": True, "timeout": "5m",
            "sourceRef": {"kind": "GitRepository", "name": settings.flux_source_name},
            "decryption": {"provider": "sops", "secretRef": {"name": settings.flux_decryption_secret}},
            "healthChecks": [{"apiVersion": ESO_API, "kind": "ClusterSecretStore", "name": settings.store_name}],
        },
    }
    if settings.install_operator:
        docs.append({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": _meta("external-secrets", settings.flux_namespace),
            "spec": {"interval": "1h", "path": f"./{base}/operator", "prune": True, "wait": True, "timeout": "5m",
                     "sourceRef": {"kind": "GitRepository", "name": settings.flux_source_name}},
        })
        store["spec"]["dependsOn"] = [{"name": "external-secrets"}]
    docs.append(store)
    return docs


def external_secret_file(item: SyncItem) -> str:
    return f"store/externalsecrets/{item.namespace}-{item.name}.yaml"


def gitops_files(settings: Settings, masters: list[MasterSecret]) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """Plain files (path -> bytes) and secret files (path -> plaintext manifest), paths relative to the repository."""
    base = settings.gitops_path.strip("/")
    plain: dict[str, bytes] = {}
    secret: dict[str, dict[str, Any]] = {}
    plain[f"{base}/kustomization.yaml"] = dump_yaml([kustomization(["./ks.yaml"])])
    plain[f"{base}/ks.yaml"] = dump_yaml(flux_kustomizations(settings))
    if settings.install_operator:
        ops = operator_objects(settings)
        plain[f"{base}/operator/namespace.yaml"] = dump_yaml([ops[0]])
        plain[f"{base}/operator/helmrepository.yaml"] = dump_yaml([ops[1]])
        plain[f"{base}/operator/helmrelease.yaml"] = dump_yaml([ops[2]])
        plain[f"{base}/operator/kustomization.yaml"] = dump_yaml(
            [kustomization(["./namespace.yaml", "./helmrepository.yaml", "./helmrelease.yaml"])])
    names = [master.name for master in masters]
    objects = build_objects(settings, names)
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    store_resources = ["./namespace.yaml", "./rbac.yaml"]
    plain[f"{base}/store/namespace.yaml"] = dump_yaml(namespaces)
    plain[f"{base}/store/rbac.yaml"] = dump_yaml(rbac_objects(settings, names))
    for master in masters:
        rel = f"store/master-secrets/{master.name}.sops.yaml"
        secret[f"{base}/{rel}"] = master.manifest
        store_resources.append(f"./{rel.removeprefix('store/')}")
    plain[f"{base}/store/clustersecretstore.yaml"] = dump_yaml([store_object(settings)])
    store_resources.append("./clustersecretstore.yaml")
    for item in settings.sync:
        rel = external_secret_file(item)
        plain[f"{base}/{rel}"] = dump_yaml([external_secret_object(item, settings.store_name)])
        store_resources.append(f"./{rel.removeprefix('store/')}")
    plain[f"{base}/store/kustomization.yaml"] = dump_yaml([kustomization(store_resources)])
    return plain, secret


@dataclass
class GitopsFile:
    path: str
    secret: bool
    state: str  # created | changed | unchanged | removed
    content: bytes | None = None
    before: bytes | None = None
    changed_keys: list[str] = field(default_factory=list)


@dataclass
class GitopsPlan:
    root: Path
    files: list[GitopsFile]
    stale: list[str]
    prune: bool

    @property
    def changed(self) -> bool:
        return any(f.state != "unchanged" for f in self.files) or (self.prune and bool(self.stale))

    def summary(self) -> dict[str, Any]:
        def paths(state: str) -> list[str]:
            return [f.path for f in self.files if f.state == state]
        return {"created": paths("created"), "updated": paths("changed"), "unchanged": len(paths("unchanged")),
                "removed": list(self.stale) if self.prune else [], "stale": [] if self.prune else list(self.stale)}

    def diff(self) -> list[dict[str, str]]:
        diffs = []
        for item in self.files:
            if item.state == "unchanged":
                continue
            if item.secret:
                diffs.append({"before_header": f"{item.path} (encrypted)", "after_header": f"{item.path} (encrypted): keys changed",
                              "before": "" if item.state == "created" else "(encrypted; values are not shown)\n",
                              "after": "".join(f"{k}\n" for k in item.changed_keys) or "(re-encrypted for new recipients)\n"})
            else:
                diffs.append({"before_header": item.path, "after_header": item.path,
                              "before": (item.before or b"").decode(), "after": (item.content or b"").decode()})
        if self.prune:
            diffs += [{"before_header": path, "after_header": f"{path} (removed)", "before": "(file)\n", "after": ""}
                      for path in self.stale]
        return diffs


def _flatten_keys(manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section in ("data", "stringData"):
        for key, value in ((manifest or {}).get(section) or {}).items():
            flat[f"{section}.{key}"] = value
    for key in ("metadata", "type"):
        flat[key] = (manifest or {}).get(key)
    return flat


def changed_keys(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    """Names (never values) of what differs between two Secret manifests."""
    old, new = _flatten_keys(before), _flatten_keys(after)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def foreign_files(root: Path, plain_paths: Iterable[str]) -> list[str]:
    """Files the GitOps tree would write that exist without this role's header: someone else writes them."""
    foreign = []
    for path in sorted(plain_paths):
        target = root / path
        try:
            if target.is_file() and not target.read_bytes().startswith(HEADER.encode()):
                foreign.append(path)
        except OSError:
            foreign.append(path)
    return foreign


def plan_gitops(repo: Repository, settings: Settings, masters: list[MasterSecret], prune: bool) -> GitopsPlan:
    root = repo.root
    plain, secret = gitops_files(settings, masters)
    foreign = foreign_files(root, plain)
    if foreign:
        # Merging into the repository's own app would still leave two writers of one file (its template and this
        # role), each undoing the other on every run: stop instead, before anything is written.
        raise ExternalSecretsError(
            f"{settings.gitops_path}: the repository has its own External Secrets app there: "
            f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''} "
            "exist(s) without the \"# Managed by cluster.secrets\" header, so this role did not write them (your templates "
            "render them, or you wrote them). Writing the role's GitOps tree into the same folder would make two writers "
            "that overwrite each other on every run and drop your entries; nothing was written. Either give the role a "
            "folder of its own (external_secrets.gitops_path in cluster.yaml or external_secrets_gitops_path, e.g. "
            "kubernetes/apps/cluster-secrets-eso, and list it in your Flux tree; set install_operator: false when "
            "your app installs the operator), or use mode apply.")
    files: list[GitopsFile] = []
    for path, content in sorted(plain.items()):
        target = root / path
        before = target.read_bytes() if target.is_file() else None
        state = "created" if before is None else ("unchanged" if before == content else "changed")
        files.append(GitopsFile(path, False, state, content if state != "unchanged" else None, before))

    problems: list[str] = []
    pending: list[GitopsFile] = []
    for path, manifest in sorted(secret.items()):
        rule = rule_for(path, repo.rules) if repo.rules else None
        if rule is None:
            problems.append(f"{path}: no creation rule in {SOPS_CONFIG_NAME} matches this path; add a path_regex for it "
                            "(run the init playbook to create .sops.yaml)")
            continue
        target = root / path
        item = GitopsFile(path, True, "created")
        if target.is_file():
            existing = target.read_bytes()
            meta = encrypted_metadata(existing, "yaml")
            if meta is None:
                item.state, item.changed_keys = "changed", ["(was not encrypted)"]
            else:
                try:
                    previous = yaml.safe_load(_decrypt(repo, path))
                except (ExternalSecretsError, yaml.YAMLError) as exc:
                    problems.append(str(exc) if isinstance(exc, ExternalSecretsError) else f"{path}: decrypted content is not YAML")
                    continue
                same_recipients = file_recipients(meta) == rule_recipients(rule)
                if previous == manifest and same_recipients:
                    files.append(GitopsFile(path, True, "unchanged"))
                    continue
                item.state = "changed"
                item.changed_keys = changed_keys(previous if isinstance(previous, dict) else None, manifest)
        else:
            item.changed_keys = changed_keys(None, manifest)
        pending.append(item)
    if problems:
        raise ExternalSecretsError("gitops files: " + str(len(problems)) + " problem(s)\n" + "\n".join(f"  - {p}" for p in problems))

    def encrypt(item: GitopsFile) -> tuple[GitopsFile, bytes | SopsToolError]:
        plaintext = yaml.safe_dump(secret[item.path], sort_keys=False, default_flow_style=False, explicit_start=True, width=1000)
        try:
            return item, repo.tool.encrypt(plaintext.encode(), item.path)
        except SopsToolError as exc:
            return item, exc

    for item, result in parallel_map(encrypt, pending):
        if isinstance(result, SopsToolError):
            problems.append(str(result))
            continue
        item.content = result
        files.append(item)
    if problems:
        raise ExternalSecretsError("gitops files: " + str(len(problems)) + " problem(s)\n" + "\n".join(f"  - {p}" for p in problems))

    wanted = set(plain) | set(secret)
    base = settings.gitops_path.strip("/")
    stale = []
    for folder in ("store/master-secrets", "store/externalsecrets"):
        directory = root / base / folder
        if directory.is_dir():
            stale += [p.relative_to(root).as_posix() for p in sorted(directory.iterdir())
                      if p.is_file() and p.suffix in (".yaml", ".yml") and p.relative_to(root).as_posix() not in wanted]
    return GitopsPlan(root, sorted(files, key=lambda f: f.path), stale, prune)


def apply_gitops(plan: GitopsPlan) -> None:
    for item in plan.files:
        if item.state != "unchanged" and item.content is not None:
            atomic_write(plan.root / item.path, item.content)
    if plan.prune:
        for path in plan.stale:
            (plan.root / path).unlink(missing_ok=True)


# ---------------------------------------------------------------------------- readiness


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


# ---------------------------------------------------------------------------- plugin options


def settings_argument_spec() -> dict[str, Any]:
    """Options that shape the manifests; None means: cluster.yaml's external_secrets value, else the default."""
    return {
        "enabled": {"type": "bool"},
        "mode": {"type": "str"},
        "provider": {"type": "str"},
        "namespace": {"type": "str"},
        "store_name": {"type": "str"},
        "service_account": {"type": "str"},
        "master_glob": {"type": "str"},
        "install_operator": {"type": "bool"},
        "operator_namespace": {"type": "str"},
        "chart_version": {"type": "str"},
        "chart_repo_url": {"type": "str"},
        "refresh_interval": {"type": "str"},
        "sync": {"type": "list", "elements": "dict"},
        "vault": {"type": "dict"},
        "gitops_path": {"type": "str"},
        "flux_source_name": {"type": "str"},
        "flux_namespace": {"type": "str"},
        "flux_decryption_secret": {"type": "str", "no_log": False},
        "create_target_namespaces": {"type": "bool"},
        "store_namespaces": {"type": "list", "elements": "str"},
    }
