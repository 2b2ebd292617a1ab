# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the external_secrets tests: master secrets encrypted with the real sops, cluster.yaml settings."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tests.conftest import Repo, sops_binary

if TYPE_CHECKING:
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops

# Fake values, long and distinctive so a leak anywhere in the output is easy to spot.
DATABASE_URL = "postgresql://app:Pa55-db-SENTINEL-4711@db.internal:5432/app"
REDIS_PASSWORD = "redis-SENTINEL-0815-secret"
JWT_KEY = "jwt-signing-SENTINEL-key-9f8e7d"
SENTINELS = (DATABASE_URL, "Pa55-db-SENTINEL-4711", REDIS_PASSWORD, JWT_KEY)

MASTER_SECRETS = {
    "kubernetes/secrets/databases.sops.yaml": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "postgres-credentials"},
         "stringData": {"url": DATABASE_URL, "username": "app"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "redis-credentials", "namespace": "secrets"},
         "stringData": {"password": REDIS_PASSWORD}},
    ],
    "kubernetes/secrets/auth.sops.yaml": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "jwt-signing-key"}, "stringData": {"key": JWT_KEY}},
    ],
}

SYNC = [
    {"name": "db-credentials", "namespace": "talent-mesh",
     "data": [{"key": "DATABASE_URL", "remote_key": "postgres-credentials", "property": "url"}]},
    {"name": "auth", "namespace": "talent-mesh", "target": "auth-env", "refresh_interval": "15m",
     "data": [{"key": "JWT_KEY", "remote_key": "jwt-signing-key", "property": "key"}],
     "extract": ["redis-credentials"]},
]


def open_sops(root: Path, key_file: Path) -> Sops:
    """The repository's ``Sops`` with the real binary and only ``key_file``; .sops.yaml is written for it when absent."""
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config

    sops = Sops.open(root, str(key_file), sops_binary(), environ={})
    if not sops.config_path.exists():
        sops.config_path.write_text(default_sops_config(sops.keys.recipients), encoding="utf-8")
    return sops


def encrypt_master_secrets(repo: Repo, files: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """Write .sops.yaml for the repo's key and the master secrets, encrypted by the real sops (plaintext on a pipe)."""
    write_master_secrets(open_sops(repo.root, repo.key_file), files)


def write_master_secrets(sops: Sops, files: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """The master secrets (``MASTER_SECRETS`` unless given), encrypted through ``sops``."""
    for relpath, docs in (files or MASTER_SECRETS).items():
        plaintext = yaml.safe_dump_all(docs, sort_keys=False).encode()
        target = sops.root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(sops.encrypt(plaintext, relpath))
        sops.forget(relpath)


def set_cluster_section(repo: Repo, section: dict[str, Any]) -> None:
    """Put an `external_secrets` mapping at the end of cluster.yaml (replacing an earlier one)."""
    path = repo.root / "cluster.yaml"
    text = path.read_text(encoding="utf-8").split("\nexternal_secrets:", 1)[0].rstrip("\n") + "\n"
    path.write_text(text + yaml.safe_dump({"external_secrets": section}, sort_keys=False), encoding="utf-8")


def yaml_docs(text: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def leaks(output: str) -> Iterator[str]:
    """Every sentinel value (or its base64 form) that appears in the output."""
    import base64

    for value in SENTINELS:
        for form in (value, base64.b64encode(value.encode()).decode()):
            if form in output:
                yield form


# ---------------------------------------------------------------------------- schema validation

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def _closed(schema: Any) -> Any:
    """Unknown fields become errors, as with kubectl's strict field validation."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for name in ("external-secrets.io_v1.json", "fluxcd.json"):
        schemas.update(json.loads((SCHEMAS / name).read_text(encoding="utf-8"))["schemas"])
    return {key: _closed(value) for key, value in schemas.items()}


def validate_manifest(doc: dict[str, Any]) -> None:
    """Raise AssertionError when the manifest does not match its Kubernetes or CRD schema."""
    import jsonschema
    import kubernetes_validate

    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    if api_version == "kustomize.config.k8s.io/v1beta1":
        assert kind == "Kustomization" and isinstance(doc.get("resources"), list) and doc["resources"], doc
        return
    key = f"{api_version}/{kind}"
    if key in crd_schemas():
        errors = sorted(jsonschema.Draft7Validator(crd_schemas()[key]).iter_errors(doc), key=str)
        assert not errors, f"{key} {doc['metadata'].get('name')}: " + "; ".join(e.message for e in errors)
        return
    assert "/" not in api_version or api_version.endswith(".k8s.io/v1"), f"no schema for {key}"
    try:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(f"{key} {doc['metadata'].get('name')}: {exc.message}") from None
