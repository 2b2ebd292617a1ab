# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What `hosts:` means: the roles work on the controller, each repository by exactly one host. A play of the user's
own over two inventory hosts naming one repository stops before writing anything (two workers would write it at
once); hosts naming different repositories each render their own, delegated to the controller; a host that cannot be
reached is never contacted, even by tasks that are modules (init's copy and lineinfile). The playbooks' own fleet
(the inventory group `clusters`) is tests/integration/test_fleet.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import VENV_BIN, Repo

RENDER = "Render cluster.yaml into the repository and encrypt its secrets"


def user_play(tmp_path: Path, roles: list[str], gather_facts: bool = False) -> Path:
    play = tmp_path / "site.yml"
    play.write_text(
        "---\n- name: A play of the user's own, over every host\n  hosts: all\n"
        f"  gather_facts: {str(gather_facts).lower()}\n  roles:\n"
        + "".join(f"    - role: cluster.secrets.{role}\n" for role in roles))
    return play


def run_play(repo: Repo, play: Path, inventory: str, *args: str) -> subprocess.CompletedProcess[str]:
    hosts = play.parent / "hosts.ini"
    hosts.write_text(inventory)
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(hosts), str(play), *args], cwd=play.parent,
                            env=repo.env(), capture_output=True, text=True, timeout=600, check=False)
    result.stdout += result.stderr
    return result


def task_lines(output: str, task: str) -> list[str]:
    """The per-host result lines of one task (ok:, changed:, skipping:, fatal:...), each once (loop items fold
    into one), sorted: hosts finish in any order."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("TASK [") and f": {task}]" in line:
            block = []
            for following in lines[index + 1:]:
                if following.startswith(("TASK [", "PLAY RECAP", "RUNNING HANDLER")):
                    break
                if re.match(r"^(ok|changed|skipping|fatal|failed): \[", following):
                    block.append(following.split(" => ")[0].strip())
            return sorted(set(block))
    raise AssertionError(f"task {task!r} not in output:\n{output}")


def recap(output: str) -> dict[str, dict[str, int]]:
    stats = {}
    for line in output.split("PLAY RECAP", 1)[1].splitlines()[1:]:
        if ":" in line:
            host, counts = line.split(":", 1)
            stats[host.strip()] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return stats


def test_two_hosts_one_repository_stop_before_anything_is_written(make_repo, tmp_path):
    repo = make_repo()
    play = user_play(tmp_path, ["configure"])
    inventory = "[clusters]\nfirst ansible_connection=local\nsecond ansible_connection=local\n"
    before = repo.snapshot()
    result = run_play(repo, play, inventory, "-e", f"cluster_root={repo.root}")
    assert result.returncode != 0, result.stdout
    assert f"first and second name the same repository, {repo.root}: nothing was written" in result.stdout
    assert f"second and first name the same repository, {repo.root}: nothing was written" in result.stdout
    assert f"TASK [cluster.secrets.configure : {RENDER}]" not in result.stdout
    assert repo.snapshot() == before
    # one of them, by --limit: done once
    limited = run_play(repo, play, inventory, "-e", f"cluster_root={repo.root}", "--limit", "first")
    assert limited.returncode == 0, limited.stdout
    assert task_lines(limited.stdout, RENDER) == ["changed: [first -> localhost]"]
    assert "ENC[" in (repo.root / "infrastructure/secrets.sops.yaml").read_text()


def test_hosts_naming_different_repositories_each_render_their_own(make_repo, tmp_path):
    one, two = make_repo("one"), make_repo("two")
    play = user_play(tmp_path, ["configure"])
    # A fleet: each host names its repository (and its key, found in the repository).
    inventory = (f"[clusters]\nfirst ansible_connection=local cluster_root={one.root}\n"
                 f"second ansible_connection=local cluster_root={two.root}\n")
    result = run_play(one, play, inventory)
    assert result.returncode == 0, result.stdout
    assert task_lines(result.stdout, RENDER) == ["changed: [first -> localhost]", "changed: [second -> localhost]"]
    for repo in (one, two):
        assert "ENC[" in (repo.root / "infrastructure/secrets.sops.yaml").read_text()
        assert "tfstate_password" in repo.decrypt("infrastructure/secrets.sops.yaml")
    # the role sums the play up once, a line per cluster (the demo's values are the same in both: reported, not shown)
    assert "configure on 2 cluster(s): 2 changed" in result.stdout
    assert "one value in first and second: first infrastructure/secrets.sops.yaml tfstate_password" in result.stdout


def test_an_unreachable_host_is_never_contacted_nor_reported_as_done(make_repo, tmp_path):
    repo, remote = make_repo(demo=False, key=False), make_repo("remote", demo=False, key=False)
    for each in (repo, remote):
        subprocess.run(["git", "init", "-q", str(each.root)], check=True)
    play = user_play(tmp_path, ["init"])
    # `second` would be reached over SSH on a port nothing listens on; init's copy/lineinfile are modules. Its
    # repository is a folder on the controller like any other: the work is delegated there.
    inventory = (f"[clusters]\nfirst ansible_connection=local ansible_python_interpreter={VENV_BIN / 'python'} "
                 f"cluster_root={repo.root}\n"
                 f"second ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=9 ansible_user=nobody "
                 f"cluster_root={remote.root}\n")
    result = run_play(repo, play, inventory)
    assert result.returncode == 0, result.stdout
    stats = recap(result.stdout)
    assert stats["second"]["unreachable"] == 0
    assert task_lines(result.stdout, "Find the age key, or generate one") == [
        "changed: [first -> localhost]", "changed: [second -> localhost]"]
    assert task_lines(result.stdout, "Keep cluster.yaml, the age key and tfvars out of git") == [
        "changed: [first -> localhost]", "changed: [second -> localhost]"]
    for each in (repo, remote):
        assert sorted(p.name for p in each.root.iterdir() if p.name != ".git") == [
            ".age-public-key", ".gitignore", ".schemas", ".sops.yaml", "age.key", "cluster.yaml"]
    # with facts gathered, the unreachable host drops out first, and the reachable one does the work
    gathered = run_play(repo, user_play(tmp_path, ["init"], gather_facts=True), inventory)
    assert recap(gathered.stdout)["second"]["unreachable"] == 1
    assert task_lines(gathered.stdout, "Find the age key, or generate one") == ["ok: [first -> localhost]"]
