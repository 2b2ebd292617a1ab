# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The TEST DOUBLE of the Kubernetes API behaves like the API where the external_secrets role relies on it.

Driven through the official `kubernetes` client (dynamic client, the one kubernetes.core uses) over HTTP.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config, dynamic
from kubernetes.client import api_client
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError

from tests.kube_api_double import KubeApiDouble


@pytest.fixture
def api() -> Iterator[KubeApiDouble]:
    double = KubeApiDouble(reconcile_interval=0.05).start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def client(api: KubeApiDouble, tmp_path: Path) -> dynamic.DynamicClient:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    return dynamic.DynamicClient(api_client.ApiClient(configuration=config.load_kube_config(str(kubeconfig)) or None))


def ns(client: dynamic.DynamicClient, name: str) -> None:
    client.resources.get(api_version="v1", kind="Namespace").create(body={"metadata": {"name": name}})


def test_discovery_serves_core_rbac_and_eso_v1(client: dynamic.DynamicClient):
    for api_version, kind in (("v1", "Secret"), ("rbac.authorization.k8s.io/v1", "Role"),
                              ("external-secrets.io/v1", "ClusterSecretStore"), ("external-secrets.io/v1", "ExternalSecret")):
        assert client.resources.get(api_version=api_version, kind=kind).kind == kind
    with pytest.raises(Exception):  # noqa: B017 - the client raises its own ResourceNotFoundError
        client.resources.get(api_version="external-secrets.io/v1beta1", kind="ExternalSecret")


def test_string_data_becomes_base64_data_with_uid_and_resource_version(client: dynamic.DynamicClient):
    ns(client, "secrets")
    secrets = client.resources.get(api_version="v1", kind="Secret")
    created = secrets.create(namespace="secrets", body={"metadata": {"name": "s"}, "stringData": {"k": "v"}}).to_dict()
    assert created["data"] == {"k": base64.b64encode(b"v").decode()} and "stringData" not in created
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    with pytest.raises(ConflictError):
        secrets.create(namespace="secrets", body={"metadata": {"name": "s"}})


def test_namespaced_objects_need_their_namespace(client: dynamic.DynamicClient):
    secrets = client.resources.get(api_version="v1", kind="Secret")
    with pytest.raises(NotFoundError):
        secrets.create(namespace="nowhere", body={"metadata": {"name": "s"}})


def test_dry_run_changes_nothing(api: KubeApiDouble, client: dynamic.DynamicClient):
    ns(client, "secrets")
    before = api.state()
    secrets = client.resources.get(api_version="v1", kind="Secret")
    secrets.server_side_apply(namespace="secrets", body={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                                                         "stringData": {"k": "v"}}, field_manager="t", dry_run="All")
    secrets.create(namespace="secrets", body={"metadata": {"name": "t"}}, dry_run="All")
    assert api.state() == before


def test_server_side_apply_is_idempotent_and_drops_fields_no_longer_applied(client: dynamic.DynamicClient):
    ns(client, "secrets")
    secrets = client.resources.get(api_version="v1", kind="Secret")
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "labels": {"a": "1"}}, "stringData": {"k": "v", "old": "x"}}
    first = secrets.server_side_apply(namespace="secrets", body=body, field_manager="t").to_dict()
    again = secrets.server_side_apply(namespace="secrets", body=body, field_manager="t").to_dict()
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    del body["stringData"]["old"]
    third = secrets.server_side_apply(namespace="secrets", body=body, field_manager="t").to_dict()
    assert set(third["data"]) == {"k"}
    assert int(third["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


def test_merge_patch_get_list_and_delete(client: dynamic.DynamicClient):
    ns(client, "apps")
    maps = client.resources.get(api_version="v1", kind="ConfigMap")
    maps.create(namespace="apps", body={"metadata": {"name": "c", "labels": {"x": "y"}}, "data": {"a": "1", "b": "2"}})
    patched = maps.patch(namespace="apps", name="c", body={"data": {"b": None, "c": "3"}},
                         content_type="application/merge-patch+json").to_dict()
    assert patched["data"] == {"a": "1", "c": "3"}
    assert [i["metadata"]["name"] for i in maps.get(namespace="apps", label_selector="x=y").to_dict()["items"]] == ["c"]
    maps.delete(namespace="apps", name="c")
    with pytest.raises(NotFoundError):
        maps.get(namespace="apps", name="c")


def test_eso_stand_in_syncs_and_reports_reasons(api: KubeApiDouble, client: dynamic.DynamicClient):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_manifests import build_objects
    from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import resolve_settings

    ns(client, "app")
    sync = [{"name": "ok", "namespace": "app", "data": [{"key": "URL", "remote_key": "pg", "property": "url"}]},
            {"name": "bad", "namespace": "app", "data": [{"key": "X", "remote_key": "pg", "property": "nope"}]}]
    for obj in build_objects(resolve_settings({}, {"sync": sync})):
        client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]).server_side_apply(
            namespace=obj["metadata"].get("namespace"), body=obj, field_manager="t")
    client.resources.get(api_version="v1", kind="Secret").create(
        namespace="secrets", body={"metadata": {"name": "pg"}, "stringData": {"url": "postgresql://fake"}})
    deadline = time.monotonic() + 5
    es = client.resources.get(api_version="external-secrets.io/v1", kind="ExternalSecret")
    while time.monotonic() < deadline:
        conditions = {o["metadata"]["name"]: (o.get("status") or {}).get("conditions") for o in es.get(namespace="app").to_dict()["items"]}
        if conditions.get("bad") and (conditions.get("ok") or [{}])[0].get("status") == "True":
            break
        time.sleep(0.05)
    assert conditions["ok"][0]["status"] == "True"
    assert conditions["bad"][0]["reason"] == "SecretSyncedError" and "'nope'" in conditions["bad"][0]["message"]
    target = client.resources.get(api_version="v1", kind="Secret").get(namespace="app", name="ok").to_dict()
    assert base64.b64decode(target["data"]["URL"]) == b"postgresql://fake"
    assert target["metadata"]["ownerReferences"][0]["kind"] == "ExternalSecret"
