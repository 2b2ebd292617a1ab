# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the sops binary on encrypted files with exactly the age identities given.

sops normally also reads ``$SOPS_AGE_KEY_FILE`` and ``~/.config/sops/age/keys.txt``. For a
recovery test ("does the backed-up key alone decrypt?") or a rotation check ("does the new key
alone decrypt?") that would prove nothing, so every call here runs with a minimal environment,
an empty temporary HOME and the identities in ``SOPS_AGE_KEY``. The commands work on
ciphertext; decrypted output only comes back through a pipe.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import SopsToolError

SOPS_TIMEOUT = 120


class SopsRunner:
    """The sops binary with exactly the identities given: no key file from HOME or the environment."""

    def __init__(self, binary: str, root: Path, config: Path | None) -> None:
        self.binary = binary
        self.root = root
        self.config = config

    def run(self, args: list[str], identities: Iterable[AgeIdentity], what: str) -> bytes:
        secrets = "\n".join(i.secret for i in identities)
        with tempfile.TemporaryDirectory(prefix="cluster-secrets-home-") as home:
            env = {
                "PATH": os.environ.get("PATH", ""), "HOME": home, "XDG_CONFIG_HOME": home, "LANG": "C.UTF-8",
                "SOPS_AGE_KEY": secrets,
            }
            command = [self.binary] + (["--config", str(self.config)] if self.config else []) + args
            try:
                result = subprocess.run(command, cwd=self.root, env=env, capture_output=True, check=False,
                                        timeout=SOPS_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SopsToolError(f"{what}: sops did not run ({exc.__class__.__name__})") from None
        if result.returncode != 0:
            reason = " ".join(result.stderr.decode("utf-8", "replace").split())[:600]
            raise SopsToolError(f"{what}: sops failed: {reason}")
        return result.stdout

    def decrypts(self, path: Path, identities: Iterable[AgeIdentity]) -> bool:
        try:
            self.run(["decrypt", str(path)], identities, path.name)
        except SopsToolError:
            return False
        return True
