# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run `ansible-test sanity` or `ansible-test units` on a staged copy of the collection.

Usage: python scripts/run_ansible_test.py sanity|units [ansible-test arguments, e.g. paths]

ansible-test needs the tree at .../ansible_collections/cluster/secrets, so the files git
knows about (tracked, plus untracked ones that are not ignored) are copied to a fresh
temporary <tmp>/ansible_collections/cluster/secrets, next to the dependency collections,
and the copy is removed afterwards.

ansible-test bootstraps pip in its virtual environments with a get-pip script it
downloads from a host this project cannot rely on; a local stand-in that uses the
standard library's ensurepip and then the package registry is cached where
ansible-test looks for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
GET_PIP_STANDIN = '''\
"""Stand-in for get-pip.py: bootstrap pip with ensurepip, then install what was asked from the registry."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
'''


def stage(build: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    target = build / "cluster" / "secrets"
    for name in filter(None, listed):
        source = ROOT / name
        if not source.is_file():
            continue
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
    site = Path(sysconfig.get_paths()["purelib"]) / "ansible_collections"
    for dependency in ("community/sops", "kubernetes/core"):
        link = build / dependency
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(site / dependency, target_is_directory=True)
    return target


def ensure_get_pip() -> None:
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for version in ("24_2", "24_3", "25_0", "25_1", "25_2", "25_3"):
        path = cache / f"get_pip_{version}.py"
        if not path.exists():
            path.write_text(GET_PIP_STANDIN)


def run(target: Path, *args: str) -> int:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(Path(sys.executable).parent / "ansible-test"), *args], cwd=target, env=env, check=False).returncode


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("sanity", "units"):
        raise SystemExit("usage: run_ansible_test.py sanity|units [ansible-test arguments]")
    ensure_get_pip()
    with tempfile.TemporaryDirectory(prefix="cluster-secrets-ansible-test-") as tmp:
        target = stage(Path(tmp) / "ansible_collections")
        return run(target, sys.argv[1], "--venv", "--python", PYTHON, "--requirements", *sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
