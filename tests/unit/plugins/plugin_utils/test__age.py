# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import (
    AgeKeyError,
    find_age_keys,
    generate_key_file,
    parse_identities,
)

PQ_KEY = "AGE-SECRET-KEY-PQ-1" + "Q" * 60


def test_generated_key_is_private_and_found_first_in_repo(tmp_path):
    recipient = generate_key_file(tmp_path / "age.key")
    assert recipient.startswith("age1")
    assert (tmp_path / "age.key").stat().st_mode & 0o777 == 0o600
    keys = find_age_keys(tmp_path, environ={"XDG_CONFIG_HOME": str(tmp_path / "none")})
    assert keys.recipients == [recipient]
    assert keys.primary.source == str(tmp_path / "age.key")


def test_lookup_order_and_environment(tmp_path):
    env_file = tmp_path / "env.key"
    user_dir = tmp_path / "config" / "sops" / "age"
    user_dir.mkdir(parents=True)
    first = generate_key_file(tmp_path / "key-in-var")
    second = generate_key_file(env_file)
    third = generate_key_file(tmp_path / "repo" / "age.key")
    fourth = generate_key_file(user_dir / "keys.txt")
    environ = {"SOPS_AGE_KEY": (tmp_path / "key-in-var").read_text(), "SOPS_AGE_KEY_FILE": str(env_file),
               "XDG_CONFIG_HOME": str(tmp_path / "config")}
    keys = find_age_keys(tmp_path / "repo", environ=environ)
    assert keys.recipients == [first, second, third, fourth]
    assert keys.looked[0] == "$SOPS_AGE_KEY"
    assert keys.sops_env()["SOPS_AGE_KEY"].count("AGE-SECRET-KEY-") == 4


def test_post_quantum_keys_are_recognised():
    identities = parse_identities(f"# created: now\n{PQ_KEY}\n", "test")
    assert len(identities) == 1 and identities[0].post_quantum


def test_malformed_key_file_is_reported_without_its_content():
    with pytest.raises(AgeKeyError) as info:
        parse_identities("not-a-key-but-a-secret-looking-line\n", "somewhere")
    assert "somewhere" in str(info.value) and "secret-looking" not in str(info.value)


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(AgeKeyError, match="does not exist"):
        find_age_keys(tmp_path, key_file=str(tmp_path / "nope.key"), environ={})
