# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The published artifact: built by the real ansible-galaxy from the checkout with junk planted beside it,
installed into an empty collections path, and run from there by the real ansible-playbook."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, VENV_BIN, ansible_env, recap_changed, sops_binary

# What the artifact may hold, at its top level (MANIFEST.json and FILES.json are written by ansible-galaxy).
SHIPPED = {"plugins", "roles", "playbooks", "meta", "schemas", "builtin_templates", "docs", "changelogs", "extensions", "README.md",
           "LICENSE", "requirements.txt", "bindep.txt"}
GENERATED = {"MANIFEST.json", "FILES.json"}
# Never in the artifact, wherever they are: keys, plaintext cluster vars, OpenTofu state and variables, caches, builds.
SECRET_NAMES = {"age.key", "keys.txt", "cluster.yaml", "nodes.yaml", "cluster.toml"}
JUNK_SUFFIXES = (".key", ".pem", ".pyc", ".tmp", ".tar.gz", ".tfvars", ".tfstate")
# Planted in the working tree; neither may appear in any file of the artifact.
KEY_MARKER = "AGE-SECRET-KEY-1PLANTEDBYTESTARTIFACTNOTAREALKEY"
VALUE_MARKER = "planted-plaintext-secret-7c1e"
JUNK = {
    # what `make demo` leaves behind
    "demo/age.key": f"# public key: age1planted\n{KEY_MARKER}\n",
    "demo/cluster.yaml": f"tfstate_password: {VALUE_MARKER}\n",
    "demo/infrastructure/secrets.sops.yaml": f"tfstate_password: {VALUE_MARKER}\n",
    # a virtualenv, tool caches, a benchmark run, an old build
    ".venv/pyvenv.cfg": "home = /usr/bin\n",
    ".venv/lib/python3.11/site-packages/leak.py": f"TOKEN = '{VALUE_MARKER}'\n",
    ".pytest_cache/v/cache/lastfailed": "{}\n",
    "bench/.work/cluster.yaml": f"tfstate_password: {VALUE_MARKER}\n",
    "cluster-secrets-0.0.1.tar.gz": "not an archive\n",
    # stray keys and secrets, at the top and inside the folders that ship
    "stray.key": KEY_MARKER + "\n",
    "roles/init/files/stray.key": KEY_MARKER + "\n",
    "roles/configure/cluster.yaml": f"tfstate_password: {VALUE_MARKER}\n",
    "playbooks/.secrets-backup/age.key.20240101": KEY_MARKER + "\n",
    "builtin_templates/infrastructure/terraform.tfvars": f"password = \"{VALUE_MARKER}\"\n",
    "builtin_templates/infrastructure/tofu/.terraform/terraform.tfstate": VALUE_MARKER + "\n",
    "roles/configure/tasks/.mypy_cache/3.11/leak.yml": f"- {VALUE_MARKER}\n",
    "plugins/filter/__pycache__/sops_config.cpython-311.pyc": VALUE_MARKER + "\n",
    "docs/configure.md.tmp": VALUE_MARKER + "\n",
    "roles/init/.DS_Store": VALUE_MARKER + "\n",
}


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def forbidden(name: str) -> str:
    """Why a path must never be in the artifact; empty when it may be."""
    parts = name.split("/")
    if parts[0] not in SHIPPED | GENERATED:
        return "outside the shipped folders"
    if parts[-1] in SECRET_NAMES or name.endswith(JUNK_SUFFIXES):
        return "a key, plaintext cluster vars, OpenTofu state or variables, or build junk"
    if "__pycache__" in parts or "demo" in parts:
        return "a cache or the demo"
    if any(part.startswith(".") for part in parts[:-1]):
        return "inside a dot-folder"
    if parts[-1].startswith(".") and parts[0] != "builtin_templates":
        return "a dotfile outside the templates"
    return ""


def committed_files() -> list[str]:
    """What git would commit: tracked files and untracked ones that are not ignored."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return sorted({name for name in out.split("\0") if name and (ROOT / name).is_file()})


@dataclass
class Artifact:
    tarball: Path
    sources: list[str]           # the files copied from the checkout
    collections: Path            # the empty collections path the artifact was installed into
    installed: Path              # .../ansible_collections/cluster/secrets
    search_path: str             # ANSIBLE_COLLECTIONS_PATH: the install, then community.sops and kubernetes.core
    home: Path

    def env(self) -> dict[str, str]:
        """Only the installed artifact and its two dependencies: never the checkout the venv links to."""
        return ansible_env(self.home, {"ANSIBLE_COLLECTIONS_PATH": self.search_path, "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false"})

    def playbook(self, name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return run([str(VENV_BIN / "ansible-playbook"), f"cluster.secrets.{name}", *args], cwd, self.env())

    def snapshot(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.installed)): p.read_bytes() for p in sorted(self.installed.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    if importlib.util.find_spec("distlib") is None:
        pytest.fail("galaxy.yml's manifest needs the Python distlib library in the venv: add distlib to requirements-venv.txt")
    base = tmp_path_factory.mktemp("artifact")
    src, out, home = base / "src", base / "out", base / "home"
    sources = committed_files()
    for name in sources:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    for name, text in JUNK.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    out.mkdir()
    home.mkdir()
    env = ansible_env(home)
    run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", str(src), "--output-path", str(out)], base, env)
    tarball = next(out.glob("cluster-secrets-*.tar.gz"))

    # community.sops and kubernetes.core as the venv has them, in a collections path of their own
    venv_collections = Path(sysconfig.get_paths()["purelib"]) / "ansible_collections"
    deps = base / "deps" / "ansible_collections"
    for dep in ("community/sops", "kubernetes/core"):
        if not (venv_collections / dep / "MANIFEST.json").is_file():
            pytest.fail(f"{dep} is missing from {venv_collections}: run `make venv`")
        (deps / dep).parent.mkdir(parents=True, exist_ok=True)
        (deps / dep).symlink_to(venv_collections / dep, target_is_directory=True)
    collections = base / "collections"
    collections.mkdir()
    search_path = os.pathsep.join([str(collections), str(deps.parent)])
    install_env = ansible_env(home, {"ANSIBLE_COLLECTIONS_PATH": search_path, "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false"})
    run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--force", "--offline", "-p", str(collections), str(tarball)],
        base, install_env)
    installed = collections / "ansible_collections" / "cluster" / "secrets"
    assert (installed / "MANIFEST.json").is_file()
    return Artifact(tarball, sources, collections, installed, search_path, home)


def members(tarball: Path) -> dict[str, bytes]:
    """Every regular file of the artifact and its bytes."""
    with tarfile.open(tarball) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_artifact_holds_exactly_the_allow_list(artifact: Artifact):
    files = members(artifact.tarball)
    leaked = {name: why for name in files if (why := forbidden(name))}
    assert leaked == {}
    for name, content in files.items():
        assert KEY_MARKER.encode() not in content, name
        assert VALUE_MARKER.encode() not in content, name
    # every committed file of the shipped folders is there (templates' .gitignore included), and nothing else
    expected = {name for name in artifact.sources if not forbidden(name)} | GENERATED
    assert set(files) == expected
    assert {name.split("/")[0] for name in files} == SHIPPED | GENERATED
    assert "builtin_templates/infrastructure/tofu/.gitignore" in files
    # the installer trusts FILES.json: it lists the same files
    listed = {entry["name"] for entry in json.loads(files["FILES.json"])["files"] if entry["ftype"] == "file"}
    assert listed == set(files) - GENERATED
    assert files["LICENSE"].lstrip().startswith(b"GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007")
    assert json.loads(files["MANIFEST.json"])["collection_info"]["license"] == ["GPL-3.0-or-later"]


def test_the_installed_artifact_is_what_ansible_runs(artifact: Artifact):
    listing = run([str(VENV_BIN / "ansible-galaxy"), "collection", "list", "cluster.secrets", "--format", "json"],
                  artifact.home, artifact.env())
    assert list(json.loads(listing.stdout)) == [str(artifact.collections / "ansible_collections")]


def test_init_from_the_artifact_writes_into_the_repository(artifact: Artifact, tmp_path: Path):
    repo = tmp_path / "repo"
    repo.mkdir()
    run(["git", "init", "-q"], repo, artifact.env())
    before = artifact.snapshot()
    artifact.playbook("init", repo, "-e", "cluster_root=.")
    written = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file() and ".git" not in p.relative_to(repo).parts)
    assert written == [".age-public-key", ".gitignore", ".schemas/cluster.schema.json", ".sops.yaml", "age.key", "cluster.yaml"]
    assert (repo / "age.key").stat().st_mode & 0o777 == 0o600
    assert (repo / "cluster.yaml").stat().st_mode & 0o777 == 0o600
    assert (repo / "cluster.yaml").read_bytes() == (artifact.installed / "roles/init/files/cluster.sample.yaml").read_bytes()
    assert {"cluster.yaml", "age.key"} <= set((repo / ".gitignore").read_text().splitlines())
    recipient = next(line.split(": ", 1)[1] for line in (repo / "age.key").read_text().splitlines() if line.startswith("# public key: "))
    assert recipient in (repo / ".sops.yaml").read_text()
    # nothing landed in the installed collection, its playbooks/ folder included
    assert artifact.snapshot() == before
    assert sorted(p.name for p in (artifact.installed / "playbooks").iterdir()) == sorted(
        p.name for p in (ROOT / "playbooks").iterdir() if p.suffix == ".yml")
    # and a second run finds everything in place
    assert recap_changed(artifact.playbook("init", repo, "-e", "cluster_root=.").stdout) == 0


def test_init_resolves_against_the_directory_it_runs_in(artifact: Artifact, tmp_path: Path):
    # a relative cluster_root from a parent directory
    (tmp_path / "parent" / "child").mkdir(parents=True)
    artifact.playbook("init", tmp_path / "parent", "-e", "cluster_root=child")
    assert (tmp_path / "parent" / "child" / ".sops.yaml").is_file()
    # no cluster_root and a stale PWD, as launchers that do not go through a shell pass it
    here = tmp_path / "here"
    here.mkdir()
    env = artifact.env()
    env["PWD"] = str(tmp_path / "parent")
    run([str(VENV_BIN / "ansible-playbook"), "cluster.secrets.init"], here, env)
    assert sorted(p.name for p in here.iterdir()) == [".age-public-key", ".gitignore", ".schemas", ".sops.yaml", "age.key",
                                                      "cluster.yaml"]
    assert not (tmp_path / "parent" / ".sops.yaml").exists()
    assert not any((artifact.installed / "playbooks" / name).exists() for name in (".sops.yaml", "cluster.yaml", ".gitignore"))


def test_configure_from_the_artifact_encrypts_into_the_repository(artifact: Artifact, tmp_path: Path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "demo", repo)
    run(["git", "init", "-q"], repo, artifact.env())
    before = artifact.snapshot()
    artifact.playbook("init", repo, "-e", "cluster_root=.")
    first = artifact.playbook("configure", repo, "-e", "cluster_root=.")
    assert recap_changed(first.stdout) >= 1
    secrets = repo / "infrastructure" / "secrets.sops.yaml"
    assert "ENC[" in secrets.read_text()
    decrypted = run([sops_binary(), "decrypt", str(secrets)], repo, {"SOPS_AGE_KEY_FILE": str(repo / "age.key"), "PATH": os.environ["PATH"]})
    cluster = yaml.safe_load((repo / "cluster.yaml").read_text())
    assert yaml.safe_load(decrypted.stdout)["tfstate_password"] == cluster["tfstate_password"]
    assert (repo / "infrastructure" / "tofu" / ".gitignore").is_file()
    assert recap_changed(artifact.playbook("configure", repo, "-e", "cluster_root=.").stdout) == 0
    assert artifact.snapshot() == before
