# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures: temporary cluster repositories, real age keys, real sops, real ansible-playbook."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEMO = ROOT / "examples" / "demo"


def sops_binary() -> str:
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import find_sops_binary

    return find_sops_binary()


def ansible_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: no age key from the developer's machine leaks into a test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "ANSIBLE_", "K8S_AUTH_", "TF_"))}
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.update(extra or {})
    return env


class Repo:
    """A temporary cluster repository with its own HOME and age key."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home

    @property
    def key_file(self) -> Path:
        return self.root / "age.key"

    def env(self, **extra: str) -> dict[str, str]:
        return ansible_env(self.home, extra)

    def playbook(self, name: str, *args: str, check: bool = True, env: dict[str, str] | None = None,
                 timeout: int = 300) -> subprocess.CompletedProcess[str]:
        """Run `ansible-playbook cluster.secrets.<name> -e cluster_root=<root>`; output is stdout+stderr."""
        cmd = [str(VENV_BIN / "ansible-playbook"), f"cluster.secrets.{name}", "-e", f"cluster_root={self.root}", *args]
        result = subprocess.run(cmd, cwd=self.root, env=env or self.env(), capture_output=True, text=True,
                                timeout=timeout, check=False)
        result.stdout = result.stdout + result.stderr
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}")
        return result

    def decrypt(self, relpath: str, key_file: Path | None = None) -> str:
        env = {"SOPS_AGE_KEY_FILE": str(key_file or self.key_file), "PATH": os.environ.get("PATH", "")}
        out = subprocess.run([sops_binary(), "decrypt", str(self.root / relpath)], env=env, capture_output=True,
                             text=True, check=True)
        return out.stdout

    def snapshot(self) -> dict[str, bytes]:
        """Every file's bytes (outside .git), to prove a run wrote nothing."""
        return {str(p.relative_to(self.root)): p.read_bytes() for p in sorted(self.root.rglob("*"))
                if p.is_file() and ".git" not in p.relative_to(self.root).parts}

    def write(self, relpath: str, text: str) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path


def recap_changed(output: str) -> int:
    """The changed= count of the PLAY RECAP line for localhost."""
    for line in output.splitlines():
        if line.startswith("localhost") and "changed=" in line:
            return int(line.split("changed=")[1].split()[0])
    raise AssertionError(f"no PLAY RECAP in output:\n{output}")


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Repo]:
    """A factory: `make_repo()` copies the demo cluster (cluster.yaml, nodes.yaml, templates) and adds a real age key."""
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file

    def factory(name: str = "repo", demo: bool = True, key: bool = True) -> Repo:
        root = tmp_path / name
        home = tmp_path / f"{name}-home"
        home.mkdir()
        if demo:
            shutil.copytree(DEMO, root)
            for vars_file in ("cluster.yaml", "nodes.yaml"):  # as init leaves them: only the owner reads secrets
                (root / vars_file).chmod(0o600)
        else:
            root.mkdir()
        if key:
            generate_key_file(root / "age.key")
        return Repo(root, home)

    return factory


# cluster-template's delimiter table, for makejinja.toml files the tests write.
MAKEJINJA_DELIMITERS = """
[makejinja.delimiter]
block_start = "#%"
block_end = "%#"
comment_start = "#|"
comment_end = "#|"
variable_start = "#{"
variable_end = "}#"
"""
