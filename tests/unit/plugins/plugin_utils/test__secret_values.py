# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret values by key path (what sops encrypted, with the real sops binary) and keyed fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity, AgeKeys, generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_values import (
    WHOLE_FILE,
    combined_key,
    fingerprint,
    identity_key,
    key_id,
    repository_identity,
    secret_values,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops

SECRET_YAML = b"""apiVersion: v1
kind: Secret
metadata:
  name: db
stringData:
  password: "{{ hunter2 }}"
  port: 5432
  enabled: true
  empty: ""
"""


@pytest.fixture()
def sops(tmp_path: Path) -> Sops:
    root = tmp_path / "repo"
    root.mkdir()
    recipient = generate_key_file(root / "age.key")
    (root / ".sops.yaml").write_text(
        "creation_rules:\n"
        f"  - path_regex: kubernetes/.*\\.sops\\.ya?ml$\n    encrypted_regex: ^(data|stringData)$\n    age: {recipient}\n"
        f"  - path_regex: \\.sops\\.[^/]+$\n    age: {recipient}\n")
    return Sops.open(root, environ={"HOME": str(tmp_path / "home")})


def test_only_the_leaves_sops_encrypted_are_secret_values(sops):
    ciphertext = sops.encrypt(SECRET_YAML, "kubernetes/db.sops.yaml")
    # metadata.name, apiVersion and kind stay in the clear (encrypted_regex); empty and true/false are no secrets
    assert secret_values(ciphertext, SECRET_YAML, "kubernetes/db.sops.yaml") == {
        "stringData.password": "{{ hunter2 }}", "stringData.port": "5432"}


def test_every_format(sops):
    dotenv = b"TOKEN=abc=def\nEMPTY=\n"
    assert secret_values(sops.encrypt(dotenv, "x.sops.env"), dotenv, "x.sops.env") == {"TOKEN": "abc=def"}
    data = b'{"a": {"b": ["one", "two"]}, "c": 3}'
    assert secret_values(sops.encrypt(data, "x.sops.json"), data, "x.sops.json") == {
        "a.b[0]": "one", "a.b[1]": "two", "c": "3"}
    ini = b"[db]\npassword = s3cret\n"
    assert secret_values(sops.encrypt(ini, "x.sops.ini"), ini, "x.sops.ini") == {"db.password": "s3cret"}
    binary = b"\x00\x01 key material"
    assert secret_values(sops.encrypt(binary, "x.sops.bin"), binary, "x.sops.bin") == {WHOLE_FILE: "\x00\x01 key material"}


def test_an_unreadable_ciphertext_counts_every_leaf():
    assert secret_values(b"a: [unclosed", b"a: one\nb: two\n", "x.sops.yaml") == {"a": "one", "b": "two"}


def test_repository_identity_is_the_one_the_rules_name_wherever_the_run_happens():
    own, other = AgeIdentity("AGE-SECRET-KEY-1OWN", "age1own", "repo"), AgeIdentity("AGE-SECRET-KEY-1OTHER", "age1zzz", "home")
    assert repository_identity(AgeKeys([other, own], []), ["age1own"]) is own
    assert repository_identity(AgeKeys([own], []), ["age1own"]) is own
    assert repository_identity(AgeKeys([other], []), ["age1own"]) is None


def test_fingerprints_are_keyed():
    prod, staging = AgeIdentity("AGE-SECRET-KEY-1PROD", "age1p", "p"), AgeIdentity("AGE-SECRET-KEY-1STAGING", "age1s", "s")
    k_prod, k_staging = identity_key(prod, "credential dates"), identity_key(staging, "credential dates")
    assert k_prod != k_staging and k_prod != identity_key(prod, "fleet")
    assert fingerprint(k_prod, "hunter2") != fingerprint(k_staging, "hunter2")
    assert fingerprint(k_prod, "hunter2", "a.sops.yaml\0pw") != fingerprint(k_prod, "hunter2", "b.sops.yaml\0pw")
    assert fingerprint(k_prod, "hunter2") == fingerprint(k_prod, "hunter2")
    fleet = combined_key([k_staging, k_prod], "fleet")
    assert fleet == combined_key([k_prod, k_staging], "fleet") != combined_key([k_prod], "fleet")
    assert len(key_id(k_prod)) == 16 and key_id(k_prod) != key_id(k_staging)
    assert "hunter2" not in fingerprint(k_prod, "hunter2")


def test_a_file_nested_too_deeply_is_one_value_not_a_crash():
    deep = b"[" * 5000 + b"]" * 5000
    assert secret_values(b"{}", deep, "x.sops.json") == {WHOLE_FILE: deep.decode()}
    assert secret_values(b"[" * 5000, b'{"a": "b"}', "x.sops.json") == {"a": "b"}  # an unreadable ciphertext
