# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make smoke`: init, configure, an unchanged rerun and check mode on other ansible-core versions.

Usage: <python> scripts/smoke.py oldest|newest

  oldest  the oldest ansible-core that meta/runtime.yml's requires_ansible claims (run it on Python 3.11:
          ansible-core 2.16 supports controller Python 3.10-3.12)
  newest  the newest ansible-core on PyPI for the Python that runs this script (run it on Python 3.13)

Each gets its own venv under .build/ (gitignored), made by scripts/bootstrap_venv.py's steps on the Python
running this script, with the collection's own requirements.txt (what a user installs) instead of the
development requirements: the smoke runs also prove requirements.txt is enough. Nothing but the standard
library is needed to start it, so it works from a fresh clone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bootstrap_venv  # the sibling script; its steps are reused as they are

ROOT = bootstrap_venv.ROOT
EXAMPLE = ROOT / "examples" / "demo"
ENCRYPTED_FILE = "infrastructure/secrets.sops.yaml"


def oldest_core() -> str:
    """`ansible-core==X.Y.*` for the lowest version meta/runtime.yml's requires_ansible allows."""
    text = (ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8")
    match = re.search(r"""^requires_ansible:\s*["']?>=\s*(\d+)\.(\d+)""", text, re.MULTILINE)
    if not match:
        raise SystemExit("smoke: meta/runtime.yml has no `requires_ansible: \">=X.Y...\"` to take the oldest version from")
    return f"ansible-core=={match.group(1)}.{match.group(2)}.*"


def requirements_for(target: str) -> str:
    core = oldest_core() if target == "oldest" else "ansible-core"
    own = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    # newest: pip picks the newest release when the venv is made; `make clean` (or removing .build/smoke-newest) looks again
    return f"# smoke venv ({target}), written by scripts/smoke.py\n{core}\n{own}"


def prepare(target: str) -> Path:
    """Create or refresh .build/smoke-<target> with bootstrap_venv.py's steps."""
    venv = ROOT / ".build" / f"smoke-{target}"
    requirements = ROOT / ".build" / f"smoke-{target}.requirements.txt"
    requirements.parent.mkdir(parents=True, exist_ok=True)
    wanted = requirements_for(target)
    if not requirements.exists() or requirements.read_text(encoding="utf-8") != wanted:
        requirements.write_text(wanted, encoding="utf-8")
    bootstrap_venv.VENV = venv
    bootstrap_venv.REQUIREMENTS = requirements
    bootstrap_venv.main()
    return venv


class Smoke:
    def __init__(self, venv: Path, work: Path) -> None:
        self.venv = venv
        self.repo = work / "repo"
        self.home = work / "home"
        self.home.mkdir()
        shutil.copytree(EXAMPLE, self.repo)
        subprocess.run(["git", "init", "-q", str(self.repo)], check=True)
        self.failures: list[str] = []
        self.secrets: list[str] = []

    def env(self) -> dict[str, str]:
        env = {"PATH": os.pathsep.join([str(self.venv / "bin"), "/usr/bin", "/bin"]), "HOME": str(self.home),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
               "ANSIBLE_RETRY_FILES_ENABLED": "false", "LANG": "C.UTF-8"}
        return env

    def playbook(self, name: str, *args: str) -> tuple[int, str, int | None]:
        cmd = [str(self.venv / "bin" / "ansible-playbook"), f"cluster.secrets.{name}", "-e", "cluster_root=.", *args]
        proc = subprocess.run(cmd, cwd=self.repo, env=self.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=600, check=False)
        output = proc.stdout + proc.stderr
        match = re.search(r"^localhost\s*:.*?changed=(\d+)", output, re.MULTILINE)
        return proc.returncode, output, int(match.group(1)) if match else None

    def snapshot(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.repo)): p.read_bytes() for p in sorted(self.repo.rglob("*"))
                if p.is_file() and ".git" not in p.relative_to(self.repo).parts}

    def check(self, step: str, ok: bool, output: str, why: str) -> None:
        leaked = [value for value in self.secrets if value in output]
        if leaked:
            ok, why = False, f"{len(leaked)} secret value(s) in the output"
        print(f"  {'ok  ' if ok else 'FAIL'} {step}" + ("" if ok else f": {why}"), flush=True)
        if not ok:
            self.failures.append(step)
            print("\n".join("       | " + line for line in output.splitlines()[-40:]), flush=True)

    def run(self) -> bool:
        self.secrets = [line.split('"')[1] for line in (self.repo / "cluster.yaml").read_text().splitlines()
                        if re.match(r"^(tfstate_password|cloudflare_token|proxmox_api_token_secret):", line)]
        rc, out, _changed = self.playbook("init")
        self.check("init", rc == 0 and (self.repo / "age.key").is_file() and (self.repo / ".sops.yaml").is_file(), out,
                   f"exit status {rc}, or age.key/.sops.yaml missing")
        rc, out, changed = self.playbook("configure")
        secret = self.repo / ENCRYPTED_FILE
        self.check("configure", rc == 0 and bool(changed) and secret.is_file() and "ENC[" in secret.read_text(), out,
                   f"exit status {rc}, changed={changed}, or {ENCRYPTED_FILE} not encrypted")
        before = self.snapshot()
        rc, out, changed = self.playbook("configure")
        self.check("configure again, unchanged", rc == 0 and changed == 0 and self.snapshot() == before, out,
                   f"exit status {rc}, changed={changed}, or files were rewritten")
        cluster = self.repo / "cluster.yaml"
        cluster.write_text(cluster.read_text().replace('echo_greeting: "hello from cluster.yaml"',
                                                       'echo_greeting: "changed by the smoke run"'))
        before = self.snapshot()
        rc, out, changed = self.playbook("configure", "--check", "--diff")
        self.check("configure --check after a change", rc == 0 and changed == 1 and self.snapshot() == before, out,
                   f"exit status {rc}, changed={changed} (want 1), or check mode wrote files")
        return not self.failures


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in ("oldest", "newest"):
        raise SystemExit(__doc__)
    target = sys.argv[1]
    venv = prepare(target)
    version = subprocess.run([str(venv / "bin" / "python"), "-c", "import ansible; print(ansible.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    print(f"[smoke] {target}: ansible-core {version} on Python {sys.version.split()[0]} ({venv.relative_to(ROOT)})",
          flush=True)
    with tempfile.TemporaryDirectory(prefix=f"cluster-secrets-smoke-{target}-") as work:
        ok = Smoke(venv, Path(work)).run()
    print(f"[smoke] {target}: {'passed' if ok else 'FAILED'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
