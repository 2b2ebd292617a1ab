# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one secret-file planner, in process, with a fake door: what the planner decides does not need sops."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity, AgeKeys
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_plan import (
    PlaintextCache,
    changed_key_paths,
    parse_plaintext,
    plan_secret_files,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import FileStatus, SopsToolError


class FakeSops:
    """Stands in for ``_sops.Sops``: 'ciphertext' is JSON with the plaintext in base64 and the recipients."""

    def __init__(self, root: Path, recipients: list[str]) -> None:
        identities = [AgeIdentity(f"AGE-SECRET-KEY-1{r.upper()}", r, "test") for r in recipients]
        self.root, self.keys = root, AgeKeys(identities, ["test"])
        self.rules: list[dict[str, Any]] = [{"path_regex": r"\.sops\.", "age": ",".join(recipients)}]
        self.calls: list[str] = []

    def rule(self, relpath: str) -> dict[str, Any] | None:
        return self.rules[0] if ".sops." in relpath else None

    @staticmethod
    def seal(plaintext: bytes, recipients: list[str]) -> bytes:
        return json.dumps({"data": base64.b64encode(plaintext).decode(),
                           "sops": {"mac": "m", "age": [{"recipient": r} for r in recipients]}}).encode()

    def status(self, relpath: str) -> FileStatus:
        path = self.root / relpath
        content = path.read_bytes() if path.is_file() else None
        try:
            meta = json.loads(content)["sops"] if content else None
        except ValueError:
            meta = None
        return FileStatus(relpath, content, "yaml", meta)

    def decrypt(self, relpath: str, content: bytes | None = None) -> bytes:
        self.calls.append(f"decrypt {relpath}")
        return base64.b64decode(json.loads(self.status(relpath).content or b"{}")["data"])

    def encrypt(self, plaintext: bytes, relpath: str) -> bytes:
        self.calls.append(f"encrypt {relpath}")
        return self.seal(plaintext, sorted(self.rules[0]["age"].split(",")))


def test_created_changed_unchanged_and_cache(tmp_path):
    sops: Any = FakeSops(tmp_path, ["age1own"])
    (tmp_path / "same.sops.yaml").write_bytes(sops.seal(b"a: 1\n", ["age1own"]))
    (tmp_path / "changed.sops.yaml").write_bytes(sops.seal(b"a: 1\nb: 2\n", ["age1own"]))
    (tmp_path / "recipients.sops.yaml").write_bytes(sops.seal(b"a: 1\n", ["age1old"]))
    sops.keys.identities.append(AgeIdentity("AGE-SECRET-KEY-1OLD", "age1old", "test"))
    cache = PlaintextCache(tmp_path / "cache.json", sops.keys)
    desired = {"same.sops.yaml": b"a: 1\n", "changed.sops.yaml": b"a: 1\nb: 3\nc: 4\n",
               "recipients.sops.yaml": b"a: 1\n", "new.sops.yaml": b"x: y\n"}
    files = {f.path: f for f in plan_secret_files(sops, desired, cache)}
    states = {p: f.state for p, f in files.items()}
    assert states == {"changed.sops.yaml": "changed", "new.sops.yaml": "created", "recipients.sops.yaml": "changed",
                      "same.sops.yaml": "unchanged"}
    assert files["changed.sops.yaml"].changed_keys == ["b", "c"] and files["new.sops.yaml"].changed_keys == ["x"]
    assert files["recipients.sops.yaml"].changed_keys == []  # re-encrypted for new recipients only
    assert sorted(c for c in sops.calls if c.startswith("decrypt")) == [
        "decrypt changed.sops.yaml", "decrypt recipients.sops.yaml", "decrypt same.sops.yaml"]
    # The unchanged file is remembered: the next run decrypts nothing for it.
    sops.calls.clear()
    again = {f.path: f for f in plan_secret_files(sops, {"same.sops.yaml": b"a: 1\n"}, cache)}
    assert again["same.sops.yaml"].state == "unchanged" and sops.calls == []
    # A cache made with other identities proves nothing.
    other = PlaintextCache(None, AgeKeys([AgeIdentity("AGE-SECRET-KEY-1OTHER", "age1other", "t")], []))
    other.files = dict(cache.files)
    plan_secret_files(sops, {"same.sops.yaml": b"a: 1\n"}, other)
    assert sops.calls == ["decrypt same.sops.yaml"]


def test_every_problem_at_once_and_nothing_encrypted(tmp_path):
    sops: Any = FakeSops(tmp_path, ["age1own"])
    (tmp_path / "foreign.sops.yaml").write_bytes(sops.seal(b"a: 1\n", ["age1else"]))
    (tmp_path / "damaged.sops.yaml").write_text("a: ENC[AES256_GCM,data:x]\n")
    with pytest.raises(SopsToolError) as caught:
        plan_secret_files(sops, {"foreign.sops.yaml": b"a: 2\n", "damaged.sops.yaml": b"a: 2\n",
                                 "plain.yaml": b"a: 2\n"})
    message = str(caught.value)
    assert message.startswith("secret files: 3 problem(s)")
    assert "foreign.sops.yaml: cannot decrypt it" in message and "damaged encrypted file" in message
    assert "plain.yaml: no creation rule" in message
    assert not [c for c in sops.calls if c.startswith("encrypt")]


def test_guard_sees_old_and_new_before_encryption(tmp_path):
    sops: Any = FakeSops(tmp_path, ["age1own"])
    (tmp_path / "s.sops.yaml").write_bytes(sops.seal(b"password: real\n", ["age1own"]))
    seen = []

    def guard(changes):
        seen.extend((c.path, c.previous, c.rendered) for c in changes if c.state == "changed")
        return "would blank password"

    with pytest.raises(ValueError, match="would blank password"):
        plan_secret_files(sops, {"s.sops.yaml": b"password: ''\n"}, guard=guard, error=ValueError)
    assert seen == [("s.sops.yaml", [{"password": "real"}], [{"password": ""}])]
    assert "encrypt s.sops.yaml" not in sops.calls


def test_plaintext_committed_is_replaced_with_a_warning(tmp_path):
    sops: Any = FakeSops(tmp_path, ["age1own"])
    (tmp_path / "p.sops.yaml").write_text("a: 1\n")
    warnings: list[str] = []
    [item] = plan_secret_files(sops, {"p.sops.yaml": b"a: 2\n"}, warnings=warnings)
    assert item.state == "changed" and item.changed_keys == ["(was not encrypted)", "a"]
    assert warnings == ["p.sops.yaml exists unencrypted in the repository; it will be replaced by its encrypted form"]


def test_key_paths_and_formats():
    assert changed_key_paths([{"a": {"b": 1, "c": [1, 2]}}], [{"a": {"b": 2, "c": [1]}}], "yaml") == ["a.b", "a.c[1]"]
    assert changed_key_paths(b"x", b"y", "binary") == ["(file content)"]
    assert parse_plaintext(b"A=1\n# c\nB=x=y\n", "dotenv") == {"A": "1", "B": "x=y"}
    assert parse_plaintext(b"[s]\nk = v\n", "ini") == {"s": {"k": "v"}}


def test_a_side_that_does_not_parse_compares_both_as_bytes(tmp_path):
    """sops may give back YAML that PyYAML does not read (a control character): not a removed key for the guard."""
    sops: Any = FakeSops(tmp_path, ["age1own"])
    (tmp_path / "v.sops.yaml").write_bytes(sops.seal(b"a: \"\x85\"\n\x07bad: [\n", ["age1own"]))
    seen = []

    def guard(changes):
        seen.extend((type(c.previous), type(c.rendered), c.changed_keys) for c in changes)

    [item] = plan_secret_files(sops, {"v.sops.yaml": b"a: 1\n"}, guard=guard)
    assert item.state == "changed" and seen == [(bytes, bytes, ["(file content)"])]
