# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration planning on plaintext secret files (the sops path is covered by the integration tests)."""

from __future__ import annotations

import stat

import pytest
import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._migrate import (
    MigrateError,
    apply_migration,
    normalise_sources,
    plan_migration,
)

CLUSTER = """\
# top comment
node_cidr: '10.0.0.0/24'   # inline comment
tfstate_password: "CHANGE-ME"
cf_account_id: "cluster-value"

# trailing comment
"""


@pytest.fixture
def root(tmp_path):
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    secrets = tmp_path / "infrastructure" / "secrets.sops.yaml"
    secrets.parent.mkdir()
    secrets.write_text("cf_account_id: file-value\ntfstate_password: 'real: pw'\ntfstate_username: CHANGE-ME-user\n"
                       "empty: ''\nnested:\n  token: abc\nmultiline: |\n  line1\n  line2\n")
    return tmp_path


def statuses(plan_):
    return {item.key: item.status for item in plan_.items}


def test_plan_adds_fills_and_reports_conflicts(root):
    plan_ = plan_migration(root, environ={})
    assert statuses(plan_) == {"cf_account_id": "conflict", "tfstate_password": "added", "tfstate_username": "skipped",
                               "empty": "skipped", "nested": "skipped", "multiline": "added"}
    new = yaml.safe_load(plan_.after)
    assert new["tfstate_password"] == "real: pw"
    assert new["cf_account_id"] == "cluster-value"
    assert new["multiline"] == "line1\nline2\n"
    text = plan_.after.decode()
    assert text.startswith("# top comment\nnode_cidr: '10.0.0.0/24'   # inline comment\n")
    assert "# trailing comment" in text
    assert plan_.warnings and "differ" in plan_.warnings[0]
    assert "real: pw" not in "\n".join(plan_.summary_lines(False))


def test_overwrite_and_explicit_mapping(root):
    plan_ = plan_migration(root, sources={"infrastructure/secrets.sops.yaml": {"nested.token": "my_token", "cf_account_id": "cf_account_id"}},
                           overwrite=True, environ={})
    assert statuses(plan_) == {"nested.token": "added", "cf_account_id": "replaced"}
    new = yaml.safe_load(plan_.after)
    assert new["my_token"] == "abc"
    assert new["cf_account_id"] == "file-value"


def test_missing_file_is_skipped_and_nothing_changes(root):
    plan_ = plan_migration(root, sources={"nope.sops.yaml": {}}, environ={})
    assert statuses(plan_) == {"(file)": "skipped"}
    assert not plan_.changed


def test_apply_writes_a_private_backup_first(root):
    plan_ = plan_migration(root, environ={})
    backup = apply_migration(plan_, root)
    assert backup is not None and backup.read_text() == CLUSTER
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.parent.stat().st_mode) == 0o700
    assert (root / "cluster.yaml").read_bytes() == plan_.after
    assert stat.S_IMODE((root / "cluster.yaml").stat().st_mode) & 0o077 == 0
    assert apply_migration(plan_migration(root, environ={}), root) is None  # a rerun changes nothing


@pytest.mark.parametrize("sources", [{"/abs/path": {}}, {"../up": {}}, {"f": ["list"]}, {"f": {"a": "not a key"}}])
def test_bad_sources_are_rejected(sources):
    with pytest.raises(MigrateError):
        normalise_sources(sources)


def test_values_yaml_would_normalise_are_double_quoted():
    import io

    from ruamel.yaml import YAML

    from ansible_collections.cluster.secrets.plugins.plugin_utils._migrate import _yaml_value

    for value in ("line-one\r\nline-two", "a\x85b\nc", "trailing \nspace", "tab\there\nx", "plain\nlines"):
        out = io.StringIO()
        YAML().dump({"k": _yaml_value(value)}, out)
        assert YAML(typ="safe").load(out.getvalue())["k"] == value, repr(value)


def test_an_encrypted_source_is_decrypted_through_the_door(root, tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config

    environ = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    (root / ".sops.yaml").write_text(default_sops_config([generate_key_file(root / "age.key")]))
    secrets = root / "infrastructure" / "secrets.sops.yaml"
    secrets.write_bytes(Sops.open(root, environ=environ).encrypt(secrets.read_bytes(), "infrastructure/secrets.sops.yaml"))
    plan_ = plan_migration(root, environ=environ)
    assert statuses(plan_)["tfstate_password"] == "added"
    assert yaml.safe_load(plan_.after)["tfstate_password"] == "real: pw"
    assert plan_.sops is not None and plan_.sops.status("infrastructure/secrets.sops.yaml").encrypted
    (root / "age.key").unlink()
    with pytest.raises(MigrateError, match="it is encrypted but no age key was found to decrypt it"):
        plan_migration(root, environ=environ)


def test_apply_with_a_backup_folder_elsewhere_and_a_stale_temporary(root, tmp_path):
    stale = root / ".cluster.yaml.cluster-secrets-abcd1234.tmp"
    stale.write_text("tfstate_password: half-written\n")
    plan_ = plan_migration(root, environ={})
    backup = apply_migration(plan_, root, tmp_path / "vault")
    assert backup is not None and backup.parent == tmp_path / "vault" and backup.read_text() == CLUSTER
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert (root / "cluster.yaml").read_bytes() == plan_.after
    assert not stale.exists()  # a temporary an interrupted write left beside cluster.yaml goes with the change set
    assert not (root / ".secrets-backup").exists()
