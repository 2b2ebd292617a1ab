# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hand-written CRD schemas in tests/schemas accept what the role emits and reject what the API would reject."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_gitops import flux_kustomizations
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_manifests import (
    external_secret_object,
    operator_objects,
    store_object,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import resolve_settings
from tests.integration.eso_support import SYNC, crd_schemas, validate_manifest

VAULT = {"server": "https://vault.example.com", "role": "eso"}
INFISICAL = {"project_slug": "home-ops", "environment_slug": "prod"}


def _settings(**options: Any):
    return resolve_settings(options, {"sync": copy.deepcopy(SYNC)})


def kubernetes_store() -> dict[str, Any]:
    return store_object(_settings())


def vault_store() -> dict[str, Any]:
    return store_object(_settings(provider="vault", vault=dict(VAULT)))


def infisical_store() -> dict[str, Any]:
    return store_object(_settings(provider="infisical", infisical=dict(INFISICAL)))


def external_secret() -> dict[str, Any]:
    """The second sync item: data with a property, dataFrom extract and its own refresh interval."""
    return external_secret_object(_settings().sync[1], "main-store")


def helm_repository() -> dict[str, Any]:
    return operator_objects(_settings())[1]


def helm_release() -> dict[str, Any]:
    return operator_objects(_settings())[2]


def store_kustomization() -> dict[str, Any]:
    """The Flux Kustomization of the store: decryption, dependsOn and healthChecks."""
    return flux_kustomizations(_settings())[1]


BUILDERS = [kubernetes_store, vault_store, infisical_store, external_secret, helm_repository, helm_release, store_kustomization]


def _walk(doc: dict[str, Any], path: str) -> tuple[Any, str | int]:
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = doc
    for part in parents:
        node = node[part]
    return node, last


def rename(path: str, new_name: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node, last = _walk(doc, path)
        node[new_name] = node.pop(last)
    return change


def set_to(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node, last = _walk(doc, path)
        node[last] = value
    return change


def drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node, last = _walk(doc, path)
        del node[last]
    return change


def test_every_crd_kind_the_role_emits_has_a_schema():
    assert set(crd_schemas()) == {f"{b()['apiVersion']}/{b()['kind']}" for b in BUILDERS}


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_emitted_manifests_pass(builder: Callable[[], dict[str, Any]]):
    validate_manifest(builder())


BROKEN = [
    # misspelt or unknown fields
    (kubernetes_store, rename("spec.provider.kubernetes.remoteNamespace", "remoteNamespce"), "remoteNamespce"),
    (kubernetes_store, rename("spec.provider.kubernetes.server.caProvider.key", "keys"), "keys"),
    (vault_store, rename("spec.provider.vault.auth.kubernetes.serviceAccountRef.audiences", "audience"), "audience"),
    (infisical_store, rename("spec.provider.infisical.secretsScope.projectSlug", "projectSlugg"), "projectSlugg"),
    (infisical_store, rename("spec.provider.infisical.hostAPI", "hostApi"), "hostApi"),
    (infisical_store, rename("spec.provider.infisical.auth.universalAuthCredentials.clientSecret.key", "keys"), "keys"),
    (infisical_store, rename("spec.provider.infisical.secretsScope.secretsPath", "secretPath"), "secretPath"),
    (external_secret, rename("spec.refreshInterval", "refreshIntervall"), "refreshIntervall"),
    (external_secret, rename("spec.data.0.remoteRef.property", "propery"), "propery"),
    (external_secret, rename("metadata.labels", "label"), "label"),
    (helm_release, rename("spec.values", "valuess"), "valuess"),
    (helm_release, rename("spec.install.remediation.retries", "retry"), "retry"),
    (helm_repository, set_to("spec.insecureSkipVerify", True), "insecureSkipVerify"),
    (store_kustomization, rename("spec.healthChecks.0.name", "nme"), "nme"),
    (store_kustomization, rename("spec.decryption.secretRef", "secretReference"), "secretReference"),
    # wrong enums and types
    (external_secret, set_to("spec.secretStoreRef.kind", "SecretStor"), "SecretStor"),
    (external_secret, set_to("spec.target.creationPolicy", "owner"), "owner"),
    (kubernetes_store, set_to("spec.provider.kubernetes.server.caProvider.type", "Configmap"), "Configmap"),
    (vault_store, set_to("spec.provider.vault.version", "v3"), "v3"),
    (helm_release, set_to("spec.install.crds", "Replace"), "Replace"),
    (helm_release, set_to("spec.chart.spec.sourceRef.kind", "HelmRepo"), "HelmRepo"),
    (helm_repository, set_to("spec.type", "OCI"), "OCI"),
    (store_kustomization, set_to("spec.decryption.provider", "age"), "age"),
    (store_kustomization, set_to("spec.prune", "true"), "true"),
    (store_kustomization, set_to("spec.interval", "1 hour"), "1 hour"),
    (external_secret, set_to("kind", "ExternalSecrets"), "no schema"),
    # missing required fields
    (external_secret, drop("spec.data.0.secretKey"), "secretKey"),
    (external_secret, drop("spec.data.0.remoteRef.key"), "key"),
    (external_secret, drop("spec.dataFrom.0.extract.key"), "key"),
    (vault_store, drop("spec.provider.vault.server"), "server"),
    (infisical_store, drop("spec.provider.infisical.secretsScope.environmentSlug"), "environmentSlug"),
    (infisical_store, drop("spec.provider.infisical.auth.universalAuthCredentials.clientId"), "clientId"),
    (infisical_store, drop("spec.provider.infisical.secretsScope"), "secretsScope"),
    (kubernetes_store, drop("metadata.name"), "name"),
    (helm_release, drop("spec.interval"), "interval"),
    (helm_release, drop("spec.chart"), "not valid under any"),  # neither chart nor chartRef
    (helm_repository, drop("spec.url"), "url"),
    (store_kustomization, drop("spec.prune"), "prune"),
    (store_kustomization, drop("spec.sourceRef"), "sourceRef"),
    # exactly one provider, exactly one kubernetes auth method
    (kubernetes_store, set_to("spec.provider.vault", {"server": "https://vault.example.com"}), "too many properties"),
    (infisical_store, set_to("spec.provider.kubernetes", {"remoteNamespace": "secrets"}), "too many properties"),
    (infisical_store, set_to("spec.provider.infisical.auth.tokenAuthCredentials", {"accessToken": {"name": "t", "key": "k"}}),
     "too many properties"),
    (kubernetes_store, set_to("spec.provider", {}), "non-empty|enough properties"),
    (kubernetes_store, set_to("spec.provider.kubernetes.auth.token", {"bearerToken": {"name": "t", "key": "k"}}), "too many properties"),
    (kubernetes_store, set_to("spec.provider.kubernetes.auth", {}), "non-empty|enough properties"),
]


@pytest.mark.parametrize(("builder", "change", "hint"), BROKEN, ids=[f"{case[0].__name__}-{i}" for i, case in enumerate(BROKEN)])
def test_broken_manifests_fail(builder: Callable[[], dict[str, Any]], change: Callable[[dict[str, Any]], None],
                               hint: str):
    doc = builder()
    validate_manifest(doc)  # the unbroken manifest passes, so the failure below is the change's doing
    change(doc)
    with pytest.raises(AssertionError) as failed:
        validate_manifest(doc)
    assert re.search(hint, str(failed.value)), str(failed.value)


OPEN = [
    (helm_release, set_to("spec.values.anything", {"nested": {"deep": [1, "two"]}})),
    (external_secret, set_to("spec.target.template", {"engineVersion": "v2", "data": {"DSN": "{{ .url }}"}, "x": 1})),
    (store_kustomization, set_to("spec.postBuild", {"substitute": {"cluster_name": "prod", "any_key": "x"}})),
]


@pytest.mark.parametrize(("builder", "change"), OPEN, ids=["values", "template", "substitute"])
def test_fields_with_arbitrary_content_stay_open(builder: Callable[[], dict[str, Any]],
                                                 change: Callable[[dict[str, Any]], None]):
    doc = builder()
    change(doc)
    validate_manifest(doc)


def test_schemas_say_they_are_hand_written():
    from tests.integration.eso_support import SCHEMAS

    for name in ("external-secrets.io_v1.json", "fluxcd.json"):
        text = (SCHEMAS / name).read_text(encoding="utf-8")
        assert "Hand-written" in text and not re.search(r"\b[0-9a-f]{40}\b", text), name
