# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an OpenTofu run was asked to do, and where: the options of the opentofu action (their argument spec is
``_argspec.OPENTOFU_SPEC``), their checks, whether the configuration keeps its state on a remote backend, and the
one error type every OpenTofu plugin util raises.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TOFU_DIR = "infrastructure/tofu"
SECRETS_FILE = "infrastructure/secrets.sops.yaml"
BACKEND_FILE = "backend.tf"
# What the `example` command writes: every variable the configuration declares, without values (committed).
EXAMPLE_FILE = "terraform.tfvars.example"
COMMANDS = ("init", "plan", "apply", "destroy", "example")
CONFIRMED_COMMANDS = ("apply", "destroy")
CONFIG_GLOBS = ("*.tf", "*.tf.json", "*.tofu")
# A `backend "<type>" {` (any type but local) or a `cloud {` block: the state lives elsewhere than in the folder.
_REMOTE_BLOCK_RE = re.compile(r'(^|[\s{])(backend\s+"(?!local")[^"]+"\s*\{|cloud\s*\{)')
_REMOTE_JSON_RE = re.compile(r'"(backend|cloud)"\s*:\s*\{(?!\s*"local")')
_COMMENTS_RE = re.compile(r'/\*.*?\*/|(#|//)[^\n]*', re.DOTALL)


class OpenTofuError(Exception):
    """A failure with a cause the user can act on; the message never holds a secret value."""

    def __init__(self, message: str, cause: str = "failed") -> None:
        super().__init__(message)
        self.cause = cause


@dataclass
class TofuOptions:
    root: Path
    command: str = "init"
    binary: str | None = None
    tofu_dir: str = TOFU_DIR
    secrets_file: str = SECRETS_FILE
    age_key_file: str | None = None
    sops_binary: str | None = None
    arguments: list[str] = field(default_factory=list)
    confirm: str = ""
    init_required: bool = False
    timeout: int | None = None
    # Accept a configuration without a remote backend: its state is a local terraform.tfstate, secrets in plaintext.
    allow_local_state: bool = False
    environ: Mapping[str, str] | None = None
    # Called with every scrubbed output line of plan/apply/destroy while the binary runs (None: output is only returned).
    progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if self.command not in COMMANDS:
            raise OpenTofuError(f"unknown OpenTofu command {self.command!r}; use one of: {', '.join(COMMANDS)}", "usage")

    @property
    def workdir(self) -> Path:
        return self.root / self.tofu_dir

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    @property
    def data_dir(self) -> Path:
        return self.workdir / self.env.get("TF_DATA_DIR", ".terraform")


def remote_backend(workdir: Path) -> bool:
    """Whether a configuration file declares a remote state backend (a ``backend`` block other than ``local``, or
    ``cloud``); without one the state would be a plaintext ``terraform.tfstate`` in the folder."""
    for pattern in CONFIG_GLOBS:
        for path in sorted(workdir.glob(pattern)):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if path.name.endswith(".json"):
                if _REMOTE_JSON_RE.search(text):
                    return True
            elif _REMOTE_BLOCK_RE.search(_COMMENTS_RE.sub("", text)):
                return True
    return False
