# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The External Secrets GitOps tree, planned as a change set: Flux Kustomizations, the operator's HelmRelease,
the store, the ExternalSecrets, and the master secrets re-encrypted with the repository's .sops.yaml.

``gitops_files`` renders the tree in memory. ``plan_gitops`` compares it with the repository: plain files by
their bytes, the master secrets through ``_secret_plan.plan_secret_files`` (the planner configure uses: each file
read once, decrypted at most once, rewritten only when its data or its recipients differ, damaged files named).
Files of the tree that are no longer wanted are removed when ``prune`` is asked, else listed as stale. The
result is a ``GitopsChanges``: check mode is the plan, ``apply()`` writes it atomically.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._changes import ChangeSet, FileChange, plan_plain_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_manifests import (
    ESO_API,
    build_objects,
    external_secret_object,
    object_metadata,
    operator_objects,
    rbac_objects,
    store_object,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_master_secrets import MasterSecret
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import ExternalSecretsError, Settings, SyncItem
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import stale_temp_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_plan import plan_secret_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops

HEADER = "# Managed by cluster.secrets (role external_secrets); changes here are overwritten on the next run.\n"
# Folders of the tree whose files come and go with the settings (one file per master secret or ExternalSecret).
MANAGED_FOLDERS = ("store/master-secrets", "store/externalsecrets")


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
        "metadata": object_metadata("external-secrets-store", settings.flux_namespace),
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
            "metadata": object_metadata("external-secrets", settings.flux_namespace),
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


def secret_plaintext(manifest: dict[str, Any]) -> bytes:
    """A master secret's plaintext as the GitOps tree holds it (before sops encrypts it)."""
    return yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False, explicit_start=True, width=1000).encode()


def foreign_files(files: Iterable[FileChange]) -> list[str]:
    """Planned plain files that exist without this role's header: someone else writes them."""
    return sorted(f.path for f in files if not f.secret and f.before is not None and not f.before.startswith(HEADER.encode()))


def stale_files(root: Path, settings: Settings, wanted: Iterable[str]) -> list[str]:
    """Files in the tree's managed folders that the settings no longer produce."""
    keep = set(wanted)
    base = settings.gitops_path.strip("/")
    stale = []
    for folder in MANAGED_FOLDERS:
        directory = root / base / folder
        if directory.is_dir():
            stale += [p.relative_to(root).as_posix() for p in sorted(directory.iterdir())
                      if p.is_file() and p.suffix in (".yaml", ".yml") and p.relative_to(root).as_posix() not in keep]
    return stale


@dataclass(kw_only=True)
class GitopsChanges(ChangeSet):
    """The GitOps tree's change set; ``stale`` are files no longer managed and kept (prune was not asked)."""

    sops: Sops | None = None
    stale: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    gitops_path: str = ""
    # The master secrets' new plaintext by path, in memory only (configure dates their values in .credential-dates.yaml).
    plaintexts: dict[str, bytes] = field(default_factory=dict, repr=False)

    def message(self, check_mode: bool) -> str:
        """One line: what was (or would be) written under the GitOps folder."""
        summary, verb = self.summary(), "would be" if check_mode else "were"
        return (f"{len(summary['created'])} file(s) {verb} created, {len(summary['updated'])} updated, "
                f"{summary['unchanged']} unchanged, {len(summary['removed'])} removed under {self.gitops_path}")

    def stale_warnings(self) -> list[str]:
        return [f"{path} is no longer managed; set external_secrets_prune to delete it" for path in self.stale]

    def summary(self) -> dict[str, Any]:
        return {"created": self.paths("created"), "updated": self.paths("changed"),
                "unchanged": len(self.paths("unchanged")), "removed": self.paths("removed"), "stale": list(self.stale)}

    def apply(self) -> list[FileChange]:
        """Write (and remove) what the plan says; the ``Sops`` of the plan reads the new files afresh."""
        written = super().apply()
        if self.sops is not None:
            for item in self.files:
                if item.state != "unchanged":
                    self.sops.forget(item.path)
        return written


def plan_gitops(sops: Sops, settings: Settings, masters: list[MasterSecret], prune: bool) -> GitopsChanges:
    """What writing the tree under ``settings.gitops_path`` would change; nothing is written.

    ``sops`` is the repository's open door: its creation rules encrypt the master secrets (a run that is about
    to write .sops.yaml hands it over with ``use_config``), its file states are read once.
    """
    root = sops.root
    plain, secret = gitops_files(settings, masters)
    files = [plan_plain_file(root, path, content) for path, content in sorted(plain.items())]
    foreign = foreign_files(files)
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
    warnings: list[str] = []
    desired = {path: secret_plaintext(manifest) for path, manifest in secret.items()}
    files += plan_secret_files(sops, desired, error=ExternalSecretsError, warnings=warnings)
    stale = stale_files(root, settings, [*plain, *secret])
    if prune:
        files += [FileChange(path, path.endswith((".sops.yaml", ".sops.yml")), "removed") for path in stale]
    files.sort(key=lambda f: f.path)
    return GitopsChanges(root, files, stale_temps=stale_temp_files(root / f.path for f in files), sops=sops,
                         stale=[] if prune else stale, warnings=warnings, gitops_path=settings.gitops_path,
                         plaintexts=desired)
