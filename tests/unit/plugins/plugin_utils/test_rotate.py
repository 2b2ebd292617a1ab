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
