# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._data_files import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_VARS_BYTES,
    load_data_file,
    load_yaml_with_lines,
)


def test_lines_are_recorded_and_duplicates_reported():
    data, lines, findings = load_yaml_with_lines("a: 1\nb:\n  c: 2\na: 3\n", "f.yaml")
    assert data == {"a": 3, "b": {"c": 2}}
    assert lines[("b", "c")] == 3
    assert [f.line for f in findings] == [4]
    assert "more than once" in findings[0].message


def test_documents_merge_only_when_asked_and_keep_their_lines():
    text = "a: 1\nb:\n  c: 2\n---\nb:\n  d: 3\n"
    data, lines, findings = load_yaml_with_lines(text, "f.yaml", all_documents=True)
    assert data == {"a": 1, "b": {"d": 3}} and findings == []
    assert lines == {("a",): 1, ("b",): 5, ("b", "d"): 6}
    data, _lines, [finding] = load_yaml_with_lines(text, "f.yaml")
    assert data is None and "invalid YAML" in finding.message and finding.line == 4


def test_a_document_that_is_no_mapping_is_refused_when_documents_merge():
    data, _lines, [finding] = load_yaml_with_lines("a: 1\n---\n- x\n", "f.yaml", all_documents=True)
    assert data is None and finding.line == 3 and "not a mapping" in finding.message


@pytest.mark.parametrize("all_documents", [False, True])
def test_bounds_hold_for_every_document(all_documents):
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"l{i}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8))
    data, _lines, [finding] = load_yaml_with_lines("x: 1\n---\n" * all_documents + bomb, "f.yaml", all_documents=all_documents)
    assert data is None and "alias bomb" in finding.message
    aliases = "a: &a 1\n" + "".join(f"k{i}: *a\n" for i in range(MAX_ALIASES + 1))
    data, _lines, [finding] = load_yaml_with_lines(aliases, "f.yaml", all_documents=all_documents)
    assert data is None and finding.line == MAX_ALIASES + 2 and f"more than {MAX_ALIASES} aliases" in finding.message
    data, _lines, [finding] = load_yaml_with_lines("a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "f.yaml",
                                                   all_documents=all_documents)
    assert data is None and f"nested more than {MAX_DEPTH} levels deep" in finding.message


def test_only_a_regular_file_of_bounded_size_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_VARS_BYTES + 1))
    data, _lines, [finding] = load_data_file(big)
    assert data is None and finding.file == "big.yaml" and "refused" in finding.message
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    data, _lines, [finding] = load_data_file(fifo, "shown-name")
    assert data is None and finding.file == "shown-name" and "not a regular file" in finding.message


def test_toml_and_json_by_suffix(tmp_path):
    (tmp_path / "a.toml").write_text('[t]\nk = "v"\n')
    (tmp_path / "a.json").write_text('{"k": [1, 2]}')
    assert load_data_file(tmp_path / "a.toml") == ({"t": {"k": "v"}}, {("t",): 1, ("t", "k"): 2}, [])
    assert load_data_file(tmp_path / "a.json") == ({"k": [1, 2]}, {}, [])
    (tmp_path / "deep.json").write_text("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    data, _lines, [finding] = load_data_file(tmp_path / "deep.json")
    assert data is None and "nested more than" in finding.message
