# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A repository's own CUE schemas, run as its Taskfile runs them.

Taskfile-era cluster-template repositories ship ``.taskfiles/template/resources/<stem>.schema.cue``
and check ``<stem>.yaml`` with ``cue vet <stem>.yaml <stem>.schema.cue`` before rendering. configure
does the same when ``cue`` is on PATH, and turns cue's report into findings (file, line, key path,
message), with every secret value masked by the caller.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._findings import Finding

SCHEMA_DIR = Path(".taskfiles/template/resources")
CUE_TIMEOUT = 120
_POSITION = re.compile(r"^\s*(?:\./)?(?P<file>[^\s:]+):(?P<line>\d+):\d+\s*$")


def cue_schemas(root: Path, vars_files: list[Path]) -> list[tuple[Path, Path]]:
    """(vars file, schema) pairs the repository checks: ``<stem>.schema.cue`` for each vars file ``<stem>.*``."""
    folder = root / SCHEMA_DIR
    pairs = []
    for vars_file in vars_files:
        schema = folder / f"{vars_file.stem}.schema.cue"
        if schema.is_file() and vars_file.is_file():
            pairs.append((vars_file, schema))
    return pairs


def parse_cue_output(text: str, vars_file: Path) -> list[Finding]:
    """One finding per error cue reports, located in the vars file when cue names a position there."""
    findings: list[Finding] = []
    for line in text.splitlines():
        position = _POSITION.match(line)
        if position:
            if findings and findings[-1].line is None and Path(position["file"]).name == vars_file.name:
                findings[-1].line = int(position["line"])
            continue
        if not line.strip() or line.startswith((" ", "\t")):
            continue
        message = line.strip().rstrip(":")
        path, _sep, rest = message.partition(": ")
        key_path = tuple(int(p) if p.isdigit() else p for p in path.split(".")) if rest and " " not in path else ()
        findings.append(Finding(key_path, rest if key_path else message, vars_file.name, None,
                                "the repository's own schema rejects it; see its .taskfiles/template/resources"))
    return findings


def run_cue(root: Path, vars_files: list[Path], environ: Mapping[str, str] | None = None) -> tuple[list[Finding], list[str]]:
    """Run ``cue vet`` for every schema the repository ships; return findings and warnings (cue missing)."""
    pairs = cue_schemas(root, vars_files)
    if not pairs:
        return [], []
    env = dict(environ) if environ is not None else None
    binary = shutil.which("cue", path=(env or {}).get("PATH") if env else None)
    if binary is None:
        names = ", ".join(str(schema.relative_to(root)) for _vars, schema in pairs)
        return [], [f"the repository ships CUE schemas ({names}) but cue is not on PATH, so they were not checked; "
                    "install cue (https://cuelang.org) to have configure run them as the Taskfile does"]
    findings: list[Finding] = []
    for vars_file, schema in pairs:
        try:
            run = subprocess.run([binary, "vet", str(vars_file), str(schema)], cwd=root, env=env, capture_output=True,
                                 text=True, timeout=CUE_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            findings.append(Finding((), f"cue vet could not run ({exc.__class__.__name__})", vars_file.name, None))
            continue
        if run.returncode != 0:
            findings += parse_cue_output(run.stderr or run.stdout, vars_file) or [
                Finding((), f"cue vet failed with exit status {run.returncode}", vars_file.name, None)]
    return findings, []
