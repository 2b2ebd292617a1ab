# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Type-check plugins/ with mypy, the tree staged as ansible_collections/cluster/secrets (as Ansible imports it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    stage = ROOT / ".build" / "mypy"
    link = stage / "ansible_collections" / "cluster" / "secrets"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(ROOT, target_is_directory=True)
    mypy = Path(sys.executable).parent / "mypy"
    command = [str(mypy), "--config-file", str(ROOT / "mypy.ini"), "--no-site-packages", "ansible_collections/cluster/secrets/plugins"]
    return subprocess.run(command, cwd=stage, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
