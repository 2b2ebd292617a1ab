# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The repository's own CUE schemas. cue cannot be installed here (no package in PyPI, npm or Debian): the
runner is tested with a stand-in executable that prints what `cue vet` prints for a rejected value."""

from __future__ import annotations

import os
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._cue import cue_schemas, parse_cue_output, run_cue

CUE_REPORT = """nodes.0.address: invalid value "10.0.0" (does not satisfy net.IPv4):
    ./.taskfiles/template/resources/nodes.schema.cue:9:13
    ./nodes.yaml:3:14
cloudflare_domain: incomplete value =~"^[a-z0-9.-]+$"
"""


def repo(tmp_path: Path) -> list[Path]:
    schemas = tmp_path / ".taskfiles/template/resources"
    schemas.mkdir(parents=True)
    (schemas / "nodes.schema.cue").write_text("#Node: {}\n")
    (tmp_path / "nodes.yaml").write_text("nodes:\n  - name: a\n    address: 10.0.0\n")
    (tmp_path / "cluster.yaml").write_text("x: 1\n")
    return [tmp_path / "cluster.yaml", tmp_path / "nodes.yaml"]


def test_schemas_are_paired_by_stem(tmp_path):
    files = repo(tmp_path)
    assert cue_schemas(tmp_path, files) == [(files[1], tmp_path / ".taskfiles/template/resources/nodes.schema.cue")]


def test_report_becomes_located_findings(tmp_path):
    findings = parse_cue_output(CUE_REPORT, tmp_path / "nodes.yaml")
    assert [(f.path, f.line, f.message) for f in findings] == [
        (("nodes", 0, "address"), 3, 'invalid value "10.0.0" (does not satisfy net.IPv4)'),
        (("cloudflare_domain",), None, 'incomplete value =~"^[a-z0-9.-]+$"'),
    ]


def test_without_cue_the_user_is_told(tmp_path):
    findings, warnings = run_cue(tmp_path, repo(tmp_path), {"PATH": str(tmp_path / "nothing")})
    assert findings == [] and "cue is not on PATH" in warnings[0] and "nodes.schema.cue" in warnings[0]


def test_cue_vet_runs_like_the_taskfile(tmp_path):
    files = repo(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "args"
    stand_in = bin_dir / "cue"
    stand_in.write_text(f"#!/bin/sh\necho \"$@\" > {log}\ncat >&2 <<'EOF'\n{CUE_REPORT}EOF\nexit 1\n")
    os.chmod(stand_in, 0o700)
    findings, warnings = run_cue(tmp_path, files, {"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert warnings == [] and log.read_text().split() == ["vet", str(files[1]), str(tmp_path / ".taskfiles/template/resources/nodes.schema.cue")]
    assert findings[0].render().startswith("nodes.yaml:3: nodes[0].address: invalid value")
