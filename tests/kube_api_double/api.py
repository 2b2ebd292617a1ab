# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST DOUBLE: an in-memory Kubernetes API server over HTTP (see the package docstring). Never used by the product."""

from __future__ import annotations

import base64
import copy
import datetime
import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False
    has_generation: bool = False

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()


VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
ESO_GROUP = "external-secrets.io"
RESOURCE_TYPES = [
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), has_status=True),
    ResourceType("", "v1", "secrets", "Secret", True),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False),
    ResourceType(ESO_GROUP, "v1", "clustersecretstores", "ClusterSecretStore", False, ("css",), True, True),
    ResourceType(ESO_GROUP, "v1", "secretstores", "SecretStore", True, ("ss",), True, True),
    ResourceType(ESO_GROUP, "v1", "externalsecrets", "ExternalSecret", True, ("es",), True, True),
]
ROOT_CA = "-----BEGIN CERTIFICATE-----\nTEST-DOUBLE-CA\n-----END CERTIFICATE-----\n"
Key = tuple[str, str, str, str]  # group, plural, namespace ("" when cluster-scoped), name


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "details": self.details, "code": self.code}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _field_paths(value: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Leaf paths of an applied configuration (lists count as one leaf, as atomic lists do)."""
    if isinstance(value, dict) and value:
        paths: set[tuple[str, ...]] = set()
        for key, item in value.items():
            paths |= _field_paths(item, (*prefix, key))
        return paths
    return {prefix}


def _remove_path(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = obj
    parents = []
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        parents.append((node, key))
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, key in reversed(parents):  # drop maps the removal left empty
        if parent[key] == {}:
            del parent[key]


def _deep_merge(target: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    for key, value in applied.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def fold_string_data(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server does with Secret.stringData: base64 into data, and stringData is gone."""
    if obj.get("kind") == "Secret" and "stringData" in obj:
        data = obj.setdefault("data", {}) or {}
        for key, value in (obj.pop("stringData") or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
    return obj


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class Store:
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    applied: dict[tuple[Key, str], dict[str, Any]] = field(default_factory=dict)


class KubeApiDouble:
    """TEST DOUBLE of a Kubernetes API server. Start it, point a kubeconfig at :attr:`url`, inspect :meth:`state`."""

    def __init__(self, reconcile_interval: float = 0.1) -> None:
        self.types = {(t.group, t.plural): t for t in RESOURCE_TYPES}
        self.store = Store()
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []
        self._versions = itertools.count(1000)
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.reconcile_interval = reconcile_interval
        from tests.kube_api_double.eso import EsoReconciler

        self.eso = EsoReconciler(self)
        for name in ("default", "kube-system", "kube-public"):
            self.create(self.type_for("", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> KubeApiDouble:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        serve = threading.Thread(target=self._server.serve_forever, name="kube-api-double", daemon=True)
        reconcile = threading.Thread(target=self._reconcile_loop, name="eso-double", daemon=True)
        self._threads = [serve, reconcile]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self.reconcile_interval):
            self.eso.reconcile()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the test double first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_kubeconfig(self, path: Path, context: str = "test-double") -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "test-double", "cluster": {"server": self.url}}],
            "users": [{"name": "test-double", "user": {"token": "test-double-token"}}],
            "contexts": [{"name": context, "context": {"cluster": "test-double", "user": "test-double"}}],
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    # ------------------------------------------------------------------ storage API (also used by tests and the reconciler)

    def type_for(self, group: str, plural: str) -> ResourceType:
        try:
            return self.types[(group, plural)]
        except KeyError:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group}/{plural})") from None

    def kind_type(self, api_version: str, kind: str) -> ResourceType:
        for rtype in RESOURCE_TYPES:
            if rtype.group_version == api_version and rtype.kind == kind:
                return rtype
        raise KeyError(f"{api_version} {kind}")

    def state(self) -> dict[Key, dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.store.objects)

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.store.objects.get((rtype.group, rtype.plural, namespace if rtype.namespaced else "", name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{name}" not found',
                               {"name": name, "group": rtype.group, "kind": rtype.plural})
            return copy.deepcopy(obj)

    def find(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.get(self.kind_type(api_version, kind), namespace, name)
        except (ApiError, KeyError):
            return None

    def list(self, rtype: ResourceType, namespace: str | None = None, label_selector: str = "") -> list[dict[str, Any]]:
        with self.lock:
            items = [copy.deepcopy(obj) for (group, plural, ns, _name), obj in sorted(self.store.objects.items())
                     if (group, plural) == (rtype.group, rtype.plural) and (namespace is None or ns == namespace)
                     and label_selector_matches(label_selector, obj["metadata"].get("labels") or {})]
        return items

    def _key(self, rtype: ResourceType, obj: dict[str, Any], namespace: str | None) -> Key:
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{rtype.kind} is invalid: metadata.name: Required value")
        if rtype.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") not in (None, ns):
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = ns
            if ("", "namespaces", "", ns) not in self.store.objects:
                raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
            return (rtype.group, rtype.plural, ns, name)
        meta.pop("namespace", None)
        return (rtype.group, rtype.plural, "", name)

    def _commit(self, rtype: ResourceType, key: Key, new: dict[str, Any], old: dict[str, Any] | None, dry_run: bool) -> dict[str, Any]:
        new["apiVersion"], new["kind"] = rtype.group_version, rtype.kind
        fold_string_data(new)
        meta = new["metadata"]
        if rtype.kind == "Secret":
            new.setdefault("type", "Opaque")
        if rtype.kind == "Namespace":
            new.setdefault("spec", {"finalizers": ["kubernetes"]})
            new["status"] = {"phase": "Active"}
        if old is None:
            meta.update({"uid": str(uuid.uuid4()), "creationTimestamp": _now()})
            if rtype.has_generation:
                meta["generation"] = 1
        else:
            for keep in ("uid", "creationTimestamp", "generation", "resourceVersion"):
                if keep in old["metadata"]:
                    meta[keep] = old["metadata"][keep]
            if rtype.has_status:
                new["status"] = copy.deepcopy(old.get("status")) if "status" in old else new.pop("status", None)
                if new.get("status") is None:
                    new.pop("status", None)
            if new == old:
                return copy.deepcopy(old)  # a no-op write keeps the resourceVersion
            if rtype.has_generation and _spec_of(new) != _spec_of(old):
                meta["generation"] = old["metadata"].get("generation", 1) + 1
        if dry_run:
            return copy.deepcopy(new)
        meta["resourceVersion"] = str(next(self._versions))
        self.store.objects[key] = new
        if rtype.kind == "Namespace" and old is None:
            ca = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"ca.crt": ROOT_CA},
                  "metadata": {"name": "kube-root-ca.crt", "namespace": meta["name"]}}
            self.create(self.type_for("", "configmaps"), ca)
        return copy.deepcopy(new)

    def create(self, rtype: ResourceType, body: dict[str, Any], namespace: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        with self.lock:
            obj = copy.deepcopy(body)
            key = self._key(rtype, obj, namespace)
            if key in self.store.objects:
                raise ApiError(409, "AlreadyExists", f'{rtype.plural} "{key[3]}" already exists', {"name": key[3], "kind": rtype.plural})
            obj.get("metadata", {}).pop("resourceVersion", None)
            if rtype.has_status:
                obj.pop("status", None)
            return self._commit(rtype, key, obj, None, dry_run)

    def replace(self, rtype: ResourceType, body: dict[str, Any], namespace: str | None, name: str, dry_run: bool = False) -> dict[str, Any]:
        with self.lock:
            obj = copy.deepcopy(body)
            key = self._key(rtype, obj, namespace)
            old = self.store.objects.get(key)
            if old is None:
                raise ApiError(404, "NotFound", f'{rtype.plural} "{name}" not found', {"name": name, "kind": rtype.plural})
            wanted = obj["metadata"].get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rtype.plural} "{name}": the object has been modified')
            return self._commit(rtype, key, obj, old, dry_run)

    def patch(self, rtype: ResourceType, patch: dict[str, Any], namespace: str | None, name: str, content_type: str,
              manager: str, dry_run: bool = False) -> dict[str, Any]:
        with self.lock:
            probe = {"metadata": {"name": name, "namespace": namespace}} if rtype.namespaced else {"metadata": {"name": name}}
            key = self._key(rtype, probe, namespace)
            old = self.store.objects.get(key)
            if content_type.startswith("application/apply-patch"):
                applied = fold_string_data(copy.deepcopy(patch))
                if rtype.has_status:
                    applied.pop("status", None)
                applied.setdefault("metadata", {})["name"] = name
                if rtype.namespaced:
                    applied["metadata"]["namespace"] = key[2]
                base = copy.deepcopy(old) if old is not None else {}
                previous = self.store.applied.get((key, manager))
                if previous is not None:
                    for path in _field_paths(previous) - _field_paths(applied):
                        _remove_path(base, path)
                new = _deep_merge(base, applied)
                result = self._commit(rtype, key, new, old, dry_run)
                if not dry_run:
                    self.store.applied[(key, manager)] = applied
                return result
            if old is None:
                raise ApiError(404, "NotFound", f'{rtype.plural} "{name}" not found', {"name": name, "kind": rtype.plural})
            if content_type.startswith(("application/merge-patch", "application/strategic-merge-patch")):
                new = merge_patch(old, patch)
                new["metadata"]["name"] = name
                return self._commit(rtype, key, fold_string_data(new), old, dry_run)
            raise ApiError(415, "UnsupportedMediaType", f"the test double does not implement {content_type}")

    def delete(self, rtype: ResourceType, namespace: str | None, name: str, dry_run: bool = False) -> dict[str, Any]:
        with self.lock:
            obj = self.get(rtype, namespace or "", name)
            if dry_run:
                return obj
            key = (rtype.group, rtype.plural, namespace if rtype.namespaced else "", name)
            del self.store.objects[key]
            for applied_key in [k for k in self.store.applied if k[0] == key]:
                del self.store.applied[applied_key]
            if rtype.kind == "Namespace":  # the namespace controller, done at once
                for other in [k for k in self.store.objects if k[2] == name]:
                    del self.store.objects[other]
            return obj

    def write_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        """What a controller does through the status subresource; a write only when the status changes."""
        with self.lock:
            rtype = self.kind_type(obj["apiVersion"], obj["kind"])
            key = (rtype.group, rtype.plural, obj["metadata"].get("namespace", "") if rtype.namespaced else "", obj["metadata"]["name"])
            current = self.store.objects.get(key)
            if current is None or current.get("status") == status:
                return
            current["status"] = copy.deepcopy(status)
            current["metadata"]["resourceVersion"] = str(next(self._versions))

    # ------------------------------------------------------------------ discovery

    def discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            return {"major": "1", "minor": "33", "gitVersion": "v1.33.0-test-double", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = sorted({(t.group, t.version) for t in RESOURCE_TYPES if t.group})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}} for g, v in groups]}
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "v1"] and len(parts) == 2:
            return self._resource_list("", "v1")
        if parts[0] == "apis" and len(parts) == 3:
            return self._resource_list(parts[1], parts[2])
        if parts[0] == "apis" and len(parts) == 2 and any(t.group == parts[1] for t in RESOURCE_TYPES):
            version = next(t.version for t in RESOURCE_TYPES if t.group == parts[1])
            gv = {"groupVersion": f"{parts[1]}/{version}", "version": version}
            return {"kind": "APIGroup", "apiVersion": "v1", "name": parts[1], "versions": [gv], "preferredVersion": gv}
        return None

    def _resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        types = [t for t in RESOURCE_TYPES if (t.group, t.version) == (group, version)]
        if not types:
            return None
        resources = []
        for t in types:
            verbs = ["create"] if t.plural.startswith("selfsubject") else VERBS
            resources.append({"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
                              "verbs": verbs, "shortNames": list(t.short_names)})
            if t.has_status:
                resources.append({"name": f"{t.plural}/status", "singularName": "", "namespaced": t.namespaced,
                                  "kind": t.kind, "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": types[0].group_version, "resources": resources}


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _handler_for(api: KubeApiDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return {}
            try:
                return yaml.safe_load(raw) or {}
            except yaml.YAMLError:
                raise ApiError(400, "BadRequest", "the request body does not parse") from None

        def _route(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            api.requests.append((method, url.path + (f"?{url.query}" if url.query else "")))
            try:
                body = self._body() if method in ("POST", "PUT", "PATCH", "DELETE") else None
                if method == "GET":
                    found = api.discovery(url.path.rstrip("/") or "/")
                    if found is not None:
                        self._send(200, found)
                        return
                code, answer = self._dispatch(method, url.path, query, body)
                self._send(code, answer)
            except ApiError as exc:
                self._send(exc.code, exc.status())

        def _dispatch(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
            parts = path.strip("/").split("/")
            if parts[0] == "api" and len(parts) >= 3:
                group, rest = "", parts[2:]
            elif parts[0] == "apis" and len(parts) >= 4:
                group, rest = parts[1], parts[3:]
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            namespace = None
            if rest[0] == "namespaces" and len(rest) >= 3 and (group, rest[2]) in api.types:
                namespace, rest = rest[1], rest[2:]
            rtype = api.type_for(group, rest[0])
            name = rest[1] if len(rest) > 1 else None
            subresource = rest[2] if len(rest) > 2 else None
            dry_run = query.get("dryRun") == "All"
            if subresource not in (None, "status"):
                raise ApiError(404, "NotFound", f"the test double has no {subresource} subresource")
            if method == "GET" and name is None:
                items = api.list(rtype, namespace, query.get("labelSelector", ""))
                selector = query.get("fieldSelector", "")
                for term in filter(None, selector.split(",")):
                    field_name, _sep, value = term.partition("=")
                    attr = field_name.split(".")[-1]
                    items = [i for i in items if i["metadata"].get(attr) == value.lstrip("=")]
                return 200, {"kind": f"{rtype.kind}List", "apiVersion": rtype.group_version,
                             "metadata": {"resourceVersion": str(next(api._versions))}, "items": items}
            if method == "GET":
                return 200, api.get(rtype, namespace or "", name)
            if method == "POST" and name is None:
                return 201, api.create(rtype, body, namespace, dry_run)
            if method == "PUT" and name:
                return 200, api.replace(rtype, body, namespace, name, dry_run)
            if method == "PATCH" and name:
                content_type = self.headers.get("Content-Type", "")
                manager = query.get("fieldManager", "")
                if content_type.startswith("application/apply-patch") and not manager:
                    raise ApiError(422, "Invalid", "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value")
                return 200, api.patch(rtype, body, namespace, name, content_type, manager, dry_run)
            if method == "DELETE" and name:
                api.delete(rtype, namespace, name, dry_run)
                return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {"name": name, "group": rtype.group, "kind": rtype.plural}}
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler
