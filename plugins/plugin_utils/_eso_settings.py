# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""External Secrets settings: the role's options merged over cluster.yaml's ``external_secrets`` mapping, checked.

``resolve_settings`` merges the options over the mapping, which wins over the defaults, and reports every
problem at once, naming keys, never values. The matching option specs are ``_argspec.ESO_SETTINGS_OPTIONS``.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SECRET_NAME_RE = re.compile(r"^[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$")  # a Secret's name is a DNS subdomain
SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
MODES = ("apply", "gitops")
PROVIDERS = ("infisical", "kubernetes", "vault")
HTTP_URL_RE = re.compile(r"^https?://[^\s/]+")


class ExternalSecretsError(Exception):
    """A problem with the ESO settings or the master secrets; messages name files and keys, never values."""


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
class SecretKeyRef:
    """A key of a Kubernetes Secret (an ESO SecretKeySelector): where a credential lives, never the credential."""

    name: str
    key: str
    namespace: str


INFISICAL_HOST_API = "https://app.infisical.com/api"
INFISICAL_AUTH_SECRET = "infisical-universal-auth"  # noqa: S105 - default name of the Secret, not a password
# The keys of that Secret, as ESO's Infisical guide names them. Settings deliberately avoid names with "secret" in
# them (``path``, ``universal_auth``): the cluster vars treat any such key's value as a secret and mask it everywhere.
INFISICAL_ID_KEY, INFISICAL_SECRET_KEY = "clientId", "clientSecret"
INFISICAL_KEYS = ("project_slug", "environment_slug", "path", "host_api", "universal_auth")


@dataclass
class InfisicalSettings:
    """The infisical provider: a project and environment (by slug), a folder, and universal-auth credentials kept in a
    Kubernetes Secret (by default ``infisical-universal-auth`` in the secrets namespace, so it can be a master secret)."""

    project_slug: str = ""
    environment_slug: str = ""
    path: str = "/"
    host_api: str = INFISICAL_HOST_API
    auth_name: str = INFISICAL_AUTH_SECRET
    auth_namespace: str = "secrets"

    @property
    def client_id(self) -> SecretKeyRef:
        return SecretKeyRef(self.auth_name, INFISICAL_ID_KEY, self.auth_namespace)

    @property
    def client_secret(self) -> SecretKeyRef:
        return SecretKeyRef(self.auth_name, INFISICAL_SECRET_KEY, self.auth_namespace)


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
    infisical: InfisicalSettings = field(default_factory=InfisicalSettings)
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
    "gitops_path": "gitops_path", "sync": "sync", "vault": "vault", "infisical": "infisical",
}


def external_secrets_section(cluster: ClusterVars | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The ``external_secrets`` mapping of the cluster vars, given loaded (a ``ClusterVars``) or as their data."""
    data = cluster.data if isinstance(cluster, ClusterVars) else cluster
    section = (data or {}).get("external_secrets")
    return section if isinstance(section, Mapping) else None


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
    settings.infisical = _infisical_settings(merged.get("infisical") or {}, settings, problems)
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


def _infisical_settings(raw: Mapping[str, Any], settings: Settings, problems: list[str]) -> InfisicalSettings:
    """Read whatever the mapping holds; require what the store needs only when the provider is infisical, so that the
    settings can wait in cluster.yaml until ``provider`` is switched. Messages name keys, never values."""
    if not isinstance(raw, Mapping):
        problems.append(f"infisical: must be a mapping ({', '.join(INFISICAL_KEYS)})")
        return InfisicalSettings(auth_namespace=settings.namespace)
    infisical = InfisicalSettings(auth_namespace=settings.namespace)
    for name in sorted(set(map(str, raw)) - set(INFISICAL_KEYS)):
        problems.append(f"infisical.{name}: unknown setting (known: {', '.join(INFISICAL_KEYS)})")
    for name in ("project_slug", "environment_slug", "path", "host_api"):
        if raw.get(name) is not None:
            setattr(infisical, name, str(raw[name]).strip())
    _universal_auth(raw.get("universal_auth"), infisical, problems)
    if settings.provider == "infisical":
        if not infisical.project_slug:
            problems.append("infisical.project_slug: set the Infisical project slug (project settings, Copy Project "
                            "Slug) to use the infisical provider")
        if not infisical.environment_slug:
            problems.append("infisical.environment_slug: set the Infisical environment slug (e.g. dev, staging, prod) "
                            "to use the infisical provider")
        if not infisical.path.startswith("/"):
            problems.append(f"infisical.path: {infisical.path!r} must be a folder path starting with '/' "
                            "(the root folder is '/')")
        if not HTTP_URL_RE.match(infisical.host_api):
            problems.append(f"infisical.host_api: not a URL; set the API address, e.g. {INFISICAL_HOST_API} or "
                            "https://infisical.example.com/api")
    return infisical


def _universal_auth(raw: Any, infisical: InfisicalSettings, problems: list[str]) -> None:
    """Where the machine identity's client id and client secret are kept: the name and namespace of a Kubernetes
    Secret with the keys ``clientId`` and ``clientSecret``. Anything but such a reference is refused without being
    repeated (it may be a credential pasted where its reference belongs)."""
    if raw is None:
        return
    if not isinstance(raw, Mapping):
        problems.append("infisical.universal_auth: must name the Kubernetes Secret that holds the client id and client "
                        f"secret (keys {INFISICAL_ID_KEY}, {INFISICAL_SECRET_KEY}), a mapping with name and namespace; "
                        "never the credentials themselves (the value was not shown)")
        return
    for name in sorted(set(map(str, raw)) - {"name", "namespace"}):
        problems.append(f"infisical.universal_auth.{name}: unknown setting (known: name, namespace; the Secret's keys "
                        f"are {INFISICAL_ID_KEY} and {INFISICAL_SECRET_KEY})")
    infisical.auth_name = str(raw.get("name") or infisical.auth_name)
    infisical.auth_namespace = str(raw.get("namespace") or infisical.auth_namespace)
    if not SECRET_NAME_RE.match(infisical.auth_name):
        problems.append(f"infisical.universal_auth.name: {infisical.auth_name!r} is not a valid Secret name "
                        "(lowercase letters, digits, '-', '.')")
    if not NAME_RE.match(infisical.auth_namespace):
        problems.append(f"infisical.universal_auth.namespace: {infisical.auth_namespace!r} is not a valid Kubernetes name")


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
