# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""doctor end to end: a clean repository passes, every planted problem is found."""

from __future__ import annotations

import re
import shutil

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
from tests.day_two import INFRA_SECRETS, git, sops_run

ECHO_SECRET = "kubernetes/apps/default/echo/app/secret.sops.yaml"


def clean_repo(make_repo, name="repo"):
    repo = make_repo(name)
    repo.playbook("init")
    repo.playbook("configure")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "cluster")
    return repo


def finding(output: str, status: str, check: str, subject: str) -> bool:
    pattern = rf"^{status}\s+{re.escape(check)}\s+{re.escape(subject)}\s"
    return any(re.search(pattern, line.strip().strip('",')) for line in output.splitlines())


def test_clean_repository_passes_with_a_recovery_test(make_repo):
    repo = clean_repo(make_repo)
    backup = repo.home / "backup.key"
    shutil.copy(repo.key_file, backup)
    result = repo.playbook("doctor", "-e", f"doctor_recovery_key_file={backup}")
    assert "0 error(s)" in result.stdout
    assert finding(result.stdout, "OK", "secret file", INFRA_SECRETS)
    assert "encrypted, for your key, matches its rule, decrypts, rotated 0 day(s) ago" in result.stdout
    assert finding(result.stdout, "OK", "secret file", ECHO_SECRET)
    assert finding(result.stdout, "OK", "recovery", str(backup))
    assert finding(result.stdout, "OK", "tools", "sops")
    assert finding(result.stdout, "OK", "git", "age.key")
    assert "tfstate" not in result.stdout.replace("tfstate_", "")  # no values, no plaintext


def test_recovery_test_with_a_key_that_is_not_the_one_in_use(make_repo):
    repo = clean_repo(make_repo)
    stale = repo.home / "stale.key"
    generate_key_file(stale)
    result = repo.playbook("doctor", "-e", f"doctor_recovery_key_file={stale}", check=False)
    assert result.returncode != 0
    assert finding(result.stdout, "ERROR", "recovery", str(stale))


def test_every_planted_problem_is_found(make_repo):
    repo = clean_repo(make_repo)
    # a plaintext secret committed by mistake
    repo.write("kubernetes/apps/default/leak/secret.sops.yaml", "stringData:\n  TOKEN: plaintext-token-value\n")
    # a file encrypted for someone else's key
    other = repo.home / "other.key"
    other_recipient = generate_key_file(other)
    repo.write("kubernetes/apps/default/other/secret.sops.yaml", "stringData:\n  TOKEN: other-team-token\n")
    result = sops_run(repo, "encrypt", "--in-place", "--age", other_recipient, "kubernetes/apps/default/other/secret.sops.yaml",
                      key_file=other)
    assert result.returncode == 0, result.stderr
    # an old data key
    path = repo.root / INFRA_SECRETS
    path.write_text(re.sub(r"lastmodified: \S+", 'lastmodified: "2020-01-01T00:00:00Z"', path.read_text()))
    # age.key tracked by git, and cluster.yaml missing from .gitignore
    git(repo, "add", "-f", "age.key", "kubernetes/apps/default/leak/secret.sops.yaml")
    git(repo, "commit", "-q", "-m", "oops")
    ignore = repo.root / ".gitignore"
    ignore.write_text("".join(line for line in ignore.read_text().splitlines(keepends=True) if line.strip() != "cluster.yaml"))

    before = repo.snapshot()
    out = repo.playbook("doctor", check=False)
    assert out.returncode != 0
    assert repo.snapshot() == before
    text = out.stdout
    assert finding(text, "ERROR", "encryption", "kubernetes/apps/default/leak/secret.sops.yaml")
    assert "NOT ENCRYPTED: a plaintext secret committed to git" in text
    assert finding(text, "ERROR", "recipients", "kubernetes/apps/default/other/secret.sops.yaml")
    assert finding(text, "WARNING", "rotation", INFRA_SECRETS)
    assert finding(text, "ERROR", "git", "age.key")
    assert finding(text, "ERROR", "gitignore", "cluster.yaml")
    assert finding(text, "OK", "gitignore", "age.key")
    for value in ("plaintext-token-value", "other-team-token"):
        assert value not in text


def test_missing_key_and_missing_sops_config(make_repo):
    repo = clean_repo(make_repo)
    repo.key_file.unlink()
    (repo.root / ".sops.yaml").unlink()
    out = repo.playbook("doctor", check=False)
    assert out.returncode != 0
    assert finding(out.stdout, "ERROR", "age key", "age key")
    assert finding(out.stdout, "ERROR", "sops config", ".sops.yaml")
    assert "config not found" in out.stdout


def test_leaks_under_other_names_history_temps_and_modes(make_repo):
    """Issue 11 item 9: what doctor missed, and what it called a committed secret although it was not one."""
    repo = clean_repo(make_repo)
    key_line = next(line for line in repo.key_file.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-"))
    # the age key committed under another name
    repo.write("keys.txt", f"# backup of my key\n{key_line}\n")
    # a plaintext Secret in a file not named *.sops.*
    repo.write("kubernetes/apps/default/leak/secret.yaml",
               "apiVersion: v1\nkind: Secret\nmetadata:\n  name: leak\nstringData:\n  TOKEN: plain-SENTINEL-token\n")
    git(repo, "add", "-f", "keys.txt", "kubernetes/apps/default/leak/secret.yaml", "age.key")
    git(repo, "commit", "-q", "-m", "oops")
    # age.key removed from the index, but still in the history
    git(repo, "rm", "-q", "--cached", "age.key")
    git(repo, "commit", "-q", "-m", "untrack the key")
    # *.tfvars covered by a nested .gitignore only
    ignore = repo.root / ".gitignore"
    ignore.write_text("".join(line for line in ignore.read_text().splitlines(keepends=True) if "tfvars" not in line))
    repo.write("infrastructure/.gitignore", "*.tfvars\n")
    repo.write("infrastructure/terraform.tfvars", 'token = "tfvars-SENTINEL"\n')
    # temp files of a killed run, today's name and the coming one
    repo.write("infrastructure/.secrets.sops.yaml.k2j4x9_a.tmp", "tfstate_password: temp-SENTINEL\n")
    repo.write("kubernetes/.cluster-settings.yaml.cluster-secrets-3fz9.tmp", "x: 1\n")
    # cluster vars readable by others
    (repo.root / "cluster.yaml").chmod(0o644)

    out = repo.playbook("doctor", check=False)
    text = out.stdout
    assert out.returncode != 0
    assert finding(text, "ERROR", "git", "keys.txt")
    assert "an age private key is committed to git (under another name)" in text
    assert finding(text, "ERROR", "encryption", "kubernetes/apps/default/leak/secret.yaml")
    assert "a plaintext Kubernetes Secret (leak; keys TOKEN)" in text
    assert finding(text, "ERROR", "git history", "age.key")
    assert "which this repository still uses" in text
    assert finding(text, "OK", "git", "age.key")  # no longer tracked: only the history holds it
    assert finding(text, "OK", "gitignore", "*.tfvars")
    for temp in ("infrastructure/.secrets.sops.yaml.k2j4x9_a.tmp", "kubernetes/.cluster-settings.yaml.cluster-secrets-3fz9.tmp"):
        assert finding(text, "WARNING", "temp file", temp)
        assert not finding(text, "ERROR", "encryption", temp)
    assert "stale temporary file from an interrupted run: delete it" in text
    assert finding(text, "WARNING", "permissions", "cluster.yaml")
    assert f"chmod 600 {repo.root / 'cluster.yaml'}" in text
    for secret in ("plain-SENTINEL-token", "tfvars-SENTINEL", "temp-SENTINEL", "AGE-SECRET-KEY-1"):
        assert secret not in text


def test_tfvars_not_covered_is_still_a_warning(make_repo):
    repo = clean_repo(make_repo)
    ignore = repo.root / ".gitignore"
    ignore.write_text("".join(line for line in ignore.read_text().splitlines(keepends=True) if "tfvars" not in line))
    repo.write("infrastructure/terraform.tfvars", 'token = "x"\n')
    out = repo.playbook("doctor", check=False)
    assert finding(out.stdout, "WARNING", "gitignore", "*.tfvars")
    assert "does not cover infrastructure/terraform.tfvars" in out.stdout
