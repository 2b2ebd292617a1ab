# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""configure run the way an AWX job runs it: a bare environment (`env -i`: PATH, an empty HOME), no terminal,
the age key only in SOPS_AGE_KEY, the cluster vars only in a file the credential type injects outside the
repository, its path as an extra var, and the json stdout callback. The injectors are rendered from
extensions/awx/credential_types/cluster_secrets.yml the way AWX renders them (a Jinja sandbox, once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tests.conftest import ROOT, VENV_BIN, sops_binary

CREDENTIAL_TYPE = ROOT / "extensions" / "awx" / "credential_types" / "cluster_secrets.yml"
SECRET_KEYS = ("cloudflare_token", "tfstate_password", "proxmox_api_token_secret", "cf_account_id")
# The json stdout callback lives in ansible.posix since ansible-core 2.19 split it out. Galaxy may not answer here,
# so it comes from the `ansible` wheel on PyPI (the one scripts/bootstrap_venv.py falls back to), into .build/.
ANSIBLE_BUNDLE = "ansible==12.3.0"
TEST_COLLECTIONS = ROOT / ".build" / "test-collections"


@pytest.fixture(scope="module")
def json_callback_path() -> str:
    """A collections path where `ANSIBLE_STDOUT_CALLBACK=json` resolves (ansible.posix), next to the venv's own."""
    venv_collections = Path(sysconfig.get_paths()["purelib"])
    if (venv_collections / "ansible_collections" / "ansible" / "posix" / "MANIFEST.json").is_file():
        return str(venv_collections)
    if not (TEST_COLLECTIONS / "ansible_collections" / "ansible" / "posix" / "MANIFEST.json").is_file():
        wheels = ROOT / ".build" / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--dest", str(wheels), ANSIBLE_BUNDLE], check=True, timeout=600)
        wheel = next(wheels.glob("ansible-12.3.0-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(TEST_COLLECTIONS, [m for m in archive.namelist() if m.startswith("ansible_collections/ansible/posix/")])
    return os.pathsep.join([str(TEST_COLLECTIONS), str(venv_collections)])


def inject(credential_type: dict[str, Any], inputs: dict[str, str], private_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """What AWX does with a credential of this type: file templates written to private files (0600), then the env
    and extra_vars templates rendered with `tower.filename` naming those files. Returns (env, extra_vars)."""
    sandbox = ImmutableSandboxedEnvironment()
    injectors = credential_type["injectors"]
    filenames = {}
    for key, template in injectors.get("file", {}).items():
        name = key.split(".", 1)[1]
        path = private_dir / f"tmp_{name}"
        path.write_text(sandbox.from_string(template).render(**inputs))
        path.chmod(0o600)
        filenames[name] = str(path)
    namespace = dict(inputs, tower={"filename": filenames})
    env = {k: sandbox.from_string(v).render(**namespace) for k, v in injectors.get("env", {}).items()}
    extra_vars = {k: sandbox.from_string(v).render(**namespace) for k, v in injectors.get("extra_vars", {}).items()}
    return env, extra_vars


@pytest.fixture
def job(make_repo, tmp_path: Path):
    """A project checkout without age.key or cluster.yaml, and the credential's inputs, as AWX holds them."""
    repo = make_repo("project")
    inputs = {"age_key": repo.key_file.read_text(), "cluster_vars": (repo.root / "cluster.yaml").read_text()}
    key_file = tmp_path / "key-kept-by-the-test"
    key_file.write_text(inputs["age_key"])
    repo.key_file.unlink()
    (repo.root / "cluster.yaml").unlink()
    private = tmp_path / "awx_private_data" / "env"
    private.mkdir(parents=True, mode=0o700)
    home = tmp_path / "empty-home"
    home.mkdir()
    return repo, inputs, key_file, private, home


def run_job(repo_root: Path, env_extra: dict[str, str], extra_vars: dict[str, str], home: Path,
            collections: str) -> subprocess.CompletedProcess[str]:
    # env -i: nothing of this process's environment, only what AWX's runner would set (it also sets a collections path)
    env = {"PATH": os.pathsep.join([str(VENV_BIN), "/usr/bin", "/bin"]), "HOME": str(home),
           "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_COLLECTIONS_PATH": collections, **env_extra}
    cmd = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), str(VENV_BIN / "ansible-playbook"),
           "cluster.secrets.configure", "-e", f"cluster_root={repo_root}",
           *(arg for k, v in extra_vars.items() for arg in ("-e", f"{k}={v}"))]
    return subprocess.run(cmd, cwd=repo_root, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                          check=False)


def task_result(report: dict[str, Any], name: str) -> dict[str, Any]:
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].split(" : ", 1)[-1] == name:
                return task["hosts"]["localhost"]
    raise AssertionError(f"no task {name!r} in the json report")


def test_the_credential_type_is_what_awx_accepts():
    credential_type = yaml.safe_load(CREDENTIAL_TYPE.read_text())
    fields = {f["id"]: f for f in credential_type["inputs"]["fields"]}
    assert set(fields) == {"age_key", "cluster_vars"} == set(credential_type["inputs"]["required"])
    assert all(f["secret"] and f["multiline"] and f["type"] == "string" for f in fields.values())
    assert credential_type["kind"] == "cloud"
    injectors = credential_type["injectors"]
    assert injectors["env"] == {"SOPS_AGE_KEY": "{{ age_key }}"}
    assert injectors["file"] == {"template.cluster_vars": "{{ cluster_vars }}"}
    assert injectors["extra_vars"] == {"configure_cluster_file": "{{ tower.filename.cluster_vars }}"}


def test_configure_runs_as_an_awx_job(job, json_callback_path):
    repo, inputs, key_file, private, home = job
    cluster = yaml.safe_load(inputs["cluster_vars"])
    # the demo's values are data, never templates: one of them holds `{{ ... }}` on purpose
    assert "{{" in cluster["cloudflare_token"]
    env, extra_vars = inject(yaml.safe_load(CREDENTIAL_TYPE.read_text()), inputs, private)
    injected = Path(extra_vars["configure_cluster_file"])
    assert injected.read_text() == inputs["cluster_vars"], "the file injector must write the input byte for byte"
    assert repo.root not in injected.parents

    first = run_job(repo.root, env, extra_vars, home, json_callback_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    report = json.loads(first.stdout)
    assert report["stats"]["localhost"]["failures"] == 0 and report["stats"]["localhost"]["changed"] >= 1
    render = task_result(report, "Render cluster.yaml into the repository and encrypt its secrets")
    assert render["changed"] is True
    assert "infrastructure/secrets.sops.yaml" in render["created"]
    assert "kubernetes/apps/default/echo/app/secret.sops.yaml" in render["created"]

    # the files landed in the repository, encrypted for the key from the environment, values exact
    decrypt_env = {"SOPS_AGE_KEY_FILE": str(key_file), "PATH": os.environ["PATH"]}
    infra = yaml.safe_load(subprocess.run([sops_binary(), "decrypt", str(repo.root / "infrastructure/secrets.sops.yaml")],
                                          env=decrypt_env, capture_output=True, text=True, check=True).stdout)
    assert infra["tfstate_password"] == cluster["tfstate_password"]
    app = yaml.safe_load(subprocess.run([sops_binary(), "decrypt", str(repo.root / "kubernetes/apps/default/echo/app/secret.sops.yaml")],
                                        env=decrypt_env, capture_output=True, text=True, check=True).stdout)
    assert app["stringData"]["CLOUDFLARE_TOKEN"] == cluster["cloudflare_token"]
    # nothing secret was written into the project: no key, no cluster vars
    assert not (repo.root / "age.key").exists() and not (repo.root / "cluster.yaml").exists()
    # the cache went to the job's HOME (AWX: the container's, gone after the job) and holds no value
    cached = [p for p in home.rglob("*") if p.is_file()]
    assert cached, "configure's cache belongs under $HOME/.cache in a job"

    # no secret value, and not the key, anywhere in what the job printed
    key_lines = [line for line in inputs["age_key"].splitlines() if line.startswith("AGE-SECRET-KEY-")]
    secrets = [str(cluster[k]) for k in SECRET_KEYS] + key_lines
    printed = first.stdout + first.stderr + "".join(p.read_text(errors="replace") for p in cached)
    assert [s for s in secrets if s in printed] == []

    # a second job on the same checkout: nothing to do, nothing written
    before = repo.snapshot()
    second = run_job(repo.root, env, extra_vars, home, json_callback_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr
    report = json.loads(second.stdout)
    assert report["stats"]["localhost"]["changed"] == 0
    assert repo.snapshot() == before
    assert [s for s in secrets if s in second.stdout + second.stderr] == []


def test_without_the_key_in_the_environment_the_job_fails_plainly(job, json_callback_path):
    repo, inputs, _key_file, private, home = job
    env, extra_vars = inject(yaml.safe_load(CREDENTIAL_TYPE.read_text()), inputs, private)
    result = run_job(repo.root, {}, extra_vars, home, json_callback_path)
    assert result.returncode != 0
    report = json.loads(result.stdout)
    render = task_result(report, "Render cluster.yaml into the repository and encrypt its secrets")
    assert render["failed"] is True and "age" in render["msg"].lower()
    assert "Traceback" not in result.stdout + result.stderr
    assert env["SOPS_AGE_KEY"].splitlines()[-1] not in result.stdout + result.stderr
