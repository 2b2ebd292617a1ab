# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet: one inventory whose hosts are clusters (two environments of one project and one other cluster), each a
repository with its own age key. One run of the real playbooks configures all of them in parallel, sums them up in
one line each, and finds a password two environments share (named by key path, never shown); two hosts naming one
repository stop the run before anything is written."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path

import yaml

from tests.conftest import ROOT, VENV_BIN, Repo, sops_binary
from tests.integration.test_awx_job import inject
from tests.integration.test_credential_age import backdate

CLUSTERS = ("prod", "staging", "lab")
SHARED_PASSWORD = "planted: same pa55word in prod and staging"


def own_values(repo: Repo, name: str, password: str) -> None:
    """Give a cluster its own secret values (the demo's are one set), with ``password`` as tfstate_password."""
    text = (repo.root / "cluster.yaml").read_text(encoding="utf-8")
    own = {
        "cloudflare_domain": f"{name}.example.com",
        "cloudflare_token": f"{name}-token #{{ x }}# {{{{ y }}}}",
        "cf_account_id": f"{name}-0123456789abcdef",
        "tfstate_username": f"terraform-{name}",
        "tfstate_password": password,
        "proxmox_api_token_id": f"terraform@{name}!opentofu",
        "proxmox_api_token_secret": f"{name}-00000000-0000",
    }
    for key, value in own.items():
        text, count = re.subn(rf"(?m)^{key}: .*$", f'{key}: "{value}"', text)
        assert count == 1, key
    (repo.root / "cluster.yaml").write_text(text, encoding="utf-8")
    (repo.root / ".gitignore").write_text("cluster.yaml\nage.key\n")


def barrier_sops(tmp_path: Path, name: str) -> Path:
    """The real sops behind a gate: a cluster's first sops call waits until every cluster of the fleet has made one
    (at most 60 s, then it notes a timeout and goes on). Serial runs time out; parallel ones meet at once."""
    gate = tmp_path / "gate"
    gate.mkdir(exist_ok=True)
    shim = tmp_path / f"sops-{name}"
    shim.write_text(f"""#!/bin/sh
touch '{gate}/{name}'
waited=0
while [ "$(ls '{gate}' | wc -l)" -lt {len(CLUSTERS)} ]; do
  if [ "$waited" -ge 600 ]; then touch '{tmp_path}/timeout-{name}'; break; fi
  sleep 0.1
  waited=$((waited + 1))
done
exec '{sops_binary()}' "$@"
""")
    shim.chmod(0o755)
    return shim


def fleet_inventory(tmp_path: Path, hosts: dict[str, str]) -> Path:
    inventory = tmp_path / "fleet.yml"
    inventory.write_text("clusters:\n  hosts:\n" + "".join(f"    {name}:\n{vars_}" for name, vars_ in hosts.items()))
    return inventory


def run(repo: Repo, inventory: Path, playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), f"cluster.secrets.{playbook}", *args],
                            cwd=inventory.parent, env=repo.env(), capture_output=True, text=True, timeout=600, check=False)
    result.stdout += result.stderr
    return result


def fleet_lines(output: str) -> list[str]:
    """The lines of the fleet summary the playbook printed (the debug of 'Show the fleet')."""
    block = output.split("TASK [", )
    shown = [part for part in block if part.split("]", 1)[0].endswith("Show the fleet")]
    assert len(shown) == 1, output
    return re.findall(r'^\s+"(.*)",?$', shown[0], flags=re.M)


def test_a_fleet_in_one_run(make_repo, tmp_path):
    repos = {name: make_repo(name) for name in CLUSTERS}
    own_values(repos["prod"], "prod", SHARED_PASSWORD)
    own_values(repos["staging"], "staging", SHARED_PASSWORD)
    own_values(repos["lab"], "lab", "lab password of its own")
    inventory = fleet_inventory(tmp_path, {
        name: f"      cluster_root: {repo.root}\n      configure_sops_binary: {barrier_sops(tmp_path, name)}\n"
        for name, repo in repos.items()})

    first = run(repos["prod"], inventory, "configure", "--forks", "3")
    assert first.returncode == 0, first.stdout
    # in parallel: every cluster's first sops call met the others' (a serial run would have waited in vain)
    assert sorted(p.name for p in (tmp_path / "gate").iterdir()) == sorted(CLUSTERS)
    assert not list(tmp_path.glob("timeout-*")), first.stdout
    for name, repo in repos.items():
        assert "ENC[" in (repo.root / "infrastructure/secrets.sops.yaml").read_text()
        assert f"terraform-{name}" in repo.decrypt("infrastructure/secrets.sops.yaml")
    # one line per cluster, in inventory order, then the shared value by key path
    lines = fleet_lines(first.stdout)
    assert lines[0] == "configure on 3 cluster(s): 3 changed"
    assert [line.split()[0] for line in lines[1:4]] == list(CLUSTERS)
    for line, repo in zip(lines[1:4], repos.values(), strict=True):
        assert line.split()[1:3] == ["changed", str(repo.root)]
    assert lines[4] == "secret values shared across clusters: 1 (compared 3 clusters: prod, staging, lab)"
    assert lines[5] == ("  one value in prod and staging: prod infrastructure/secrets.sops.yaml tfstate_password = "
                        "staging infrastructure/secrets.sops.yaml tfstate_password")
    assert len(lines) == 6
    assert "1 secret value(s) are shared across clusters" in first.stdout  # configure warns, and goes on
    for secret in (SHARED_PASSWORD, "pa55word", "lab password of its own", "prod-token"):
        assert secret not in first.stdout

    # again: nothing to write anywhere, still summed up
    before = {name: repo.snapshot() for name, repo in repos.items()}
    again = run(repos["prod"], inventory, "configure", "-v")
    assert again.returncode == 0, again.stdout
    assert {name: repo.snapshot() for name, repo in repos.items()} == before
    assert fleet_lines(again.stdout)[0] == "configure on 3 cluster(s): 3 ok"
    assert SHARED_PASSWORD not in again.stdout

    # doctor over the fleet: each repository checked, then the shared password fails the play (by key path only)
    doctor = run(repos["prod"], inventory, "doctor", "-e", "doctor_fleet_reuse_ignore=[]")
    assert doctor.returncode != 0, doctor.stdout
    assert "1 secret value(s) are shared across clusters" in doctor.stdout
    assert "prod infrastructure/secrets.sops.yaml tfstate_password = staging" in doctor.stdout
    # only the clusters that share it fail: lab shares nothing
    assert re.search(r"(?m)^lab\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", doctor.stdout), doctor.stdout
    assert re.search(r"(?m)^prod\s+: .*failed=1", doctor.stdout) and re.search(r"(?m)^staging\s+: .*failed=1", doctor.stdout)
    assert SHARED_PASSWORD not in doctor.stdout
    # allowed by pattern: the fleet is healthy again
    allowed = run(repos["prod"], inventory, "doctor", "-e", '{"doctor_fleet_reuse_ignore": ["tfstate_password"]}')
    assert allowed.returncode == 0, allowed.stdout
    assert "secret values shared across clusters: 0" in allowed.stdout, allowed.stdout
    assert "are shared across clusters" not in allowed.stdout

    # time passes (the committed dates say so): prod's values 200 days old, staging's 120, lab's new; one table for the
    # fleet, oldest first, each row naming its cluster
    backdate(repos["prod"], 200)
    backdate(repos["staging"], 120)
    aged = run(repos["prod"], inventory, "doctor", "-e", '{"doctor_fleet_reuse_ignore": ["tfstate_password"]}')
    assert aged.returncode == 0, aged.stdout  # old credentials are warnings
    lines = fleet_lines(aged.stdout)
    start = next(i for i, line in enumerate(lines) if line.startswith("credentials to change, oldest first (policy: 90 days): "))
    rows = [line.split() for line in lines[start + 2:]]
    assert rows and [row[2] for row in rows] == sorted((row[2] for row in rows), key=["prod", "staging"].index)
    assert {row[0] for row in rows if row[2] == "prod"} == {"200"} and {row[0] for row in rows if row[2] == "staging"} == {"120"}
    assert ["200", str(datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=200)), "prod",
            "infrastructure/secrets.sops.yaml", "tfstate_password"] in rows
    assert int(lines[start].rsplit(" ", 1)[1]) == len(rows)
    assert SHARED_PASSWORD not in aged.stdout

    # day two over the fleet: new data keys everywhere, then OpenTofu's tfvars example; a line per cluster each time
    rotated = run(repos["prod"], inventory, "rotate", "-e", "rotate_mode=data_keys")
    assert rotated.returncode == 0, rotated.stdout
    assert fleet_lines(rotated.stdout)[0] == "rotate (data_keys) on 3 cluster(s): 3 changed"
    for name, repo in repos.items():
        assert f"terraform-{name}" in repo.decrypt("infrastructure/secrets.sops.yaml")
    infra = run(repos["prod"], inventory, "infra", "-e", "opentofu_command=example")
    assert infra.returncode == 0, infra.stdout
    assert fleet_lines(infra.stdout)[0] == "OpenTofu example on 3 cluster(s): 3 changed"
    assert all((repo.root / "infrastructure/tofu/terraform.tfvars.example").is_file() for repo in repos.values())
    for output in (rotated.stdout, infra.stdout):
        assert SHARED_PASSWORD not in output and "prod-token" not in output


def test_two_hosts_naming_one_repository_stop_before_any_write(make_repo, tmp_path):
    one, other = make_repo("one"), make_repo("other")
    before = {"one": one.snapshot(), "other": other.snapshot()}
    inventory = fleet_inventory(tmp_path, {
        "prod": f"      cluster_root: {one.root}\n",
        "staging": f"      cluster_root: {other.root}\n",
        # the same repository by another spelling
        "prod-again": f"      cluster_root: {one.root}/../{one.root.name}\n",
    })
    result = run(one, inventory, "configure")
    assert result.returncode != 0, result.stdout
    assert f"prod and prod-again name the same repository, {one.root}: nothing was written" in result.stdout
    assert "Render cluster.yaml into the repository" not in result.stdout
    # nothing written, not even for staging, whose repository was its own
    assert {"one": one.snapshot(), "other": other.snapshot()} == before


def test_the_same_inventory_runs_from_awx_with_one_credential_per_environment(make_repo, tmp_path):
    """Each environment's credential type (extensions/awx/.../cluster_secrets_environment.yml, `prod` replaced) injects
    its key and cluster vars as private files and their paths as extra vars; the inventory hands each to its own host.
    The checkouts hold neither key nor cluster vars; the job's environment holds no key."""
    template = (ROOT / "extensions" / "awx" / "credential_types" / "cluster_secrets_environment.yml").read_text()
    inventory = tmp_path / "fleet.yml"
    inventory.write_text("clusters:\n  hosts:\n" + "".join(
        f"    {name}:\n      cluster_root: {tmp_path / name}\n"
        f"      cluster_age_key_file: \"{{{{ cluster_secrets_{name}_age_key_file | default('') }}}}\"\n"
        f"      cluster_file: \"{{{{ cluster_secrets_{name}_cluster_file | default('') }}}}\"\n" for name in ("prod", "staging")))
    extra_vars: dict[str, str] = {}
    keys = {}
    for name in ("prod", "staging"):
        repo = make_repo(name)
        own_values(repo, name, f"{name} password")
        credential_type = yaml.safe_load(template.replace("prod", name))
        assert credential_type["name"] == f"cluster.secrets environment {name}"
        inputs = {"age_key": repo.key_file.read_text(), "cluster_vars": (repo.root / "cluster.yaml").read_text()}
        keys[name] = tmp_path / f"{name}-key-kept-by-the-test"
        keys[name].write_text(inputs["age_key"])
        repo.key_file.unlink()
        (repo.root / "cluster.yaml").unlink()
        private = tmp_path / "awx_private_data" / name
        private.mkdir(parents=True, mode=0o700)
        env, injected = inject(credential_type, inputs, private)
        assert env == {}  # SOPS_AGE_KEY is one per job: never used for one environment of several
        extra_vars.update(injected)
    assert sorted(extra_vars) == ["cluster_secrets_prod_age_key_file", "cluster_secrets_prod_cluster_file",
                                  "cluster_secrets_staging_age_key_file", "cluster_secrets_staging_cluster_file"]
    (tmp_path / "extra_vars.json").write_text(json.dumps(extra_vars))
    result = run(repo, inventory, "configure", "-e", f"@{tmp_path / 'extra_vars.json'}")
    assert result.returncode == 0, result.stdout
    assert "configure on 2 cluster(s): 2 changed" in result.stdout
    assert "secret values shared across clusters: 0 (compared 2 clusters: prod, staging)" in result.stdout
    for name in ("prod", "staging"):
        root = tmp_path / name
        assert f"{name} password" in Repo(root, repo.home).decrypt("infrastructure/secrets.sops.yaml", keys[name])
        assert not (root / "age.key").exists() and not (root / "cluster.yaml").exists()
        assert f"{name} password" not in result.stdout


def test_a_fleet_rotates_age_keys_kept_in_one_shared_key_file(make_repo, tmp_path):
    """prod and staging each have their own key, both kept in one file (like ~/.config/sops/age/keys.txt): rotated in
    parallel, the file ends with exactly the two new keys, and each repository decrypts with it."""
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import parse_identities
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config

    shared = tmp_path / "keys.txt"
    repos = {name: make_repo(name) for name in ("prod", "staging")}
    old = []
    for name, repo in repos.items():
        own_values(repo, name, f"{name} password")
        old += parse_identities(repo.key_file.read_text(), name)
        # as init leaves it: the repository's rules name its own key (not the first key of the shared file)
        (repo.root / ".sops.yaml").write_text(default_sops_config([str(old[-1].recipient)]))
        with shared.open("a") as keys:
            keys.write(repo.key_file.read_text())
        repo.key_file.unlink()
    shared.chmod(0o600)
    inventory = fleet_inventory(tmp_path, {
        name: f"      cluster_root: {repo.root}\n      cluster_age_key_file: {shared}\n" for name, repo in repos.items()})
    configured = run(repos["prod"], inventory, "configure")
    assert configured.returncode == 0, configured.stdout
    rotated = run(repos["prod"], inventory, "rotate", "--forks", "2")
    assert rotated.returncode == 0, rotated.stdout
    assert fleet_lines(rotated.stdout)[0] == "rotate (age_key) on 2 cluster(s): 2 changed"
    now = parse_identities(shared.read_text(), "shared")
    assert len(now) == 2 and not {i.recipient for i in now} & {i.recipient for i in old}
    for name, repo in repos.items():
        text = (repo.root / "infrastructure/secrets.sops.yaml").read_text()
        assert f"{name} password" in repo.decrypt("infrastructure/secrets.sops.yaml", shared)
        assert sum(i.recipient in text for i in now) == 1  # its own new key only
