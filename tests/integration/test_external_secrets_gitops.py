# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""external_secrets in gitops mode: real ansible-playbook and real sops on temporary repositories."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from tests.conftest import Repo, recap_changed
from tests.integration.eso_support import (
    DATABASE_URL,
    JWT_KEY,
    REDIS_PASSWORD,
    SYNC,
    encrypt_master_secrets,
    leaks,
    set_cluster_section,
    validate_manifest,
    yaml_docs,
)

BASE = "kubernetes/apps/external-secrets"
SECTION = {"enabled": True, "mode": "gitops", "sync": SYNC}


@pytest.fixture
def gitops_repo(make_repo: Callable[..., Repo]) -> Repo:
    repo = make_repo()
    encrypt_master_secrets(repo)
    set_cluster_section(repo, SECTION)
    return repo


def written(repo: Repo) -> dict[str, bytes]:
    return {path: content for path, content in repo.snapshot().items() if path.startswith(BASE)}


def test_manifests_parse_validate_and_secrets_stay_encrypted(gitops_repo: Repo):
    first = gitops_repo.playbook("eso", "--diff")
    assert recap_changed(first.stdout) == 1
    assert list(leaks(first.stdout)) == []
    files = written(gitops_repo)
    secret_files = sorted(p for p in files if p.endswith(".sops.yaml"))
    assert secret_files == [f"{BASE}/store/master-secrets/{n}.sops.yaml"
                            for n in ("jwt-signing-key", "postgres-credentials", "redis-credentials")]
    for path, content in files.items():
        text = content.decode()
        assert list(leaks(text)) == [], path
        docs = yaml_docs(text)
        if path in secret_files:
            assert docs[0]["sops"]["age"] and all(v.startswith("ENC[") for v in docs[0]["stringData"].values())
            docs = yaml_docs(gitops_repo.decrypt(path))
        for doc in docs:
            validate_manifest(doc)
    store = yaml_docs(gitops_repo.decrypt(f"{BASE}/store/master-secrets/postgres-credentials.sops.yaml"))[0]
    assert store["metadata"]["namespace"] == "secrets"
    assert store["stringData"] == {"url": DATABASE_URL, "username": "app"}
    assert yaml_docs(gitops_repo.decrypt(f"{BASE}/store/master-secrets/jwt-signing-key.sops.yaml"))[0]["stringData"] == {"key": JWT_KEY}
    assert yaml_docs(gitops_repo.decrypt(f"{BASE}/store/master-secrets/redis-credentials.sops.yaml"))[0]["stringData"] == \
        {"password": REDIS_PASSWORD}
    # Every file a kustomization lists exists, and every file is listed.
    listed = set()
    for kustomization in (p for p in files if p.endswith("/kustomization.yaml")):
        folder = kustomization.rsplit("/", 1)[0]
        for resource in yaml_docs(files[kustomization].decode())[0]["resources"]:
            listed.add(f"{folder}/{resource.removeprefix('./')}")
    assert listed == set(files) - {p for p in files if p.endswith("/kustomization.yaml")}
    helm = yaml_docs(files[f"{BASE}/operator/helmrelease.yaml"].decode())[0]
    assert helm["spec"]["chart"]["spec"]["chart"] == "external-secrets"
    ks = yaml_docs(files[f"{BASE}/ks.yaml"].decode())
    assert ks[1]["spec"]["decryption"] == {"provider": "sops", "secretRef": {"name": "sops-age"}}
    assert ks[1]["spec"]["dependsOn"] == [{"name": "external-secrets"}]

    before = gitops_repo.snapshot()
    second = gitops_repo.playbook("eso")
    assert recap_changed(second.stdout) == 0
    assert gitops_repo.snapshot() == before


def test_changed_value_rewrites_one_file_and_check_mode_writes_nothing(gitops_repo: Repo):
    gitops_repo.playbook("eso")
    before = gitops_repo.snapshot()
    encrypt_master_secrets(gitops_repo, {"kubernetes/secrets/auth.sops.yaml": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "jwt-signing-key"}, "stringData": {"key": "new-SENTINEL-value"}}]})
    source_changed = gitops_repo.snapshot()
    check = gitops_repo.playbook("eso", "--check", "--diff")
    assert recap_changed(check.stdout) == 1
    assert gitops_repo.snapshot() == source_changed
    assert "stringData.key" in check.stdout and "new-SENTINEL-value" not in check.stdout
    gitops_repo.playbook("eso")
    after = gitops_repo.snapshot()
    changed = sorted(p for p in after if after[p] != before.get(p))
    assert changed == [f"{BASE}/store/master-secrets/jwt-signing-key.sops.yaml", "kubernetes/secrets/auth.sops.yaml"]
    assert yaml_docs(gitops_repo.decrypt(changed[0]))[0]["stringData"] == {"key": "new-SENTINEL-value"}


def test_switching_to_vault_rewrites_only_the_store(gitops_repo: Repo):
    gitops_repo.playbook("eso")
    before = written(gitops_repo)
    set_cluster_section(gitops_repo, {**SECTION, "provider": "vault", "vault": {"server": "https://vault.example.com"}})
    gitops_repo.playbook("eso")
    after = written(gitops_repo)
    assert sorted(p for p in after if after[p] != before.get(p)) == [f"{BASE}/store/clustersecretstore.yaml"]
    store = yaml_docs(after[f"{BASE}/store/clustersecretstore.yaml"].decode())[0]
    validate_manifest(store)
    assert store["spec"]["provider"]["vault"]["server"] == "https://vault.example.com"


def test_stale_files_are_kept_until_prune_is_asked(gitops_repo: Repo):
    gitops_repo.playbook("eso")
    set_cluster_section(gitops_repo, {**SECTION, "sync": SYNC[:1]})
    kept = gitops_repo.playbook("eso")
    stale = f"{BASE}/store/externalsecrets/talent-mesh-auth.yaml"
    assert (gitops_repo.root / stale).exists()
    assert "no longer managed" in kept.stdout
    assert "talent-mesh-auth" not in (gitops_repo.root / BASE / "store/kustomization.yaml").read_text()
    gitops_repo.playbook("eso", "-e", "external_secrets_prune=true")
    assert not (gitops_repo.root / stale).exists()


def test_unencrypted_or_undecryptable_master_secret_is_a_clear_error(gitops_repo: Repo, make_repo: Callable[..., Repo]):
    gitops_repo.write("kubernetes/secrets/plain.sops.yaml", yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "plain"}, "stringData": {"k": DATABASE_URL}}))
    result = gitops_repo.playbook("eso", check=False)
    assert result.returncode != 0
    assert "kubernetes/secrets/plain.sops.yaml: is not SOPS-encrypted" in result.stdout
    assert list(leaks(result.stdout)) == []
    (gitops_repo.root / "kubernetes/secrets/plain.sops.yaml").unlink()
    other = make_repo("other")
    gitops_repo.key_file.write_bytes(other.key_file.read_bytes())  # the wrong key
    wrong = gitops_repo.playbook("eso", check=False)
    assert wrong.returncode != 0
    assert "sops could not decrypt it" in wrong.stdout
    assert list(leaks(wrong.stdout)) == []


def test_settings_errors_name_the_key(gitops_repo: Repo):
    result = gitops_repo.playbook("eso", "-e", "external_secrets_provider=vault", check=False)
    assert result.returncode != 0
    assert "vault.server: set the Vault address" in result.stdout


def test_configure_accepts_the_external_secrets_mapping(gitops_repo: Repo):
    first = gitops_repo.playbook("configure")
    assert (gitops_repo.root / BASE / "store/clustersecretstore.yaml").exists()  # configure writes the tree when enabled
    # In configure's own task, with the vars and secrets it holds: the role is not run on top.
    assert "External Secrets GitOps: " in first.stdout and "Build the External Secrets manifests" not in first.stdout
    before = gitops_repo.snapshot()
    second = gitops_repo.playbook("configure")
    assert recap_changed(second.stdout) == 0 and gitops_repo.snapshot() == before
    # A setting given as a role variable is the role's: then the role runs, and honours it.
    overridden = gitops_repo.playbook("configure", "-e", "external_secrets_refresh_interval=5m")
    assert "Build the External Secrets manifests" in overridden.stdout
    bad = gitops_repo.root / "cluster.yaml"
    bad.write_text(bad.read_text().replace("mode: gitops", "mode: live"))
    rejected = gitops_repo.playbook("configure", check=False)
    assert rejected.returncode != 0
    assert "external_secrets.mode" in rejected.stdout


@pytest.mark.parametrize("enabled", [True, False])
def test_configure_runs_the_role_only_when_cluster_yaml_enables_it(gitops_repo: Repo, enabled: bool):
    set_cluster_section(gitops_repo, {**SECTION, "enabled": enabled})
    gitops_repo.playbook("configure")
    assert (gitops_repo.root / BASE / "store/clustersecretstore.yaml").exists() is enabled


def test_the_repositorys_own_eso_app_stops_the_role_before_it_writes(gitops_repo: Repo):
    """Two writers of kubernetes/apps/external-secrets/kustomization.yaml: every run "updated", the repo's entries dropped."""
    own = gitops_repo.write(f"{BASE}/kustomization.yaml", "---\nresources:\n  - ./external-secrets/ks.yaml\n")
    gitops_repo.write(f"{BASE}/external-secrets/ks.yaml", "---\n# the repository's own app\n")
    before = gitops_repo.snapshot()
    result = gitops_repo.playbook("eso", check=False)
    assert result.returncode != 0
    assert f"{BASE}: the repository has its own External Secrets app there" in result.stdout
    assert f"{BASE}/kustomization.yaml" in result.stdout and "nothing was written" in result.stdout
    assert "external_secrets_gitops_path" in result.stdout
    assert gitops_repo.snapshot() == before
    assert own.read_text().endswith("./external-secrets/ks.yaml\n")
    # A folder of its own: the role writes there, twice idempotently, and leaves the app alone.
    moved = gitops_repo.playbook("eso", "-e", "external_secrets_gitops_path=kubernetes/apps/cluster-secrets-eso")
    assert recap_changed(moved.stdout) == 1
    again = gitops_repo.playbook("eso", "-e", "external_secrets_gitops_path=kubernetes/apps/cluster-secrets-eso")
    assert recap_changed(again.stdout) == 0
    assert own.read_text().endswith("./external-secrets/ks.yaml\n")
