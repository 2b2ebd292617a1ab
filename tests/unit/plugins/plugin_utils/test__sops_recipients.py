# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Editing the age recipients of a hand-written .sops.yaml: text in, text out."""

from __future__ import annotations

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config, parse_sops_config, rule_recipients
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_recipients import edit_recipients
from ansible_collections.cluster.secrets.plugins.plugin_utils._yaml_edit import YamlEditError


def recipients(text: str) -> list[set[str]]:
    return [rule_recipients(rule) for rule in parse_sops_config(text)]


def test_add_where_an_old_key_is_then_remove_it():
    text = "# mine\ncreation_rules:\n  - path_regex: a\n    age: age1old\n  - path_regex: b\n    age: [age1other]\n"
    added = edit_recipients(text, add="age1new", when={"age1old"})
    assert added is not None and added.startswith("# mine\n")
    assert recipients(added) == [{"age1old", "age1new"}, {"age1other"}]
    assert edit_recipients(added, add="age1new", when={"age1old"}) is None  # nothing left to change
    removed = edit_recipients(added, add="age1new", remove={"age1old"}, when={"age1old"})
    assert removed is not None and recipients(removed) == [{"age1new"}, {"age1other"}]


def test_without_when_every_rule_gets_the_recipient_and_groups_count():
    text = "creation_rules:\n  - key_groups:\n      - age:\n          - age1a\n  - age: age1b\n"
    edited = edit_recipients(text, add="age1new")
    assert edited is not None and recipients(edited) == [{"age1a", "age1new"}, {"age1b", "age1new"}]


def test_the_generated_config_changes_only_in_its_age_lines():
    original = default_sops_config(["age1old"])
    added = edit_recipients(original, add="age1new", when={"age1old"})
    assert added == original.replace("age: age1old", "age: age1old,age1new")


def test_text_that_cannot_be_edited_safely_is_refused():
    with pytest.raises(YamlEditError, match=r"\.sops\.yaml: cannot parse it"):
        edit_recipients("creation_rules: [unclosed\n", add="age1new")
