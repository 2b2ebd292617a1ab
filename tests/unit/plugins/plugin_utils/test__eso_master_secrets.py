# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/_eso_master_secrets.py: master secrets decrypted in memory through Sops (the real sops binary)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_manifests import LABELS
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_master_secrets import load_master_secrets, master_secret_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import ExternalSecretsError, resolve_settings
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from tests.integration.eso_support import DATABASE_URL, SENTINELS, open_sops, write_master_secrets

SETTINGS = resolve_settings({}, None)


@pytest.fixture
def sops(tmp_path: Path) -> Sops:
    generate_key_file(tmp_path / "age.key")
    return open_sops(tmp_path, tmp_path / "age.key")


def test_secrets_are_decrypted_sorted_and_placed_in_the_secrets_namespace(sops: Sops):
    write_master_secrets(sops)
    sops.root.joinpath("kubernetes/apps/external-secrets/store/master-secrets").mkdir(parents=True)
    masters = load_master_secrets(sops, SETTINGS)
    assert [(m.name, m.source) for m in masters] == [
        ("jwt-signing-key", "kubernetes/secrets/auth.sops.yaml"),
        ("postgres-credentials", "kubernetes/secrets/databases.sops.yaml"),
        ("redis-credentials", "kubernetes/secrets/databases.sops.yaml")]
    postgres = masters[1].manifest
    assert postgres["metadata"] == {"name": "postgres-credentials", "namespace": "secrets", "labels": LABELS}
    assert (postgres["type"], postgres["stringData"]["url"]) == ("Opaque", DATABASE_URL)
    assert DATABASE_URL not in repr(masters[1])


def test_the_glob_skips_the_gitops_output_folder(tmp_path: Path):
    for relpath in ("kubernetes/secrets/a.sops.yaml", "kubernetes/apps/external-secrets/store/b.sops.yaml",
                    "kubernetes/apps/other/c.sops.yaml"):
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text("x: 1\n")
    assert master_secret_files(tmp_path, "kubernetes/**/*.sops.yaml", "kubernetes/apps/external-secrets") == [
        "kubernetes/apps/other/c.sops.yaml", "kubernetes/secrets/a.sops.yaml"]


def test_plaintext_and_damaged_files_are_named_without_running_sops(sops: Sops, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(Sops, "decrypt", lambda *_a, **_k: pytest.fail("nothing to decrypt"))
    folder = sops.root / "kubernetes/secrets"
    folder.mkdir(parents=True)
    (folder / "plain.sops.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "stringData": {"k": DATABASE_URL}}))
    (folder / "broken.sops.yaml").write_text("stringData:\n  k: ENC[AES256_GCM,data:abc,type:str]\n")
    with pytest.raises(ExternalSecretsError) as info:
        load_master_secrets(sops, SETTINGS)
    text = str(info.value)
    assert "2 problem(s)" in text
    assert "kubernetes/secrets/plain.sops.yaml: is not SOPS-encrypted; encrypt it (sops encrypt -i" in text
    assert "kubernetes/secrets/broken.sops.yaml: looks like a damaged encrypted file" in text
    assert DATABASE_URL not in text


def test_every_bad_document_is_named_at_once_without_values(sops: Sops):
    write_master_secrets(sops, {
        "kubernetes/secrets/bad.sops.yaml": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": DATABASE_URL}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "Upper_Case"}, "stringData": {"k": DATABASE_URL}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "elsewhere", "namespace": "apps"}, "stringData": {"k": "v"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "twice"}, "stringData": {"k": "v"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "twice"}, "stringData": {"k": "v"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "listed"}, "stringData": ["k"]},
        ]})
    with pytest.raises(ExternalSecretsError) as info:
        load_master_secrets(sops, SETTINGS)
    text = str(info.value)
    assert "5 problem(s)" in text
    for expected in ("(document 1): is not a Kubernetes Secret", "(document 2): metadata.name 'Upper_Case'",
                     "(document 3): metadata.namespace is 'apps'", "(document 5): the Secret 'twice' is also defined in",
                     "(document 6): stringData must be a mapping"):
        assert expected in text
    assert not [value for value in SENTINELS if value in text]


def test_a_file_for_another_key_says_where_keys_were_looked_up(sops: Sops, tmp_path: Path):
    write_master_secrets(sops)
    (tmp_path / "age.key").unlink()  # the repository's key would be found beside the one given
    generate_key_file(tmp_path / "other.key")
    other = Sops.open(tmp_path, str(tmp_path / "other.key"), sops.binary, environ={})
    with pytest.raises(ExternalSecretsError) as info:
        load_master_secrets(other, SETTINGS)
    assert "sops could not decrypt it" in str(info.value)
    assert "age keys looked up in:" in str(info.value)


def test_held_plaintext_counts_without_being_on_disk_or_decrypted(sops: Sops, monkeypatch):
    """configure's check mode: a master secret it would render exists only in memory."""
    held = {
        "kubernetes/secrets/new.sops.yaml": b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: brand-new\nstringData:\n  k: v\n",
        "kubernetes/apps/x/secret.sops.yaml": b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: not-a-master\n",
        "kubernetes/secrets/deeper/no.sops.yaml": b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: too-deep\n",
    }
    monkeypatch.setattr(sops, "decrypt", lambda *a, **k: pytest.fail("decrypted"))
    masters = load_master_secrets(sops, SETTINGS, held)
    assert [(m.name, m.source) for m in masters] == [("brand-new", "kubernetes/secrets/new.sops.yaml")]
