# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest
import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import (
    SopsToolError,
    damaged_secret_file,
    default_sops_config,
    encrypted_metadata,
    file_recipients,
    parse_sops_config,
    rule_for,
    rule_recipients,
    sops_format,
)


def test_default_config_rules_follow_cluster_template():
    rules = yaml.safe_load(default_sops_config(["age1abc"]))["creation_rules"]
    assert rule_for("kubernetes/apps/x/secret.sops.yaml", rules)["encrypted_regex"] == "^(data|stringData)$"
    assert rule_for("bootstrap/sops.sops.yml", rules)["encrypted_regex"] == "^(data|stringData)$"
    whole = rule_for("infrastructure/secrets.sops.yaml", rules)
    assert "encrypted_regex" not in whole
    assert rule_recipients(whole) == {"age1abc"}
    assert rule_for("README.md", rules) is None


def test_formats():
    assert [sops_format(p) for p in ("a.sops.yaml", "a.sops.yml", "a.sops.json", "a.sops.env", "a.sops.ini", "a.sops.tfvars")] == [
        "yaml", "yaml", "json", "dotenv", "ini", "binary"]


def test_metadata_of_encrypted_and_plaintext_files():
    encrypted = b"a: ENC[x]\nsops:\n  age:\n    - recipient: age1one\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: ENC[m]\n"
    meta = encrypted_metadata(encrypted, "yaml")
    assert file_recipients(meta) == {"age1one"}
    assert encrypted_metadata(b"a: plaintext\n", "yaml") is None
    assert encrypted_metadata(b"not: [valid", "yaml") is None
    dotenv = b"A=ENC[x]\nsops_age__list_0__map_recipient=age1two\nsops_mac=ENC[m]\nsops_lastmodified=2024\n"
    assert file_recipients(encrypted_metadata(dotenv, "dotenv")) == {"age1two"}
    assert encrypted_metadata(b'{"data": "x", "sops": {"mac": "m", "age": []}}', "binary") is not None


def test_one_parser_for_sops_config_names_the_line():
    rules = parse_sops_config(b"creation_rules:\n  - path_regex: a\\.sops\\.yaml$\n    age: age1x, age1y\n  - nope\n")
    assert [rule_recipients(r) for r in rules] == [{"age1x", "age1y"}]
    with pytest.raises(SopsToolError, match=r"^\.sops\.yaml:3: invalid YAML"):
        parse_sops_config(b"creation_rules:\n  - path_regex: a\n   age: [\n")
    with pytest.raises(SopsToolError, match="no creation_rules list"):
        parse_sops_config(b"stores: {}\n")
    with pytest.raises(SopsToolError, match=r"creation rule 2 has an invalid path_regex '\('"):
        parse_sops_config(b"creation_rules:\n  - age: age1x\n  - path_regex: (\n    age: age1x\n")


def test_damaged_files_are_told_from_plaintext():
    assert "damaged encrypted file" in damaged_secret_file(b"a: ENC[AES256_GCM,data:x]\n", "yaml")
    assert "damaged encrypted file" in damaged_secret_file(b"a: b\nsops:\n  age: []\n", "yaml")
    assert "neither an encrypted sops file nor readable YAML" in damaged_secret_file(b"a: [\n", "yaml")
    assert damaged_secret_file(b"a: plaintext\n", "yaml") is None
    assert damaged_secret_file(b"KEY=value\n", "dotenv") is None
