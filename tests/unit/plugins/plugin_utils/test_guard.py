# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The overwrite guard's rule, on parsed documents (no sops needed)."""

from __future__ import annotations

from types import SimpleNamespace

from ansible_collections.cluster.secrets.plugins.plugin_utils._guard import (
    check_secret_overwrites,
    find_losses,
    flatten_document,
    is_real,
)

KNOWN = ["tfstate_username", "tfstate_password", "cf_account_id", "cloudflare_token"]
OLD = [{"cf_account_id": "abc123", "tfstate_username": "admin", "tfstate_password": "s3cret-value",
        "proxmox_api_token_secret": "uuid-1"}]


def reasons(losses):
    return {loss.key: loss.reason for loss in losses}


def test_real_values():
    assert is_real("x")
    assert is_real(0)
    assert not is_real("")
    assert not is_real("   ")
    assert not is_real(None)
    assert not is_real("CHANGE-ME-please")
    assert not is_real("changeme")


def test_flatten_single_document_and_nested_paths():
    flat = flatten_document([{"a": {"b": [1, {"c": "d"}]}, "e": None}])
    assert flat == {"a.b[0]": 1, "a.b[1].c": "d", "e": None}
    assert flatten_document(None) == {}
    assert flatten_document(b"bytes") == {"(file content)": b"bytes"}


def test_empty_missing_and_placeholder_always_block():
    new = [{"cf_account_id": "", "tfstate_username": "admin", "tfstate_password": "CHANGE-ME"}]
    found = reasons(find_losses("s.sops.yaml", OLD, new, {"cf_account_id": ""}, KNOWN))
    assert found == {
        "cf_account_id": "would become empty",
        "tfstate_password": "would become a placeholder",
        "proxmox_api_token_secret": "would be removed",
    }


def test_different_value_blocks_only_when_cluster_yaml_lacks_the_key():
    new = [dict(OLD[0], tfstate_username="terraform", tfstate_password="new-value")]
    found = reasons(find_losses("s.sops.yaml", OLD, new, {"tfstate_password": "new-value"}, KNOWN))
    assert list(found) == ["tfstate_username"]
    assert "cluster.yaml has no tfstate_username" in found["tfstate_username"]


def test_nested_keys_match_cluster_keys_without_case():
    old = [{"stringData": {"CLOUDFLARE_TOKEN": "real-token", "OTHER": "x"}}]
    new = [{"stringData": {"CLOUDFLARE_TOKEN": "other-token", "OTHER": "y"}}]
    assert find_losses("k.sops.yaml", old, new, {"cloudflare_token": "other-token"}, KNOWN) == []
    assert reasons(find_losses("k.sops.yaml", old, new, {}, KNOWN)) == {
        "stringData.CLOUDFLARE_TOKEN": "would change to a template default: cluster.yaml has no CLOUDFLARE_TOKEN"}


def test_placeholders_and_empty_old_values_are_not_protected():
    old = [{"a": "CHANGE-ME", "b": "", "c": None}]
    assert find_losses("s.sops.yaml", old, [{}], {}, KNOWN) == []


def test_check_message_names_keys_never_values_and_honours_override():
    item = SimpleNamespace(path="infrastructure/secrets.sops.yaml", state="changed", previous=OLD,
                           rendered=[{"cf_account_id": "", "tfstate_username": "terraform", "tfstate_password": ""}])
    untouched = SimpleNamespace(path="other.sops.yaml", state="unchanged", previous=None, rendered=None)
    message = check_secret_overwrites([item, untouched], {}, allow=False)
    assert message is not None
    for key in ("cf_account_id", "tfstate_username", "tfstate_password", "proxmox_api_token_secret"):
        assert key in message
    for value in ("abc123", "admin", "s3cret-value", "uuid-1"):
        assert value not in message
    assert "cluster.secrets.migrate" in message
    assert "configure_allow_secret_overwrite" in message
    assert check_secret_overwrites([item], {}, allow=True) is None
