# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one door to sops, with the real sops binary and real age keys (the door is what runs them)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import find_age_keys, generate_identity, generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops, SopsToolError
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config


def repository(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "repo"
    root.mkdir()
    recipient = generate_key_file(root / "age.key")
    (root / ".sops.yaml").write_text(default_sops_config([recipient]))
    return root, recipient


def door(root: Path, tmp_path: Path) -> Sops:
    return Sops.open(root, environ={"HOME": str(tmp_path / "home")})


def test_round_trip_and_status_read_once(tmp_path):
    root, recipient = repository(tmp_path)
    sops = door(root, tmp_path)
    ciphertext = sops.encrypt(b"password: '{{ not a template }}'\n", "infrastructure/secrets.sops.yaml")
    assert b"not a template" not in ciphertext
    target = root / "infrastructure" / "secrets.sops.yaml"
    target.parent.mkdir()
    target.write_bytes(ciphertext)
    status = sops.status("infrastructure/secrets.sops.yaml")
    assert status.encrypted and status.recipients == {recipient} and status.lastmodified
    target.write_bytes(b"changed behind the door's back\n")
    # Read once per run: the door keeps what it read until told the file was rewritten.
    assert sops.status("infrastructure/secrets.sops.yaml") is status
    assert sops.decrypt("infrastructure/secrets.sops.yaml") == b"password: '{{ not a template }}'\n"
    sops.forget("infrastructure/secrets.sops.yaml")
    assert not sops.status("infrastructure/secrets.sops.yaml").encrypted
    assert not sops.status("absent.sops.yaml").exists


def test_planned_rules_are_used_before_they_are_written(tmp_path, monkeypatch):
    root, _recipient = repository(tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    other = generate_identity()
    sops = door(root, tmp_path)
    sops.use_config(default_sops_config([other.recipient or ""]).encode())
    assert sops.rule("a.sops.yaml") is not None
    ciphertext = sops.encrypt(b"a: b\n", "a.sops.yaml")
    assert other.recipient is not None and other.recipient.encode() in ciphertext
    # The planned rules reached sops through a private temporary, removed again.
    assert not (root / ".sops.yaml").read_text().count(other.recipient)
    assert list(temp.iterdir()) == []


def test_isolated_runs_use_exactly_the_identities_given(tmp_path):
    root, _recipient = repository(tmp_path)
    sops = door(root, tmp_path)
    (root / "s.sops.yaml").write_bytes(sops.encrypt(b"a: b\n", "s.sops.yaml"))
    own = find_age_keys(root, None, {"HOME": str(tmp_path / "home")}).identities
    assert sops.decrypts_with(root / "s.sops.yaml", own)
    assert not sops.decrypts_with(root / "s.sops.yaml", [generate_identity()])
    with pytest.raises(SopsToolError, match=r"s\.sops\.yaml: sops failed"):
        sops.run_isolated(["decrypt", str(root / "s.sops.yaml")], [], "s.sops.yaml")


def test_errors_are_one_type_and_name_the_file(tmp_path):
    root, _recipient = repository(tmp_path)
    (root / "bad.sops.yaml").write_text("a: ENC[AES256_GCM,data:xx]\nsops:\n  mac: x\n")
    sops = door(root, tmp_path)
    with pytest.raises(SopsToolError, match=r"^bad\.sops\.yaml: sops could not decrypt it"):
        sops.decrypt("bad.sops.yaml")
    (root / ".sops.yaml").write_text("creation_rules: [\n")
    with pytest.raises(SopsToolError, match="invalid YAML"):
        assert door(root, tmp_path).rules
    with pytest.raises(SopsToolError, match="is missing or not executable"):
        assert Sops.open(root, sops_binary=str(tmp_path / "no-sops"), environ={"HOME": str(tmp_path)}).binary
    (root / "age.key").write_text("AGE-SECRET-KEY-1BROKEN\n")
    with pytest.raises(SopsToolError):
        door(root, tmp_path)
