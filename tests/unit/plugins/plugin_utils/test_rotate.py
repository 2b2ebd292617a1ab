# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rotation in process: .sops.yaml editing, and whole rotations with real age keys and the real sops,
stopped at every step through the ``on_step`` seam and finished by a rerun."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils import _rotate
from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError, AgeKeys, generate_key_file, parse_identities
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate import RotateError, RotateOptions, rotate, update_sops_config
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate_files import holds_age_secret
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops, SopsToolError
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config

CONFIG = """\
---
# keep this comment
creation_rules:
  - path_regex: kubernetes/.*\\.sops\\.ya?ml$
    encrypted_regex: ^(data|stringData)$
    age: age1old,age1team
  - path_regex: other/.*
    age:
      - age1team
  - path_regex: \\.sops\\.[^/]+$
    key_groups:
      - age:
          - age1old
stores:
  yaml:
    indent: 2
"""
FILES = {
    "infrastructure/secrets.sops.yaml": "token: alpha-secret\n",
    "kubernetes/apps/a/secret.sops.yaml": "apiVersion: v1\nkind: Secret\nstringData:\n  A: beta-secret\n",
    "infrastructure/extra.sops.env": "TOKEN=gamma-secret\n",
}
SOPS_AGE = "bootstrap/sops-age.sops.yaml"


def test_add_then_remove_keeps_comments_and_other_recipients(tmp_path):
    config = tmp_path / ".sops.yaml"
    config.write_text(CONFIG)
    assert update_sops_config(config, add="age1new", when={"age1old"})
    text = config.read_text()
    assert "# keep this comment" in text
    assert "age: age1old,age1team,age1new" in text
    assert text.count("age1new") == 2  # not added to the rule without the old key
    assert not update_sops_config(config, add="age1new", when={"age1old"})  # idempotent
    assert update_sops_config(config, add="age1new", remove={"age1old"}, when={"age1old"})
    text = config.read_text()
    assert "age1old" not in text
    assert "age: age1team,age1new" in text
    assert "          - age1new" in text
    assert "indent: 2" in text


def test_recipients_are_never_removed_from_a_rule_without_the_new_one(tmp_path):
    config = tmp_path / ".sops.yaml"
    config.write_text("creation_rules:\n  - age: age1old\n")
    assert not update_sops_config(config, add="age1new", remove={"age1old"}, when={"age1other"})
    assert "age1old" in config.read_text()


def test_a_config_that_cannot_be_edited_is_a_rotate_error(tmp_path):
    config = tmp_path / ".sops.yaml"
    config.write_text("creation_rules: [unclosed\n")
    with pytest.raises(RotateError, match="cannot parse it"):
        update_sops_config(config, add="age1new")
    with pytest.raises(RotateError, match="cannot read it"):
        update_sops_config(tmp_path / "absent.yaml", add="age1new")


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(RotateError):
        RotateOptions(root=tmp_path, mode="everything")


def test_the_generated_config_changes_only_in_its_age_lines(tmp_path):
    config = tmp_path / ".sops.yaml"
    original = default_sops_config(["age1old"])
    config.write_text(original)
    update_sops_config(config, add="age1new", when={"age1old"})
    assert config.read_text() == original.replace("age: age1old", "age: age1old,age1new")
    update_sops_config(config, add="age1new", remove={"age1old"}, when={"age1old"})
    assert config.read_text() == original.replace("age: age1old", "age: age1new")


def test_files_holding_the_old_key_are_found_in_text_and_base64():
    import base64

    old = "AGE-SECRET-KEY-1" + "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L" + "Q" * 26
    other = "AGE-SECRET-KEY-1" + "A" * 58
    as_string = f"kind: Secret\nstringData:\n  age.agekey: |\n    # public key: age1x\n    {old}\n".encode()
    encoded = base64.b64encode(f"# created: now\n{old}\n".encode())
    as_data = b"kind: Secret\ndata:\n  age.agekey: " + encoded + b"\n"
    assert holds_age_secret(as_string, [old])
    assert holds_age_secret(as_data, [old])
    assert not holds_age_secret(as_string.replace(old.encode(), other.encode()), [old])
    assert not holds_age_secret(as_string, [])


# ---------------------------------------------------------------------------- whole rotations, real sops


class Stop(Exception):
    """Raised by a test's on_step: the rotation stops there, as a crash would stop it."""


def environ(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "config")}


def repository(tmp_path: Path, files: dict[str, str] | None = None) -> tuple[Path, Path]:
    """A repository with age.key, the generated .sops.yaml and encrypted files (FILES unless given);
    returns it and a copy of the key."""
    files = FILES if files is None else files
    root = tmp_path / "repo"
    root.mkdir()
    recipient = generate_key_file(root / "age.key")
    (root / ".sops.yaml").write_text(default_sops_config([recipient]))
    (root / ".age-public-key").write_text(f"{recipient}\n")  # as init writes it
    sops = Sops.open(root, environ=environ(tmp_path))
    for relpath, text in files.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(sops.encrypt(text.encode(), relpath))
    old = tmp_path / "old.key"
    shutil.copy(root / "age.key", old)
    return root, old


def decrypt(root: Path, relpath: str, key: Path | str) -> bytes | None:
    """The plaintext with exactly the keys in ``key`` (a key file or key text), or None when they cannot decrypt it."""
    text = key.read_text() if isinstance(key, Path) else key
    identities = parse_identities(text, "test")
    try:
        return Sops(root, AgeKeys(identities, [])).run_isolated(["decrypt", str(root / relpath)], identities, relpath)
    except SopsToolError:
        return None


def recipients(root: Path, relpath: str) -> set[str]:
    return Sops(root, AgeKeys([], [])).status(relpath).recipients


def public_key(key: Path) -> str:
    return next(line.split(": ", 1)[1] for line in key.read_text().splitlines() if line.startswith("# public key: "))


def assert_only_the_new_key(root: Path, old: Path, before: dict[str, bytes]) -> None:
    new = root / "age.key"
    assert len(parse_identities(new.read_text(), "new")) == 1
    assert public_key(new) != public_key(old)
    for relpath, plaintext in before.items():
        assert decrypt(root, relpath, new) == plaintext, relpath
        assert decrypt(root, relpath, old) is None, relpath
        assert recipients(root, relpath) == {public_key(new)}, relpath
    config = (root / ".sops.yaml").read_text()
    assert public_key(new) in config and public_key(old) not in config
    assert (root / ".age-public-key").read_text() == f"{public_key(new)}\n"
    assert stat.S_IMODE((root / ".age-public-key").stat().st_mode) == 0o644
    assert not (root / ".secrets-backup" / "rotate-state.json").exists()
    assert not [p for p in root.rglob("*") if p.name.startswith(".rotate-tmp.") or p.name.endswith(".tmp")]
    assert stat.S_IMODE(new.stat().st_mode) == 0o600


def test_a_rotation_re_encrypts_everything_for_a_new_key_only(tmp_path):
    root, old = repository(tmp_path)
    key_text = "".join(f"    {line}\n" for line in old.read_text().splitlines())
    files = {**FILES, SOPS_AGE: f"kind: Secret\nmetadata:\n  name: sops-age\nstringData:\n  age.agekey: |\n{key_text}"}
    sops = Sops.open(root, environ=environ(tmp_path))
    (root / "bootstrap").mkdir()
    (root / SOPS_AGE).write_bytes(sops.encrypt(files[SOPS_AGE].encode(), SOPS_AGE))
    before = {relpath: decrypt(root, relpath, old) for relpath in files}
    options = RotateOptions(root=root, environ=environ(tmp_path))

    snapshot = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    checked = rotate(options, check_mode=True)
    assert sorted(checked.files) == sorted(files) and not checked.changed
    assert ".age-public-key would name the new public key: commit it" in checked.lines(True)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == snapshot

    steps: list[tuple[str, int]] = []
    result = rotate(options, on_step=lambda step, count: steps.append((step, count)))
    assert result.changed and sorted(result.files) == sorted(files)
    assert steps == [("add", n) for n in range(1, 5)] + [("add:write", 4)] + [("remove", n) for n in range(1, 5)] \
        + [("remove:write", 4)]
    assert result.new_recipient == public_key(root / "age.key")
    assert result.removed_recipients == [public_key(old)]
    assert result.stale_key_files == [SOPS_AGE]  # it holds the old key: only configure can re-render it
    assert ".age-public-key names the new public key: commit it" in result.lines(False)
    assert_only_the_new_key(root, old, before)
    [backup] = (root / ".secrets-backup").glob("age.key.*")
    assert backup.read_bytes() == old.read_bytes() and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert str(backup) == result.key_backup
    for line in result.lines(False) + result.warnings:
        assert "AGE-SECRET-KEY" not in line and "secret\n" not in line


@pytest.mark.parametrize(("stop_at", "count"), [("add", 2), ("remove:write", 3)])
def test_a_rotation_stopped_at_any_step_is_finished_by_a_rerun(tmp_path, stop_at, count):
    root, old = repository(tmp_path)
    before = {relpath: decrypt(root, relpath, old) for relpath in FILES}
    options = RotateOptions(root=root, environ=environ(tmp_path))

    def on_step(step: str, done: int) -> None:
        if (step, done) == (stop_at, count):
            raise Stop

    with pytest.raises(Stop):
        rotate(options, on_step=on_step)
    journal = root / ".secrets-backup" / "rotate-state.json"
    assert journal.is_file() and "AGE-SECRET-KEY" not in journal.read_text()
    midway = root / "age.key"  # the key file holds the old and the new key while the rotation runs
    assert len(parse_identities(midway.read_text(), "midway")) == 2
    new_only = next(line for line in midway.read_text().splitlines() if line.startswith("AGE-SECRET-KEY"))
    for relpath, plaintext in before.items():
        assert decrypt(root, relpath, midway) == plaintext
        assert plaintext in (decrypt(root, relpath, old), decrypt(root, relpath, new_only)), relpath
    # the phase the rotation stopped in wrote nothing of its own: every file is as the phase before left it
    expected = {public_key(old)} if stop_at.startswith("add") else {public_key(old), public_key(midway)}
    assert all(recipients(root, relpath) == expected for relpath in FILES)
    assert not list(root.rglob(".rotate-tmp.*"))
    assert (root / ".age-public-key").read_text() == f"{public_key(old)}\n"  # it follows only when the rotation finishes
    # what a kill in the middle of sops or of a write leaves: a ciphertext copy, a write's temporary
    (root / "infrastructure" / ".rotate-tmp.secrets.sops.yaml").write_bytes((root / "infrastructure/secrets.sops.yaml").read_bytes())
    (root / "infrastructure" / ".secrets.sops.yaml.cluster-secrets-abcd1234.tmp").write_text("half written\n")

    result = rotate(options)
    assert result.resumed and sorted(result.files) == sorted(FILES)
    assert_only_the_new_key(root, old, before)


def test_a_rotation_stopped_after_the_public_key_file_is_finished_by_a_rerun(tmp_path, monkeypatch):
    root, old = repository(tmp_path, {"infrastructure/secrets.sops.yaml": FILES["infrastructure/secrets.sops.yaml"]})
    options = RotateOptions(root=root, environ=environ(tmp_path))
    real_write = _rotate.atomic_write

    def crash_on_the_final_key_file(path, content, mode=None):
        if path == root / "age.key" and len(parse_identities(content.decode(), "x")) == 1:
            raise Stop  # .age-public-key is written, the key file still holds both keys, the journal is there
        real_write(path, content, mode=mode)

    monkeypatch.setattr(_rotate, "atomic_write", crash_on_the_final_key_file)
    with pytest.raises(Stop):
        rotate(options)
    new_recipient = (root / ".age-public-key").read_text().strip()
    assert new_recipient != public_key(old) and (root / ".secrets-backup" / "rotate-state.json").is_file()
    monkeypatch.setattr(_rotate, "atomic_write", real_write)
    written = (root / ".age-public-key").stat()
    result = rotate(options)
    assert result.resumed and result.new_recipient == new_recipient and not result.warnings
    assert_only_the_new_key(root, old, {"infrastructure/secrets.sops.yaml": FILES["infrastructure/secrets.sops.yaml"].encode()})
    assert (root / ".age-public-key").stat().st_mtime_ns == written.st_mtime_ns  # already right: not written again


def test_a_public_key_file_for_an_unrelated_key_is_left_alone_with_a_warning(tmp_path):
    root, _old = repository(tmp_path, {"infrastructure/secrets.sops.yaml": FILES["infrastructure/secrets.sops.yaml"]})
    unrelated = generate_key_file(tmp_path / "unrelated.key")
    (root / ".age-public-key").write_text(f"{unrelated}\n")
    result = rotate(RotateOptions(root=root, environ=environ(tmp_path)))
    assert (root / ".age-public-key").read_text() == f"{unrelated}\n"
    assert any(unrelated in warning and result.new_recipient in warning for warning in result.warnings)
    assert not any(".age-public-key names" in line for line in result.lines(False))


def test_data_keys_rotation_keeps_recipients(tmp_path):
    root, old = repository(tmp_path)
    before = {relpath: (root / relpath).read_bytes() for relpath in FILES}
    steps: list[tuple[str, int]] = []
    result = rotate(RotateOptions(root=root, mode="data_keys", environ=environ(tmp_path)),
                    on_step=lambda step, count: steps.append((step, count)))
    assert sorted(result.files) == sorted(FILES) and result.changed
    assert steps == [("data_keys", 1), ("data_keys", 2), ("data_keys", 3), ("data_keys:write", 3)]
    for relpath, ciphertext in before.items():
        assert (root / relpath).read_bytes() != ciphertext
        assert decrypt(root, relpath, old) == FILES[relpath].encode()
        assert recipients(root, relpath) == {public_key(old)}
    assert (root / "age.key").read_bytes() == old.read_bytes()
    assert (root / ".age-public-key").read_text() == f"{public_key(old)}\n"  # data keys never touch it


def test_a_broken_journal_stops_the_rotation(tmp_path):
    root, _old = repository(tmp_path, {})
    (root / ".secrets-backup").mkdir()
    (root / ".secrets-backup" / "rotate-state.json").write_text("{broken")
    with pytest.raises(RotateError, match="journal is unreadable"):
        rotate(RotateOptions(root=root, environ=environ(tmp_path)))


def test_a_key_that_cannot_be_generated_stops_the_rotation_before_it_writes(tmp_path, monkeypatch):
    root, _old = repository(tmp_path)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}

    def no_generator(source: str = "new"):
        raise AgeKeyError("cannot generate an age key: install the Python package pyrage or the age tools (age-keygen)")

    monkeypatch.setattr(_rotate, "generate_identity", no_generator)
    with pytest.raises(RotateError, match="pyrage or the age tools"):
        rotate(RotateOptions(root=root, environ=environ(tmp_path)))
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


FAKE_AGE_KEYGEN = """\
#!{python}
# A stand-in for age-keygen (same output format), so the test needs neither age nor pyrage inside the product.
import sys
import pyrage
if sys.argv[1:] == ["-y"]:
    print(pyrage.x25519.Identity.from_str(sys.stdin.read().strip()).to_public())
else:
    identity = pyrage.x25519.Identity.generate()
    print("# created: 2024-01-01T00:00:00Z")
    print(f"# public key: {{identity.to_public()}}")
    print(identity)
"""


@pytest.fixture
def age_keygen_only(tmp_path, monkeypatch):
    """No pyrage in the product, only an age-keygen on PATH."""
    import sys

    from ansible_collections.cluster.secrets.plugins.plugin_utils import _age

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    keygen = bin_dir / "age-keygen"
    keygen.write_text(FAKE_AGE_KEYGEN.format(python=sys.executable))
    keygen.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(_age, "pyrage", None)
    return keygen


def test_rotate_generates_its_key_with_age_keygen_alone_like_init(age_keygen_only, tmp_path):
    root, old = repository(tmp_path, {"infrastructure/secrets.sops.yaml": FILES["infrastructure/secrets.sops.yaml"]})
    result = rotate(RotateOptions(root=root, environ=environ(tmp_path)))
    assert result.new_recipient and result.new_recipient.startswith("age1")
    assert parse_identities((root / "age.key").read_text(), "x")[0].recipient == result.new_recipient
    assert_only_the_new_key(root, old, {"infrastructure/secrets.sops.yaml": FILES["infrastructure/secrets.sops.yaml"].encode()})
    assert generate_key_file(tmp_path / "age.key").startswith("age1")  # init's path works the same way
