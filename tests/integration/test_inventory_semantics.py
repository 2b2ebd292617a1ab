# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What `hosts:` means: the roles work on the controller, once per repository. A play of the user's own over two
inventory hosts renders a shared repository once (the first host does it, delegated to the controller; the other
skips), renders two repositories once each when the hosts name different ones, and never touches a host it cannot
reach, even with tasks that are modules (init's copy and lineinfile)."""

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


def test_two_hosts_one_repository_render_once(make_repo, tmp_path):
    repo = make_repo()
    play = user_play(tmp_path, ["configure"])
    inventory = "[clusters]\nfirst ansible_connection=local\nsecond ansible_connection=local\n"
    result = run_play(repo, play, inventory, "-e", f"cluster_root={repo.root}")
    assert result.returncode == 0, result.stdout
    # the controller rendered once, reported under the first host; the second host skipped
    assert task_lines(result.stdout, RENDER) == ["changed: [first -> localhost]", "skipping: [second]"]
    assert "ENC[" in (repo.root / "infrastructure/secrets.sops.yaml").read_text()
    assert recap(result.stdout)["second"]["changed"] == 0
    # again: nothing to do, and still once
    before = repo.snapshot()
    again = run_play(repo, play, inventory, "-e", f"cluster_root={repo.root}")
    assert task_lines(again.stdout, RENDER) == ["ok: [first -> localhost]", "skipping: [second]"]
    assert repo.snapshot() == before


def test_hosts_naming_different_repositories_each_render_their_own(make_repo, tmp_path):
    one, two = make_repo("one"), make_repo("two")
    play = user_play(tmp_path, ["configure"])
    # A fleet: each host names its repository (and its key, found in the repository).
    inventory = (f"[clusters]\nfirst ansible_connection=local cluster_root={one.root}\n"
                 f"second ansible_connection=local cluster_root={two.root}\n"
                 f"third ansible_connection=local cluster_root={one.root}\n")
    result = run_play(one, play, inventory)
    assert result.returncode == 0, result.stdout
    assert task_lines(result.stdout, RENDER) == [
        "changed: [first -> localhost]", "changed: [second -> localhost]", "skipping: [third]"]
    for repo in (one, two):
        assert "ENC[" in (repo.root / "infrastructure/secrets.sops.yaml").read_text()
        assert "tfstate_password" in repo.decrypt("infrastructure/secrets.sops.yaml")


def test_an_unreachable_host_is_never_contacted_nor_reported_as_done(make_repo, tmp_path):
    repo = make_repo(demo=False, key=False)
    subprocess.run(["git", "init", "-q", str(repo.root)], check=True)
    play = user_play(tmp_path, ["init"])
    # `second` would be reached over SSH on a port nothing listens on; init's copy/lineinfile are modules
    inventory = (f"[clusters]\nfirst ansible_connection=local ansible_python_interpreter={VENV_BIN / 'python'}\n"
                 "second ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=9 ansible_user=nobody\n")
    result = run_play(repo, play, inventory, "-e", f"cluster_root={repo.root}")
    assert result.returncode == 0, result.stdout
    stats = recap(result.stdout)
    assert stats["second"]["unreachable"] == 0 and stats["second"]["changed"] == 0
    assert task_lines(result.stdout, "Find the age key, or generate one") == [
        "changed: [first -> localhost]", "skipping: [second]"]
    assert task_lines(result.stdout, "Keep cluster.yaml, the age key and tfvars out of git") == [
        "changed: [first -> localhost]", "skipping: [second]"]
    assert sorted(p.name for p in repo.root.iterdir() if p.name != ".git") == [
        ".age-public-key", ".gitignore", ".schemas", ".sops.yaml", "age.key", "cluster.yaml"]
    # with facts gathered, the unreachable host drops out first, and the reachable one does the work
    gathered = run_play(repo, user_play(tmp_path, ["init"], gather_facts=True), inventory, "-e", f"cluster_root={repo.root}")
    assert recap(gathered.stdout)["second"]["unreachable"] == 1
    assert task_lines(gathered.stdout, "Find the age key, or generate one") == ["ok: [first -> localhost]"]
