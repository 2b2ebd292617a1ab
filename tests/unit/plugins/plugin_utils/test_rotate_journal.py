# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rotation journal: where it lives, private, and refused when damaged."""

from __future__ import annotations

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate_journal import (
    JournalError,
    journal_path,
    load_journal,
    remove_journal,
    save_journal,
)


def test_journal_round_trip_and_damage(tmp_path):
    path = journal_path(tmp_path)
    assert path == tmp_path / ".secrets-backup" / "rotate-state.json"
    assert load_journal(path) is None
    save_journal(path, {"version": 1, "phase": "add"})
    assert load_journal(path) == {"version": 1, "phase": "add"}
    assert path.stat().st_mode & 0o077 == 0
    assert (path.parent / ".gitignore").read_text().strip().endswith("*")
    path.write_text("{broken")
    with pytest.raises(JournalError, match="journal is unreadable"):
        load_journal(path)
    path.write_text('{"version": 2}')
    with pytest.raises(JournalError, match="not a rotation journal of this version"):
        load_journal(path)
    remove_journal(path)
    remove_journal(path)  # already gone: fine
    assert load_journal(path) is None


def test_an_explicit_backup_folder_holds_the_journal(tmp_path):
    assert journal_path(tmp_path / "repo", tmp_path / "vault") == tmp_path / "vault" / "rotate-state.json"
