# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rotate end to end: real sops, real keys; a rotation killed midway is finished by a rerun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from tests.conftest import recap_changed
from tests.day_two import encrypt_in_place, recipient, sops_run

EXTRA = {
    "kubernetes/apps/default/a/secret.sops.yaml": "apiVersion: v1\nkind: Secret\nstringData:\n  A: alpha-secret\n",
    "kubernetes/apps/default/b/secret.sops.yaml": "apiVersion: v1\nkind: Secret\nstringData:\n  B: beta-secret\n",
    "infrastructure/tofu/terraform.tfvars.sops.json": '{"token": "json-secret"}\n',
    "infrastructure/extra.sops.env": "TOKEN=dotenv-secret\n",
}
STATE = ".secrets-backup/rotate-state.json"


def rotated_repo(make_repo):
    repo = make_repo()
    repo.playbook("configure")
    for relpath, text in EXTRA.items():
        repo.write(relpath, text)
        encrypt_in_place(repo, relpath)
    old = repo.home / "old.key"
    shutil.copy(repo.key_file, old)
    return repo, old


def encrypted(repo) -> list[str]:
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeys
    from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate_files import encrypted_files
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops

    return encrypted_files(Sops(repo.root, AgeKeys(identities=[], looked=[])), r"\.sops\.[^/]+$")[0]


def recipients(repo, relpath) -> set[str]:
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeys
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops

    return Sops(repo.root, AgeKeys(identities=[], looked=[])).status(relpath).recipients


def plaintexts(repo, key) -> dict[str, str]:
    return {f: repo.decrypt(f, key_file=key) for f in encrypted(repo)}


def decrypts(repo, relpath, key) -> bool:
    return sops_run(repo, "decrypt", relpath, key_file=key).returncode == 0


def only_new_key(repo, old, before) -> None:
    new = repo.home / "new.key"
    shutil.copy(repo.key_file, new)
    assert recipient(new) != recipient(old)
    assert plaintexts(repo, new) == before
    for relpath in before:
        assert not decrypts(repo, relpath, old), relpath
    config = (repo.root / ".sops.yaml").read_text()
    assert recipient(new) in config
    assert recipient(old) not in config
    assert "Kubernetes and bootstrap manifests" in config  # comments survive the edit
    assert not (repo.root / STATE).exists()
    assert not list(repo.root.rglob(".rotate-tmp.*"))
    assert not list(repo.root.rglob("*.cluster-secrets-*.tmp"))  # what a killed write left went with the rerun


def test_rotate_re_encrypts_everything_for_a_new_key_only(make_repo):
    repo, old = rotated_repo(make_repo)
    before = plaintexts(repo, old)
    assert len(before) == 6

    snapshot = repo.snapshot()
    checked = repo.playbook("rotate", "--check")
    assert repo.snapshot() == snapshot
    assert "6 file(s) would be re-encrypted" in checked.stdout

    result = repo.playbook("rotate", "-vvvv")
    assert recap_changed(result.stdout) == 1
    assert "6 file(s) were re-encrypted for a new age key" in result.stdout
    for secret in ("alpha-secret", "beta-secret", "json-secret", "dotenv-secret", "AGE-SECRET-KEY"):
        assert secret not in result.stdout
    only_new_key(repo, old, before)
    backups = sorted((repo.root / ".secrets-backup").glob("age.key.*"))
    assert len(backups) == 1
    assert str(backups[0]) in result.stdout
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert backups[0].read_text() == old.read_text()
    assert stat.S_IMODE(repo.key_file.stat().st_mode) == 0o600

    # configure agrees with the rotated repository: nothing to rewrite (OpenTofu's own working folder aside:
    # its marker keys the credentials with the age key, which just changed)
    def repository_files() -> dict[str, bytes]:
        return {k: v for k, v in repo.snapshot().items() if "/.terraform/" not in f"/{k}"}

    after = repository_files()
    configured = repo.playbook("configure")
    assert recap_changed(configured.stdout) == 0
    assert repository_files() == after


# rotate in a child process the test controls: after the phase's files are re-encrypted and verified (on_step says
# "<phase>:write"), the child kills itself at the n-th rename, so some files of the phase are new and the rest old.
KILL_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from ansible_collections.cluster.secrets.plugins.plugin_utils import _fileio
    from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
    from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate import RotateOptions, rotate
    root, phase, at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    renames = {"armed": False, "count": 0}
    real_replace = _fileio.os.replace
    def replace(*args, **kwargs):
        if renames["armed"]:
            renames["count"] += 1
            if renames["count"] == at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(*args, **kwargs)
    _fileio.os.replace = replace   # injected by the test: the product has no hook
    def on_step(step, count):
        if step == phase + ":write":
            renames["armed"] = True
    with repository_lock(root, "rotate", 30):
        rotate(RotateOptions(root=root), on_step=on_step)
    print("finished")
""")


def kill_rotation(repo, phase: str, at: int) -> None:
    """Run rotate in a child process that kills itself at the ``at``-th file it renames in ``phase``."""
    env = {**repo.env(), "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", KILL_DRIVER, str(repo.root), phase, str(at)], cwd=repo.root, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr


@pytest.mark.parametrize("phase", ["add", "remove"])
def test_a_killed_rotation_is_finished_by_a_rerun(make_repo, phase):
    repo, old = rotated_repo(make_repo)
    before = plaintexts(repo, old)
    kill_rotation(repo, phase, 3)

    state = json.loads((repo.root / STATE).read_text())
    assert state["phase"] == phase
    assert state["done"]["remove"] == []
    assert sorted(state["done"]["add"]) == (sorted(before) if phase == "remove" else [])
    assert "AGE-SECRET-KEY" not in (repo.root / STATE).read_text()
    midway = repo.home / "midway.key"  # the key file holds the old and the new key while the rotation runs
    shutil.copy(repo.key_file, midway)
    new_only = repo.home / "new-only.key"
    new_only.write_text(next(line for line in midway.read_text().splitlines() if line.startswith("AGE-SECRET-KEY")) + "\n")
    new_recipient = state["new_recipient"]
    # killed between two renames: two files of the phase are written, the others are as the phase before left them
    if phase == "add":
        switched = [f for f in before if new_recipient in recipients(repo, f)]
    else:
        switched = [f for f in before if recipient(old) not in recipients(repo, f)]
    assert len(switched) == 2, switched
    for relpath in before:
        assert decrypts(repo, relpath, old) or decrypts(repo, relpath, new_only), relpath
    assert plaintexts(repo, midway) == before

    doctor = repo.playbook("doctor", check=False)
    assert "a key rotation was interrupted" in doctor.stdout
    assert "stale temporary file from an interrupted run" in doctor.stdout  # the renames the kill cut short

    result = repo.playbook("rotate")
    assert "an interrupted rotation was resumed" in result.stdout
    only_new_key(repo, old, before)


def test_data_keys_rotation_keeps_recipients(make_repo):
    repo, old = rotated_repo(make_repo)
    before = plaintexts(repo, old)
    metadata = {f: yaml.safe_load((repo.root / f).read_text())["sops"] for f in before if f.endswith(".yaml")}
    time.sleep(1.1)  # lastmodified has one-second resolution
    result = repo.playbook("rotate", "-e", "rotate_mode=data_keys")
    assert "6 file(s) were given a new data key" in result.stdout
    assert plaintexts(repo, old) == before
    for relpath, meta in metadata.items():
        now = yaml.safe_load((repo.root / relpath).read_text())["sops"]
        assert [a["recipient"] for a in now["age"]] == [a["recipient"] for a in meta["age"]]
        assert now["lastmodified"] != meta["lastmodified"]
        assert now["age"][0]["enc"] != meta["age"][0]["enc"]
    assert repo.key_file.read_text() == old.read_text()


SOPS_AGE = "bootstrap/sops-age.sops.yaml"


def test_rotate_says_configure_must_re_render_the_flux_sops_age_secret(make_repo):
    """bootstrap/sops-age.sops.yaml holds the age private key: rotation re-encrypts it, only configure re-renders it."""
    repo, old = rotated_repo(make_repo)
    key_lines = "".join(f"    {line}\n" for line in repo.key_file.read_text().splitlines())
    repo.write(SOPS_AGE, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sops-age\n  namespace: flux-system\n"
                         f"stringData:\n  age.agekey: |\n{key_lines}")
    encrypt_in_place(repo, SOPS_AGE)
    checked = repo.playbook("rotate", "--check")
    assert "cluster.secrets.configure" in checked.stdout
    result = repo.playbook("rotate", "-v")
    assert recap_changed(result.stdout) == 1
    assert f"{SOPS_AGE}: still holds the OLD age private key" in result.stdout
    assert "configure must re-render it with the new key" in result.stdout
    assert "run `ansible-playbook cluster.secrets.configure` now" in result.stdout
    assert '"stale_key_files": [' in result.stdout
    assert "AGE-SECRET-KEY" not in result.stdout
    # it is indeed re-encrypted for the new key only, and still holds the old key (which only configure can change)
    assert not decrypts(repo, SOPS_AGE, old)
    assert old.read_text().splitlines()[-1] in repo.decrypt(SOPS_AGE)


def test_files_left_alone_do_not_mark_the_task_skipped(make_repo):
    """`skipped` is a result key Ansible reserves: a list there showed `skipping:` for a rotation that rewrote files."""
    repo, _old = rotated_repo(make_repo)
    other = repo.home / "other.key"
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file

    stranger = "kubernetes/apps/default/c/secret.sops.yaml"
    repo.write(stranger, "apiVersion: v1\nkind: Secret\nstringData:\n  C: gamma-secret\n")
    assert sops_run(repo, "encrypt", "--in-place", "--age", generate_key_file(other), stranger, key_file=other).returncode == 0
    result = repo.playbook("rotate", "-v", "-e", "rotate_mode=data_keys")
    assert recap_changed(result.stdout) == 1
    # the rotate task itself (the fleet summary after it is skipped on purpose: one cluster)
    rotate_task = result.stdout.split("TASK [cluster.secrets.rotate : Rotate the keys of every encrypted file]")[1]
    rotate_task = rotate_task.split("TASK [")[0]
    assert "skipping:" not in rotate_task and "changed: [localhost]" in rotate_task
    assert '"files_skipped": [' in result.stdout
    assert f"skipped: {stranger} (not encrypted for your key)" in result.stdout
