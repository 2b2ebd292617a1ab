# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers for the day-two tests (guard, migrate, rotate, doctor): repositories as users really have them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import Repo, sops_binary

INFRA_SECRETS = "infrastructure/secrets.sops.yaml"
# What a user typed into `sops edit infrastructure/secrets.sops.yaml` before cluster.yaml held these keys.
HAND_EDITED = {
    "cf_account_id": "fedcba9876543210fedcba9876543210",
    "tfstate_username": "state-admin",
    "tfstate_password": "hand-edited: p@ss 'w0rd' #1",
}
# The Proxmox token as the demo cluster.yaml has it (the template needs it whenever Proxmox is configured).
PROXMOX = {
    "proxmox_api_token_id": "terraform@pve!opentofu",
    "proxmox_api_token_secret": "00000000-demo-0000-0000-000000000000",
}
INFRA_KEYS = (*HAND_EDITED, *PROXMOX)


def recipient(key_file: Path) -> str:
    for line in key_file.read_text().splitlines():
        if line.startswith("# public key: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"no public key comment in {key_file}")


def write_sops_config(repo: Repo) -> None:
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config

    repo.write(".sops.yaml", default_sops_config([recipient(repo.key_file)]))


def sops_run(repo: Repo, *args: str, key_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"SOPS_AGE_KEY_FILE": str(key_file or repo.key_file), "PATH": os.environ.get("PATH", "")}
    return subprocess.run([sops_binary(), *args], cwd=repo.root, env=env, capture_output=True, text=True, check=False)


def encrypt_in_place(repo: Repo, relpath: str) -> None:
    result = sops_run(repo, "encrypt", "--in-place", relpath)
    assert result.returncode == 0, result.stderr


def strip_keys(repo: Repo, keys: tuple[str, ...] = INFRA_KEYS) -> str:
    """Remove top-level keys from cluster.yaml (as a user who never had them there); return the new text."""
    path = repo.root / "cluster.yaml"
    lines = [line for line in path.read_text().splitlines(keepends=True) if not line.startswith(tuple(f"{k}:" for k in keys))]
    path.write_text("".join(lines))
    return path.read_text()


def hand_edited_repo(make_repo, name: str = "repo", proxmox: bool = True) -> Repo:
    """A repository whose infrastructure secrets were edited by hand and whose cluster.yaml lacks them.

    With ``proxmox`` cluster.yaml keeps the Proxmox settings and token (as the template requires them together);
    without it cluster.yaml has no Proxmox keys at all, and the token lives only in the secret file.
    """
    repo = make_repo(name)
    write_sops_config(repo)
    strip_keys(repo, tuple(HAND_EDITED) if proxmox else (*INFRA_KEYS, "proxmox_api_url", "proxmox_node"))
    cluster = repo.root / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace(
        "# Your own keys are welcome", "# Infrastructure secrets were kept in secrets.sops.yaml until now\n# Your own keys are welcome"))
    body = "---\n# Edited with `sops edit`\n" + "".join(f"{k}: {_quote(v)}\n" for k, v in {**HAND_EDITED, **PROXMOX}.items())
    repo.write(INFRA_SECRETS, body)
    encrypt_in_place(repo, INFRA_SECRETS)
    return repo


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def git(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(repo.home), "PATH": os.environ.get("PATH", ""), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=repo.root, env=env, capture_output=True, text=True, check=True)
