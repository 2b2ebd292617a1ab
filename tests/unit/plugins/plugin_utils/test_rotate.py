# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Editing .sops.yaml recipients for a rotation, and the journal (no sops needed)."""

from __future__ import annotations

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate import (
    RotateError,
    RotateOptions,
    load_state,
    save_state,
    state_path,
    update_sops_config,
)

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


def test_journal_round_trip_and_damage(tmp_path):
    options = RotateOptions(root=tmp_path)
    assert load_state(options) is None
    save_state(options, {"version": 1, "phase": "add"})
    assert load_state(options) == {"version": 1, "phase": "add"}
    assert state_path(options).stat().st_mode & 0o077 == 0
    assert (state_path(options).parent / ".gitignore").read_text().strip().endswith("*")
    state_path(options).write_text("{broken")
    with pytest.raises(RotateError, match="journal is unreadable"):
        load_state(options)


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(RotateError):
        RotateOptions(root=tmp_path, mode="everything")


def test_the_generated_config_changes_only_in_its_age_lines(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import default_sops_config

    config = tmp_path / ".sops.yaml"
    original = default_sops_config(["age1old"])
    config.write_text(original)
    update_sops_config(config, add="age1new", when={"age1old"})
    assert config.read_text() == original.replace("age: age1old", "age: age1old,age1new")
    update_sops_config(config, add="age1new", remove={"age1old"}, when={"age1old"})
    assert config.read_text() == original.replace("age: age1old", "age: age1new")


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

    from ansible_collections.cluster.secrets.plugins.plugin_utils import _age, _rotate

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    keygen = bin_dir / "age-keygen"
    keygen.write_text(FAKE_AGE_KEYGEN.format(python=sys.executable))
    keygen.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(_age, "pyrage", None)
    monkeypatch.setattr(_rotate, "pyrage", None, raising=False)  # the module imported pyrage itself before the fix
    return keygen


def test_rotate_generates_its_key_with_age_keygen_alone_like_init(age_keygen_only, tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file, parse_identities
    from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate import _new_identity

    identity = _new_identity()
    assert identity.secret.startswith("AGE-SECRET-KEY-1")
    assert identity.recipient and identity.recipient.startswith("age1")
    assert parse_identities(identity.secret, "x")[0].recipient == identity.recipient
    assert generate_key_file(tmp_path / "age.key").startswith("age1")  # init's path works the same way


def test_without_pyrage_or_age_keygen_the_error_names_both(tmp_path, monkeypatch):
    from ansible_collections.cluster.secrets.plugins.plugin_utils import _age
    from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate import _new_identity

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_age, "pyrage", None)
    with pytest.raises(RotateError, match="pyrage or the age tools"):
        _new_identity()


def test_files_holding_the_old_key_are_found_in_text_and_base64():
    import base64

    from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate import holds_age_secret

    old = "AGE-SECRET-KEY-1" + "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L" + "Q" * 26
    other = "AGE-SECRET-KEY-1" + "A" * 58
    as_string = f"kind: Secret\nstringData:\n  age.agekey: |\n    # public key: age1x\n    {old}\n".encode()
    encoded = base64.b64encode(f"# created: now\n{old}\n".encode())
    as_data = b"kind: Secret\ndata:\n  age.agekey: " + encoded + b"\n"
    assert holds_age_secret(as_string, [old])
    assert holds_age_secret(as_data, [old])
    assert not holds_age_secret(as_string.replace(old.encode(), other.encode()), [old])
    assert not holds_age_secret(as_string, [])
