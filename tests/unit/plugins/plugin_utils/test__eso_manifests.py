# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/_eso_manifests.py: the store, its RBAC, the ExternalSecrets, and readiness."""

from __future__ import annotations

import copy

import pytest
import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_manifests import (
    LABELS,
    build_objects,
    external_secret_object,
    object_id,
    readiness_problems,
    store_object,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import ExternalSecretsError, resolve_settings
from tests.integration.eso_support import SYNC, validate_manifest

VAULT = {"server": "https://vault.example.com", "role": "eso"}
INFISICAL = {"project_slug": "home-ops", "environment_slug": "prod"}
PROVIDERS = {"kubernetes": {}, "vault": {"provider": "vault", "vault": VAULT},
             "infisical": {"provider": "infisical", "infisical": INFISICAL}}


def settings(**options):
    return resolve_settings(options, {"sync": copy.deepcopy(SYNC)})


def test_kubernetes_store_has_ca_provider_and_service_account():
    provider = store_object(settings())["spec"]["provider"]["kubernetes"]
    assert provider == {
        "remoteNamespace": "secrets",
        "server": {"caProvider": {"type": "ConfigMap", "name": "kube-root-ca.crt", "key": "ca.crt", "namespace": "secrets"}},
        "auth": {"serviceAccount": {"name": "external-secrets-store", "namespace": "secrets"}},
    }


def test_switching_provider_changes_only_the_store():
    kube, vault = build_objects(settings()), build_objects(settings(provider="vault", vault=VAULT))
    assert len(kube) == len(vault)
    differing = [object_id(a) for a, b in zip(kube, vault, strict=True) if yaml.safe_dump(a) != yaml.safe_dump(b)]
    assert differing == ["ClusterSecretStore/main-store"]
    auth = store_object(settings(provider="vault", vault=VAULT))["spec"]["provider"]["vault"]
    assert auth["version"] == "v2"
    assert auth["auth"]["kubernetes"]["serviceAccountRef"]["audiences"] == ["vault"]


def test_infisical_store_refers_to_the_credentials_and_names_the_scope():
    provider = store_object(settings(provider="infisical", infisical=INFISICAL))["spec"]["provider"]
    assert provider == {"infisical": {
        "hostAPI": "https://app.infisical.com/api",
        "auth": {"universalAuthCredentials": {
            "clientId": {"name": "infisical-universal-auth", "key": "clientId", "namespace": "secrets"},
            "clientSecret": {"name": "infisical-universal-auth", "key": "clientSecret", "namespace": "secrets"}}},
        "secretsScope": {"projectSlug": "home-ops", "environmentSlug": "prod", "secretsPath": "/"},
    }}


def test_external_secrets_are_byte_identical_across_the_three_providers():
    """Applications never notice a provider switch: their ExternalSecrets do not change by one byte."""
    dumped = {}
    for name, options in PROVIDERS.items():
        objects = build_objects(settings(**copy.deepcopy(options)), ["postgres-credentials"])
        dumped[name] = [yaml.safe_dump(o, sort_keys=False).encode() for o in objects if o["kind"] == "ExternalSecret"]
    assert len(dumped["kubernetes"]) == 2
    assert dumped["kubernetes"] == dumped["vault"] == dumped["infisical"]


@pytest.mark.parametrize(("before", "after"), [(a, b) for a in PROVIDERS for b in PROVIDERS if a != b])
def test_any_provider_switch_changes_only_the_store(before, after):
    old = build_objects(settings(**copy.deepcopy(PROVIDERS[before])), ["postgres-credentials"])
    new = build_objects(settings(**copy.deepcopy(PROVIDERS[after])), ["postgres-credentials"])
    assert [object_id(o) for o in old] == [object_id(o) for o in new]
    differing = [object_id(a) for a, b in zip(old, new, strict=True) if yaml.safe_dump(a) != yaml.safe_dump(b)]
    assert differing == ["ClusterSecretStore/main-store"]


def test_objects_come_in_apply_order_with_our_labels():
    objects = build_objects(settings(create_target_namespaces=True))
    assert [object_id(o) for o in objects] == [
        "Namespace/secrets", "Namespace/talent-mesh", "ServiceAccount/secrets/external-secrets-store",
        "Role/secrets/external-secrets-store", "RoleBinding/secrets/external-secrets-store", "ClusterSecretStore/main-store",
        "ExternalSecret/talent-mesh/db-credentials", "ExternalSecret/talent-mesh/auth"]
    assert all(o["metadata"]["labels"] == LABELS for o in objects)


def test_external_secret_shape():
    item = settings().sync[1]
    spec = external_secret_object(item, "main-store")["spec"]
    assert spec["target"] == {"name": "auth-env", "creationPolicy": "Owner"}
    assert spec["refreshInterval"] == "15m"
    assert spec["data"] == [{"secretKey": "JWT_KEY", "remoteRef": {"key": "jwt-signing-key", "property": "key"}}]
    assert spec["dataFrom"] == [{"extract": {"key": "redis-credentials"}}]


@pytest.mark.parametrize("options", [*PROVIDERS.values(), {"create_target_namespaces": True}])
def test_every_object_matches_its_schema(options):
    for obj in build_objects(settings(**options), ["postgres-credentials"]):
        validate_manifest(obj)


def test_schema_validation_catches_a_bad_field():
    bad = external_secret_object(settings().sync[0], "main-store")
    bad["spec"]["secretStoreRef"]["kind"] = "Vault"
    with pytest.raises(AssertionError):
        validate_manifest(bad)
    typo = external_secret_object(settings().sync[0], "main-store")
    typo["spec"]["refreshIntervall"] = "1h"
    with pytest.raises(AssertionError):
        validate_manifest(typo)


def test_readiness_names_reason_and_message():
    ok = {"kind": "ClusterSecretStore", "metadata": {"name": "main-store"},
          "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}]}}
    bad = {"kind": "ExternalSecret", "metadata": {"name": "db", "namespace": "app"},
           "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "SecretSyncedError", "message": "key missing"}]}}
    pending = {"kind": "ExternalSecret", "metadata": {"name": "new", "namespace": "app"}}
    problems = readiness_problems([ok, bad, pending], ["ClusterSecretStore/main-store", "ExternalSecret/app/db",
                                                       "ExternalSecret/app/new", "ExternalSecret/app/gone"])
    assert problems == [
        "ExternalSecret/app/db: Ready=False reason=SecretSyncedError: key missing",
        "ExternalSecret/app/new: no Ready condition yet (is the External Secrets Operator running?)",
        "ExternalSecret/app/gone: not found",
    ]


def secret_rules(objects):
    role = next(o for o in objects if o["kind"] == "Role")
    return [r for r in role["rules"] if "secrets" in r["resources"]]


def test_role_gets_only_the_named_secrets_and_lists_only_for_find():
    """The Role used to grant get/list/watch on every Secret of the namespace, with no resourceNames."""
    resolved = settings()
    assert secret_rules(build_objects(resolved, ["extra-master", "postgres-credentials"])) == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
         "resourceNames": ["extra-master", "jwt-signing-key", "postgres-credentials", "redis-credentials"]}]
    finder = resolve_settings({}, {"sync": [*copy.deepcopy(SYNC), {"name": "all-db", "namespace": "db", "find": ["^db-"]}]})
    rules = secret_rules(build_objects(finder))
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]} in rules
    spec = external_secret_object(finder.sync[2], "main-store")["spec"]
    assert spec["dataFrom"] == [{"find": {"name": {"regexp": "^db-"}}}]
    validate_manifest(external_secret_object(finder.sync[2], "main-store"))
    # No name at all: no get rule (an empty resourceNames would mean every Secret).
    assert secret_rules(build_objects(resolve_settings({}, None))) == []


def test_store_conditions_list_the_namespaces_that_may_use_it():
    """The ClusterSecretStore had no conditions: any namespace could read every master secret."""
    assert store_object(settings())["spec"]["conditions"] == [{"namespaces": ["talent-mesh"]}]
    both = settings(store_namespaces=["apps", "talent-mesh"])
    assert store_object(both)["spec"]["conditions"] == [{"namespaces": ["apps", "talent-mesh"]}]
    assert store_object(resolve_settings({}, None))["spec"]["conditions"] == [{"namespaces": ["secrets"]}]
    vault = store_object(settings(provider="vault", vault=VAULT))
    assert vault["spec"]["conditions"] == [{"namespaces": ["talent-mesh"]}]
    validate_manifest(vault)
    with pytest.raises(ExternalSecretsError, match=r"store_namespaces\[0\]"):
        settings(store_namespaces=["Not_A_Name"])
