# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""external_secrets in apply mode: the real ansible-playbook, the real kubernetes.core modules and the real
`kubernetes` client over HTTP, against tests/kube_api_double.

kube_api_double is a TEST DOUBLE of the Kubernetes API server with a small stand-in for the External Secrets
Operator (see its docstring): no real API server can run where these tests run.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import Repo, recap_changed
from tests.integration.eso_support import DATABASE_URL, JWT_KEY, REDIS_PASSWORD, SYNC, encrypt_master_secrets, leaks, set_cluster_section
from tests.kube_api_double import KubeApiDouble


@pytest.fixture
def kube_api() -> Iterator[KubeApiDouble]:
    api = KubeApiDouble().start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def eso_repo(make_repo: Callable[..., Repo], kube_api: KubeApiDouble) -> Repo:
    """A demo repository with encrypted master secrets, apply mode, and an app namespace that already exists."""
    repo = make_repo()
    encrypt_master_secrets(repo)
    set_cluster_section(repo, {"enabled": True, "mode": "apply", "install_operator": False, "sync": SYNC})
    kube_api.write_kubeconfig(repo.home / "kubeconfig")
    namespaces = kube_api.type_for("", "namespaces")
    kube_api.create(namespaces, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "talent-mesh"}})
    return repo


def run(repo: Repo, *args: str, check: bool = True, auth: str = "env"):
    """Run the eso playbook; the kubeconfig comes from K8S_AUTH_KUBECONFIG (auth="env") or the role variables."""
    tmp = repo.home / "tmp"  # kubernetes.core caches discovery in the temp folder: keep it per test
    tmp.mkdir(exist_ok=True)
    kubeconfig = str(repo.home / "kubeconfig")
    if auth == "env":
        env = repo.env(K8S_AUTH_KUBECONFIG=kubeconfig, TMPDIR=str(tmp))
    else:
        env = repo.env(TMPDIR=str(tmp))
        args = ("-e", f"external_secrets_kubeconfig={kubeconfig}", "-e", "external_secrets_context=test-double", *args)
    return repo.playbook("eso", "-e", "external_secrets_wait_delay=1", *args, env=env, check=check)


def secret_data(api: KubeApiDouble, namespace: str, name: str) -> dict[str, str]:
    secret = api.get(api.type_for("", "secrets"), namespace, name)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def ready(obj: dict) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def test_first_run_creates_everything_and_second_run_changes_nothing(eso_repo: Repo, kube_api: KubeApiDouble):
    first = run(eso_repo)
    assert recap_changed(first.stdout) > 0
    eso = "external-secrets.io"
    store = kube_api.get(kube_api.type_for(eso, "clustersecretstores"), "", "main-store")
    assert ready(store)["status"] == "True"
    assert store["spec"]["provider"]["kubernetes"]["remoteNamespace"] == "secrets"
    role = kube_api.get(kube_api.type_for("rbac.authorization.k8s.io", "roles"), "secrets", "external-secrets-store")
    assert {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectrulesreviews"], "verbs": ["create"]} in role["rules"]
    # The master secrets arrived decrypted, as base64 data (stringData folded by the API).
    assert secret_data(kube_api, "secrets", "postgres-credentials") == {"url": DATABASE_URL, "username": "app"}
    master = kube_api.get(kube_api.type_for("", "secrets"), "secrets", "postgres-credentials")
    assert "stringData" not in master
    assert "kubectl.kubernetes.io/last-applied-configuration" not in master["metadata"].get("annotations", {})
    # ESO (the stand-in) synced the targets.
    for name in ("db-credentials", "auth"):
        assert ready(kube_api.get(kube_api.type_for(eso, "externalsecrets"), "talent-mesh", name))["status"] == "True"
    assert secret_data(kube_api, "talent-mesh", "db-credentials") == {"DATABASE_URL": DATABASE_URL}
    assert secret_data(kube_api, "talent-mesh", "auth-env") == {"JWT_KEY": JWT_KEY, "password": REDIS_PASSWORD}

    before = kube_api.state()
    second = run(eso_repo)
    assert recap_changed(second.stdout) == 0, second.stdout
    after = kube_api.state()
    assert {k: v["metadata"]["resourceVersion"] for k, v in after.items()} == \
        {k: v["metadata"]["resourceVersion"] for k, v in before.items()}


def test_check_mode_changes_nothing_on_the_cluster(eso_repo: Repo, kube_api: KubeApiDouble):
    fresh = kube_api.state()
    check_first = run(eso_repo, "--check", "--diff")
    assert recap_changed(check_first.stdout) > 0
    assert kube_api.state() == fresh
    run(eso_repo)
    # Change a value and a setting, then look without touching.
    encrypt_master_secrets(eso_repo, {"kubernetes/secrets/auth.sops.yaml": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "jwt-signing-key"}, "stringData": {"key": "rotated-SENTINEL"}}]})
    before = kube_api.state()
    check = run(eso_repo, "--check", "--diff", "-e", "external_secrets_refresh_interval=30m")
    assert recap_changed(check.stdout) > 0
    assert kube_api.state() == before
    assert any(method == "PATCH" and "dryRun=All" in path for method, path in kube_api.requests)
    assert "rotated-SENTINEL" not in check.stdout


def test_missing_remote_key_fails_naming_the_external_secret_and_reason(eso_repo: Repo, kube_api: KubeApiDouble):
    sync = [*SYNC, {"name": "broken", "namespace": "talent-mesh",
                    "data": [{"key": "TOKEN", "remote_key": "does-not-exist", "property": "token"}]}]
    set_cluster_section(eso_repo, {"enabled": True, "mode": "apply", "install_operator": False, "sync": sync})
    result = run(eso_repo, "-e", "external_secrets_wait_timeout=3", check=False)
    assert result.returncode != 0
    assert "ExternalSecret/talent-mesh/broken: Ready=False reason=SecretSyncedError" in result.stdout
    assert 'Secret \\"does-not-exist\\" not found' in result.stdout or 'Secret "does-not-exist" not found' in result.stdout
    # The others are fine and are not reported.
    assert "ExternalSecret/talent-mesh/db-credentials:" not in result.stdout


def test_store_without_rbac_reports_the_store_reason(eso_repo: Repo, kube_api: KubeApiDouble):
    run(eso_repo, auth="role")
    roles = kube_api.type_for("rbac.authorization.k8s.io", "roles")
    kube_api.delete(roles, "secrets", "external-secrets-store")
    kube_api.create(roles, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                            "metadata": {"name": "external-secrets-store", "namespace": "secrets"},
                            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]})
    kube_api.eso.reconcile()
    # Someone broke the Role: the store says why; the next run puts the Role right again.
    store = kube_api.get(kube_api.type_for("external-secrets.io", "clustersecretstores"), "", "main-store")
    assert ready(store)["reason"] == "InvalidProviderConfig"
    assert "not allowed" in ready(store)["message"]
    fixed = run(eso_repo, auth="role")
    assert recap_changed(fixed.stdout) == 1  # the Role, put right
    kube_api.eso.reconcile()
    assert ready(kube_api.get(kube_api.type_for("external-secrets.io", "clustersecretstores"), "", "main-store"))["status"] == "True"


def test_switching_to_vault_changes_only_the_store(eso_repo: Repo, kube_api: KubeApiDouble):
    run(eso_repo)
    kube_api.eso.vault_kv.update({"postgres-credentials": {"url": DATABASE_URL},
                                  "jwt-signing-key": {"key": JWT_KEY}, "redis-credentials": {"password": REDIS_PASSWORD}})
    before = kube_api.state()
    set_cluster_section(eso_repo, {"enabled": True, "mode": "apply", "install_operator": False, "sync": SYNC,
                                   "provider": "vault", "vault": {"server": "https://vault.example.com", "role": "eso"}})
    switched = run(eso_repo)
    assert recap_changed(switched.stdout) == 1
    after = kube_api.state()
    changed = {key for key in after if after[key] != before.get(key)}
    # The store changed; the ExternalSecrets only got a new status from the operator, their spec is the same.
    css = ("external-secrets.io", "clustersecretstores", "", "main-store")
    assert css in changed
    provider = after[css]["spec"]["provider"]
    assert provider == {"vault": {"server": "https://vault.example.com", "path": "secret", "version": "v2", "auth": {
        "kubernetes": {"mountPath": "kubernetes", "role": "eso",
                       "serviceAccountRef": {"name": "external-secrets", "namespace": "external-secrets", "audiences": ["vault"]}}}}}
    for key in changed - {css}:
        assert key[1] in ("externalsecrets", "secrets") and key[2] == "talent-mesh", key
        assert {k: v for k, v in after[key].items() if k not in ("status", "metadata")} == \
            {k: v for k, v in before[key].items() if k not in ("status", "metadata")}
    assert secret_data(kube_api, "talent-mesh", "db-credentials") == {"DATABASE_URL": DATABASE_URL}


def test_no_secret_value_in_verbose_diff_or_failure_output(eso_repo: Repo, kube_api: KubeApiDouble):
    outputs = [run(eso_repo, "-vvvv", "--diff").stdout, run(eso_repo, "-vvvv", "--diff", "--check").stdout]
    encrypt_master_secrets(eso_repo, {"kubernetes/secrets/auth.sops.yaml": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "jwt-signing-key"}, "stringData": {"key": JWT_KEY + "-2"}}]})
    outputs.append(run(eso_repo, "-vvvv", "--diff").stdout)
    broken = {"key": "X", "remote_key": "postgres-credentials", "property": "nope"}
    failing = [*SYNC, {"name": "broken", "namespace": "talent-mesh", "data": [broken]}]
    set_cluster_section(eso_repo, {"enabled": True, "mode": "apply", "install_operator": False, "sync": failing})
    failed = run(eso_repo, "-vvvv", "--diff", "-e", "external_secrets_wait_timeout=2", check=False)
    assert failed.returncode != 0
    outputs.append(failed.stdout)
    for output in outputs:
        assert list(leaks(output)) == []
    # The module arguments that hold values are piped to the module, never put into a temporary module file.
    section = task_output(outputs[0], "Apply the master secrets")
    assert "EXEC" in section and "PUT " not in section and "AnsiballZ_k8s.py" not in section


def task_output(output: str, task: str) -> str:
    """The -vvvv lines of one task, up to the next task header."""
    start = output.index(f": {task}")
    end = output.find("\nTASK [", start)
    return output[start:end if end > 0 else None]


def test_prune_only_when_asked(eso_repo: Repo, kube_api: KubeApiDouble):
    run(eso_repo)
    set_cluster_section(eso_repo, {"enabled": True, "mode": "apply", "install_operator": False, "sync": SYNC[:1]})
    run(eso_repo)
    es = kube_api.type_for("external-secrets.io", "externalsecrets")
    assert kube_api.get(es, "talent-mesh", "auth")
    (eso_repo.root / "kubernetes/secrets/auth.sops.yaml").unlink()  # jwt-signing-key is no longer a master secret
    run(eso_repo)
    secrets = kube_api.type_for("", "secrets")
    assert kube_api.get(secrets, "secrets", "jwt-signing-key")
    run(eso_repo, "-e", "external_secrets_prune=true")
    names = [o["metadata"]["name"] for o in kube_api.list(es, "talent-mesh")]
    assert names == ["db-credentials"]
    assert sorted(o["metadata"]["name"] for o in kube_api.list(secrets, "secrets")) == ["postgres-credentials", "redis-credentials"]


def test_configure_style_run_does_nothing_unless_enabled(eso_repo: Repo, kube_api: KubeApiDouble):
    set_cluster_section(eso_repo, {"enabled": False, "mode": "apply", "install_operator": False, "sync": SYNC})
    before = kube_api.state()
    result = run(eso_repo, "-e", "external_secrets_only_when_enabled=true")
    assert recap_changed(result.stdout) == 0
    assert kube_api.state() == before


def test_wrong_age_key_is_reported_with_where_it_looked(eso_repo: Repo, make_repo: Callable[..., Repo], kube_api: KubeApiDouble):
    eso_repo.key_file.write_bytes(make_repo("other").key_file.read_bytes())
    before = kube_api.state()
    result = run(eso_repo, check=False)
    assert result.returncode != 0
    assert "kubernetes/secrets/auth.sops.yaml: sops could not decrypt it" in result.stdout
    assert "age keys looked up in" in result.stdout
    assert list(leaks(result.stdout)) == []
    assert kube_api.state() == before  # it stopped before touching the cluster


def test_least_privilege_the_store_reads_only_named_secrets_for_listed_namespaces(eso_repo: Repo, kube_api: KubeApiDouble):
    """Issue 11 item 10: get on the named master secrets only, no list/watch, and store conditions."""
    run(eso_repo)
    eso = "external-secrets.io"
    role = kube_api.get(kube_api.type_for("rbac.authorization.k8s.io", "roles"), "secrets", "external-secrets-store")
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secret_rules == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                             "resourceNames": ["jwt-signing-key", "postgres-credentials", "redis-credentials"]}]
    store = kube_api.get(kube_api.type_for(eso, "clustersecretstores"), "", "main-store")
    assert store["spec"]["conditions"] == [{"namespaces": ["talent-mesh"]}]
    assert ready(store)["status"] == "True"

    # Another Secret in the secrets namespace, and two ExternalSecrets written by hand that try to reach further.
    kube_api.create(kube_api.type_for("", "secrets"), {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cluster-admin-token", "namespace": "secrets"},
        "data": {"token": base64.b64encode(b"admin-SENTINEL").decode()}})
    kube_api.create(kube_api.type_for("", "namespaces"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "intruder"}})
    external = kube_api.type_for(eso, "externalsecrets")

    def external_secret(namespace: str, name: str, key: str) -> dict:
        return {"apiVersion": f"{eso}/v1", "kind": "ExternalSecret", "metadata": {"name": name, "namespace": namespace},
                "spec": {"secretStoreRef": {"kind": "ClusterSecretStore", "name": "main-store"},
                         "target": {"name": name}, "dataFrom": [{"extract": {"key": key}}]}}

    kube_api.create(external, external_secret("talent-mesh", "grab-admin", "cluster-admin-token"))
    kube_api.create(external, external_secret("intruder", "grab-db", "postgres-credentials"))
    kube_api.eso.reconcile()
    grab_admin = ready(kube_api.get(external, "talent-mesh", "grab-admin"))
    assert grab_admin["status"] == "False"
    assert 'secrets "cluster-admin-token" is forbidden' in grab_admin["message"]
    grab_db = ready(kube_api.get(external, "intruder", "grab-db"))
    assert grab_db["status"] == "False"
    assert 'is not allowed from namespace "intruder": denied by spec.condition' in grab_db["message"]
    # the role's own ExternalSecrets still sync
    assert ready(kube_api.get(external, "talent-mesh", "auth"))["status"] == "True"

    # A namespace the user lists may use the store; it still reads only the named secrets.
    run(eso_repo, "-e", '{"external_secrets_store_namespaces": ["intruder"]}')
    kube_api.eso.reconcile()
    assert ready(kube_api.get(external, "intruder", "grab-db"))["status"] == "True"
