# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/_eso_gitops.py: the GitOps tree in memory, and planned as a change set (the real sops where it encrypts)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._changes import FileChange
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_gitops import (
    HEADER,
    GitopsChanges,
    flux_kustomizations,
    foreign_files,
    gitops_files,
    plan_gitops,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_manifests import build_objects, operator_objects
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_master_secrets import MasterSecret, load_master_secrets
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import ExternalSecretsError, Settings, resolve_settings
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from tests.integration.eso_support import JWT_KEY, SENTINELS, SYNC, open_sops, validate_manifest, write_master_secrets

VAULT = {"server": "https://vault.example.com", "role": "eso"}
INFISICAL = {"project_slug": "home-ops", "environment_slug": "prod"}
BASE = "kubernetes/apps/external-secrets"
MASTERS = f"{BASE}/store/master-secrets"


def settings(**options) -> Settings:
    return resolve_settings(options, {"sync": copy.deepcopy(SYNC)})


# ---------------------------------------------------------------------------- the tree in memory


@pytest.mark.parametrize("options", [{}, {"provider": "vault", "vault": VAULT}, {"provider": "infisical", "infisical": INFISICAL},
                                     {"create_target_namespaces": True}])
def test_every_emitted_manifest_matches_its_schema(options):
    resolved = settings(**options)
    master = MasterSecret("postgres-credentials", "x.sops.yaml", {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "postgres-credentials", "namespace": "secrets", "labels": {"a": "b"}},
        "stringData": {"url": "postgresql://fake"}})
    docs = build_objects(resolved) + operator_objects(resolved) + flux_kustomizations(resolved) + [master.manifest]
    plain, secret = gitops_files(resolved, [master])
    for content in plain.values():
        assert content.startswith(HEADER.encode())
        docs += [d for d in yaml.safe_load_all(content) if d]
    docs += list(secret.values())
    kinds = set()
    for doc in docs:
        validate_manifest(doc)
        kinds.add(doc["kind"])
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterSecretStore", "ExternalSecret", "Secret",
            "HelmRepository", "HelmRelease", "Kustomization"} <= kinds


def test_without_the_operator_the_store_depends_on_nothing():
    plain, _secret = gitops_files(settings(install_operator=False), [])
    assert not [path for path in plain if "/operator/" in path]
    ks = [d for d in yaml.safe_load_all(plain[f"{BASE}/ks.yaml"]) if d]
    assert [d["metadata"]["name"] for d in ks] == ["external-secrets-store"]
    assert "dependsOn" not in ks[0]["spec"]


def test_files_without_the_header_are_foreign():
    files = [FileChange(f"{BASE}/kustomization.yaml", False, "changed", before=b"resources:\n  - ./external-secrets/ks.yaml\n"),
             FileChange(f"{BASE}/ks.yaml", False, "changed", before=HEADER.encode() + b"---\n{}\n"),
             FileChange(f"{BASE}/store/rbac.yaml", False, "created"),
             FileChange(f"{MASTERS}/a.sops.yaml", True, "changed")]
    assert foreign_files(files) == [f"{BASE}/kustomization.yaml"]


# ---------------------------------------------------------------------------- planning with the real sops


@pytest.fixture
def sops(tmp_path: Path) -> Sops:
    generate_key_file(tmp_path / "age.key")
    door = open_sops(tmp_path, tmp_path / "age.key")
    write_master_secrets(door)
    return door


def plan(sops: Sops, prune: bool = False, **options) -> GitopsChanges:
    resolved = settings(**options)
    return plan_gitops(sops, resolved, load_master_secrets(sops, resolved), prune)


def reopened(sops: Sops) -> Sops:
    """A new run: nothing read before is remembered."""
    return Sops.open(sops.root, str(sops.root / "age.key"), sops.binary, environ={})


def test_first_run_creates_the_tree_and_the_next_finds_it_unchanged(sops: Sops):
    first = plan(sops)
    summary = first.summary()
    assert set(summary) == {"created", "updated", "unchanged", "removed", "stale"}
    assert len(summary["created"]) == 15 and summary["unchanged"] == 0 and first.changed
    names = ("jwt-signing-key", "postgres-credentials", "redis-credentials")
    assert [f.path for f in first.files if f.secret] == [f"{MASTERS}/{n}.sops.yaml" for n in names]
    diff = "".join(d["before"] + d["after"] for d in first.diff())
    assert "stringData.key" in diff and not [value for value in SENTINELS if value in diff]
    first.apply()
    assert (sops.root / f"{BASE}/store/kustomization.yaml").read_bytes().startswith(HEADER.encode())
    assert JWT_KEY.encode() not in (sops.root / f"{MASTERS}/jwt-signing-key.sops.yaml").read_bytes()
    again = plan(reopened(sops))
    assert again.summary() == {"created": [], "updated": [], "unchanged": 15, "removed": [], "stale": []}
    assert not again.changed


def test_a_changed_value_rewrites_one_secret_file_and_names_only_its_key(sops: Sops):
    plan(sops).apply()
    door = reopened(sops)
    write_master_secrets(door, {"kubernetes/secrets/auth.sops.yaml": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "jwt-signing-key"}, "stringData": {"key": "new-SENTINEL"}}]})
    changes = plan(door)
    assert changes.summary()["updated"] == [f"{MASTERS}/jwt-signing-key.sops.yaml"]
    changed = next(f for f in changes.files if f.state == "changed")
    assert changed.changed_keys == ["stringData.key"]
    assert "new-SENTINEL" not in str(changes.diff())
    before = sops.root.joinpath(changed.path).read_bytes()
    changes.apply()
    assert sops.root.joinpath(changed.path).read_bytes() != before
    assert door.status(changed.path).content != before  # the door read the new file afresh


def test_new_recipients_re_encrypt_without_a_key_change(sops: Sops, tmp_path: Path):
    plan(sops).apply()
    recipient = generate_key_file(tmp_path / "second.key")
    config = sops.config_path.read_text()
    sops.config_path.write_text(config.replace("age: ", f"age: {recipient},"))
    changes = plan(reopened(sops))
    names = ("jwt-signing-key", "postgres-credentials", "redis-credentials")
    assert changes.summary()["updated"] == [f"{MASTERS}/{n}.sops.yaml" for n in names]
    assert {d["after"] for d in changes.diff()} == {"(re-encrypted for new recipients)\n"}


def test_switching_provider_rewrites_only_the_store_file(sops: Sops):
    """The infisical settings wait in the vars; switching ``provider`` alone rewrites clustersecretstore.yaml, and
    neither an ExternalSecret nor a master secret is touched."""
    store = f"{BASE}/store/clustersecretstore.yaml"
    plan(sops, infisical=INFISICAL, vault=VAULT).apply()
    before = {path.relative_to(sops.root).as_posix(): path.read_bytes()
              for path in (sops.root / BASE).rglob("*") if path.is_file()}
    for provider in ("infisical", "vault", "kubernetes"):
        door = reopened(sops)
        changes = plan(door, provider=provider, infisical=INFISICAL, vault=VAULT)
        assert changes.summary() == {"created": [], "updated": [store], "unchanged": 14, "removed": [], "stale": []}
        assert [f.path for f in changes.files if f.state == "changed"] == [store]
        changes.apply()
        written = yaml.safe_load((sops.root / store).read_bytes())
        assert list(written["spec"]["provider"]) == [provider]
        assert not [value for value in SENTINELS if value in (sops.root / store).read_text()]
        after = {path.relative_to(sops.root).as_posix(): path.read_bytes()
                 for path in (sops.root / BASE).rglob("*") if path.is_file()}
        assert {path for path in after if after[path] != before[path]} == ({store} if provider != "kubernetes" else set())
    externalsecrets = sorted(path for path in before if "/externalsecrets/" in path)
    assert len(externalsecrets) == 2


def test_stale_files_are_kept_until_prune_is_asked(sops: Sops):
    plan(sops).apply()
    stale = f"{BASE}/store/externalsecrets/talent-mesh-auth.yaml"
    kept = plan(reopened(sops), sync=SYNC[:1])
    assert kept.summary()["stale"] == [stale] and kept.summary()["removed"] == []
    assert kept.summary()["updated"] == [f"{BASE}/store/kustomization.yaml"]
    kept.apply()
    assert (sops.root / stale).exists()
    pruned = plan(reopened(sops), prune=True, sync=SYNC[:1])
    assert pruned.summary()["removed"] == [stale] and pruned.summary()["stale"] == []
    assert pruned.changed
    assert {"before_header": stale, "after_header": f"{stale} (removed)", "before": "(file)\n", "after": ""} in pruned.diff()
    pruned.apply()
    assert not (sops.root / stale).exists()


def test_damaged_or_plaintext_copies_are_told_apart(sops: Sops):
    plan(sops).apply()
    damaged, plain = f"{MASTERS}/jwt-signing-key.sops.yaml", f"{MASTERS}/redis-credentials.sops.yaml"
    text = sops.root.joinpath(damaged).read_text()
    sops.root.joinpath(damaged).write_text(text.split("\nsops:", 1)[0] + "\n")
    with pytest.raises(ExternalSecretsError, match=f"{damaged}: looks like a damaged encrypted file"):
        plan(reopened(sops))
    sops.root.joinpath(damaged).unlink()
    sops.root.joinpath(plain).write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: redis-credentials\n")
    changes = plan(reopened(sops))
    assert changes.summary()["created"] == [damaged] and changes.summary()["updated"] == [plain]
    assert "(was not encrypted)" in next(f for f in changes.files if f.path == plain).changed_keys
    assert changes.warnings == [f"{plain} exists unencrypted in the repository; it will be replaced by its encrypted form"]


def test_a_path_without_a_creation_rule_is_named(sops: Sops):
    sops.config_path.write_text("creation_rules:\n  - path_regex: ^elsewhere/\n    age: age1xyz\n")
    with pytest.raises(ExternalSecretsError, match=f"{MASTERS}/jwt-signing-key.sops.yaml: no creation rule"):
        plan(reopened(sops))


def test_the_repositorys_own_app_stops_the_plan_before_any_secret_is_touched(sops: Sops, monkeypatch: pytest.MonkeyPatch):
    own = sops.root / BASE / "kustomization.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("resources:\n  - ./external-secrets/ks.yaml\n")
    resolved = settings()
    masters = load_master_secrets(sops, resolved)
    monkeypatch.setattr(Sops, "encrypt", lambda *_a, **_k: pytest.fail("nothing to encrypt"))
    with pytest.raises(ExternalSecretsError) as info:
        plan_gitops(sops, resolved, masters, prune=False)
    assert f"{BASE}: the repository has its own External Secrets app there: {BASE}/kustomization.yaml" in str(info.value)
    assert "nothing was written" in str(info.value)
