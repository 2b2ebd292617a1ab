# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""External Secrets master secrets: the SOPS files the glob matches, decrypted in memory into Secret manifests.

Every file is read once and decrypted once, through the repository's ``Sops`` (several at a time). The
Secrets are placed in the secrets namespace with the managed-by labels; every problem of every file is
reported at once, naming files, documents and keys, never values. Nothing here writes a file.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_manifests import LABELS, object_metadata
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import ExternalSecretsError, Settings
from ansible_collections.cluster.secrets.plugins.plugin_utils._parallel import parallel_map
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops, SopsToolError
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import damaged_secret_file

SECRET_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass
class MasterSecret:
    name: str
    source: str
    manifest: dict[str, Any] = field(repr=False)


def master_secret_files(root: Path, pattern: str, exclude: str) -> list[str]:
    """Files the glob matches, relative to root, outside the GitOps output folder."""
    found = []
    for path in sorted(root.glob(pattern)):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not (rel + "/").startswith(exclude.rstrip("/") + "/"):
            found.append(rel)
    return found


def _matches(relpath: str, settings: Settings) -> bool:
    """Whether a path is one the master glob names (as ``master_secret_files`` finds them on disk)."""
    exclude = settings.gitops_path.rstrip("/") + "/"
    return bool(_glob_regex(settings.master_glob).fullmatch(relpath)) and not (relpath + "/").startswith(exclude)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``Path.glob``'s pattern as a regular expression: ``**/`` any folders, ``*`` and ``?`` within one name."""
    parts = re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]*\])", pattern)
    table = {"**/": "(?:[^/]+/)*", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(table.get(part) or (part if part.startswith("[") else re.escape(part)) for part in parts))


def decrypt_master_file(sops: Sops, relpath: str) -> bytes:
    """The plaintext of one master secret file; the error says why not and what to do."""
    status = sops.status(relpath)
    if status.content is None:
        raise ExternalSecretsError(f"{relpath}: the file disappeared while it was read; run again")
    if not status.encrypted:
        damage = damaged_secret_file(status.content, status.fmt)
        if damage:
            raise ExternalSecretsError(f"{relpath}: {damage}: restore it from git (`git checkout -- {relpath}`)")
        raise ExternalSecretsError(f"{relpath}: is not SOPS-encrypted; encrypt it (sops encrypt -i {relpath}) before it is "
                                   "used as a master secret")
    if not sops.keys.identities:
        raise ExternalSecretsError(f"{relpath}: cannot decrypt it: no age key found (looked in: {sops.keys.where()})")
    try:
        return sops.decrypt(relpath)
    except SopsToolError as exc:
        raise ExternalSecretsError(f"{exc} (age keys looked up in: {sops.keys.where()})") from None


def load_master_secrets(sops: Sops, settings: Settings, held: Mapping[str, bytes] | None = None) -> list[MasterSecret]:
    """Decrypt every matched file in memory and return its Secrets, placed in the secrets namespace, sorted by name.

    ``held``: plaintext the caller has in memory by path (configure's rendered secrets, written or, in check mode,
    only planned); those files are taken from it, neither read nor decrypted, and count even when not on disk yet.
    """
    held = held or {}
    files = sorted({*master_secret_files(sops.root, settings.master_glob, settings.gitops_path),
                    *(path for path in held if _matches(path, settings))})
    problems: list[str] = []

    def decrypt(relpath: str) -> tuple[str, bytes | ExternalSecretsError]:
        if relpath in held:
            return relpath, held[relpath]
        try:
            return relpath, decrypt_master_file(sops, relpath)
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
            problem = _secret_problem(doc, where, settings, secrets)
            if problem:
                problems.append(problem)
                continue
            problems += [f"{where}: {section} must be a mapping" for section in ("data", "stringData")
                         if doc.get(section) is not None and not isinstance(doc[section], dict)]
            name = str(doc["metadata"]["name"])
            secrets[name] = MasterSecret(name, relpath, secret_manifest(doc, name, settings.namespace))
    if problems:
        raise ExternalSecretsError("master secrets: " + str(len(problems)) + " problem(s)\n" + "\n".join(f"  - {p}" for p in problems))
    return [secrets[name] for name in sorted(secrets)]


def _secret_problem(doc: Any, where: str, settings: Settings, seen: dict[str, MasterSecret]) -> str | None:
    """Why a decrypted document cannot be a master secret, if it cannot."""
    if not isinstance(doc, dict) or doc.get("kind") != "Secret" or doc.get("apiVersion") != "v1":
        return f"{where}: is not a Kubernetes Secret (apiVersion: v1, kind: Secret)"
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        return f"{where}: metadata must be a mapping"
    name = str(meta.get("name") or "")
    if not SECRET_NAME_RE.match(name):
        return f"{where}: metadata.name {name!r} is not a valid Secret name"
    if meta.get("namespace") not in (None, settings.namespace):
        return (f"{where}: metadata.namespace is {meta['namespace']!r}, but master secrets live in "
                f"{settings.namespace!r}; remove the namespace or change it")
    if name in seen:
        return f"{where}: the Secret {name!r} is also defined in {seen[name].source}"
    for part in ("labels", "annotations"):
        if meta.get(part) is not None and not isinstance(meta[part], dict):
            return f"{where}: metadata.{part} must be a mapping"
    return None


def secret_manifest(doc: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    """The Secret as the store serves it: its labels with ours, its annotations, type, data and stringData."""
    meta = doc.get("metadata") or {}
    manifest: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": object_metadata(name, namespace)}
    labels = meta.get("labels") or {}
    manifest["metadata"]["labels"] = {**{str(k): str(v) for k, v in labels.items()}, **LABELS}
    if meta.get("annotations"):
        manifest["metadata"]["annotations"] = {str(k): str(v) for k, v in meta["annotations"].items()}
    manifest["type"] = str(doc.get("type") or "Opaque")
    for section in ("data", "stringData"):
        if isinstance(doc.get(section), dict) and doc[section]:
            manifest[section] = {str(k): "" if v is None else str(v) for k, v in doc[section].items()}
    return manifest
