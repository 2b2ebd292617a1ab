# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The repository walk doctor and rotate share: secret files and the temporaries of interrupted runs."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write
from ansible_collections.cluster.secrets.plugins.plugin_utils._tree import (
    is_stale_temp,
    rotate_temp,
    secret_files,
    stale_temps,
    temp_target,
    walk,
)

PATTERN = r"\.sops\.[^/]+$"


def touch(root: Path, *relpaths: str) -> None:
    for relpath in relpaths:
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text("x: 1\n")


def test_secret_files_skip_templates_tools_and_the_sops_config(tmp_path):
    touch(tmp_path, "a/x.sops.yaml", "templates/t.sops.yaml.j2", "other/t.sops.yaml.j2", ".git/y.sops.yaml", ".sops.yaml",
          ".secrets-backup/z.sops.yaml", "b/.rotate-tmp.w.sops.yaml", "b/plain.yaml")
    assert secret_files(tmp_path, PATTERN) == ["a/x.sops.yaml"]


def test_secret_files_skip_the_folders_makejinja_renders_from(tmp_path):
    (tmp_path / "makejinja.toml").write_text('[makejinja]\ninputs = ["src"]\noutput = "."\n')
    touch(tmp_path, "src/kubernetes/s.sops.yaml", "kubernetes/s.sops.yaml", "templates/t.sops.yaml")
    assert secret_files(tmp_path, PATTERN) == ["kubernetes/s.sops.yaml", "templates/t.sops.yaml"]


def test_stale_temp_names_both_patterns():
    assert is_stale_temp(".secrets.sops.yaml.k2j4x9_a.tmp")  # tempfile.mkstemp today
    assert is_stale_temp(".cluster-settings.yaml.cluster-secrets-3fz9.tmp")  # the coming name
    assert is_stale_temp(".rotate-tmp.secret.sops.yaml")  # rotate's ciphertext copy
    for name in ("secrets.sops.yaml", ".secrets.sops.yaml.tmp", "notes.tmp", ".sops.yaml", ".x.sops.yaml.short.tmp", ".rotate-tmp."):
        assert not is_stale_temp(name), name
    assert temp_target(".secrets.sops.yaml.k2j4x9_a.tmp") == "secrets.sops.yaml"
    assert temp_target(".rotate-tmp.secret.sops.yaml") == "secret.sops.yaml"
    assert temp_target("secret.sops.yaml") is None


def test_the_temporaries_of_an_atomic_write_are_found(tmp_path, monkeypatch):
    """The names _fileio gives its temporaries are the names the walk finds: a write killed before its rename."""
    from ansible_collections.cluster.secrets.plugins.plugin_utils import _fileio

    def killed(*_args):
        raise KeyboardInterrupt

    (tmp_path / "infrastructure").mkdir()
    monkeypatch.setattr(_fileio.os, "replace", killed)
    monkeypatch.setattr(_fileio.os, "unlink", lambda *_args: None)  # as after a kill: nothing cleans up
    with contextlib.suppress(KeyboardInterrupt):
        atomic_write(tmp_path / "infrastructure" / "secrets.sops.yaml", b"x: 1\n")
    monkeypatch.undo()
    [left] = stale_temps(tmp_path)
    assert left.startswith("infrastructure/.secrets.sops.yaml.cluster-secrets-")
    assert temp_target(left.rsplit("/", 1)[-1]) == "secrets.sops.yaml"
    assert secret_files(tmp_path, PATTERN) == []


def test_stale_temps_of_every_kind_or_rotate_only(tmp_path):
    touch(tmp_path, "a/.s.sops.yaml.abcd1234.tmp", "a/.rotate-tmp.s.sops.yaml", "a/s.sops.yaml", ".git/.x.abcd1234.tmp")
    assert stale_temps(tmp_path) == ["a/.rotate-tmp.s.sops.yaml", "a/.s.sops.yaml.abcd1234.tmp"]
    assert stale_temps(tmp_path, rotate_only=True) == ["a/.rotate-tmp.s.sops.yaml"]
    assert rotate_temp(tmp_path / "a" / "s.sops.yaml") == tmp_path / "a" / ".rotate-tmp.s.sops.yaml"
    # a rotate copy keeps its file's ending: sops picks the same creation rule and format for it
    assert rotate_temp(tmp_path / "a" / "s.sops.yaml").name.endswith(".sops.yaml")


def test_walk_is_stable_and_skips_tool_folders(tmp_path):
    touch(tmp_path, "b/2", "b/1", "a/1", "node_modules/x", ".terraform/y", "skip/me")
    assert list(walk(tmp_path, [tmp_path / "skip"])) == ["a/1", "b/1", "b/2"]
