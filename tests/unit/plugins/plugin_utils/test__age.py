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


def test_an_identity_knows_the_file_it_came_from(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_identity

    key = tmp_path / "env.key"
    generate_key_file(key)
    generate_key_file(tmp_path / "age.key")
    environ = {"SOPS_AGE_KEY": key.read_text(), "SOPS_AGE_KEY_FILE": str(key), "XDG_CONFIG_HOME": str(tmp_path / "none")}
    from_env, from_root = find_age_keys(tmp_path, environ=environ).identities
    assert from_env.source == "$SOPS_AGE_KEY" and from_env.key_file is None  # the same key, first found in the variable
    assert from_root.key_file == tmp_path / "age.key"
    [from_file] = find_age_keys(tmp_path, environ={"SOPS_AGE_KEY_FILE": str(key)}).identities[:1]
    assert from_file.source == f"$SOPS_AGE_KEY_FILE ({key})" and from_file.key_file == key
    assert generate_identity().key_file is None


def test_a_key_file_text_holds_the_new_key_first_and_the_kept_ones_after():
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_identity, key_file_text

    new, old = generate_identity(), generate_identity()
    text = key_file_text(new, [old], note="previous key").decode()
    assert text.splitlines()[1] == f"# public key: {new.recipient}"
    assert [i.recipient for i in parse_identities(text, "x")] == [new.recipient, old.recipient]
    assert f"# previous key: public key {old.recipient}" in text


def test_without_pyrage_or_age_keygen_the_error_names_both(tmp_path, monkeypatch):
    from ansible_collections.cluster.secrets.plugins.plugin_utils import _age

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_age, "pyrage", None)
    with pytest.raises(AgeKeyError, match="pyrage or the age tools"):
        _age.generate_identity()


def test_age_keygen_alone_generates_keys(tmp_path, monkeypatch):
    import sys

    from ansible_collections.cluster.secrets.plugins.plugin_utils import _age

    keygen = tmp_path / "age-keygen"
    keygen.write_text(f"#!{sys.executable}\n" + (
        "import sys, pyrage\n"
        "if sys.argv[1:] == ['-y']:\n"
        "    print(pyrage.x25519.Identity.from_str(sys.stdin.read().strip()).to_public())\n"
        "else:\n"
        "    i = pyrage.x25519.Identity.generate()\n"
        "    print('# created: 2024-01-01T00:00:00Z'); print(f'# public key: {i.to_public()}'); print(i)\n"))
    keygen.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_age, "pyrage", None)
    identity = _age.generate_identity()
    assert identity.secret.startswith("AGE-SECRET-KEY-1") and identity.recipient and identity.recipient.startswith("age1")
    assert parse_identities(identity.secret, "x")[0].recipient == identity.recipient


# ---------------------------------------------------------------------------- .age-public-key


def test_the_public_key_file_is_written_once_with_the_recipient_only(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import ensure_public_key_file, read_public_key_file

    recipient = generate_key_file(tmp_path / "age.key")
    path = tmp_path / ".age-public-key"
    checked = ensure_public_key_file(tmp_path, recipient, check_mode=True)
    assert checked.changed and "would be written" in checked.message and not path.exists()
    written = ensure_public_key_file(tmp_path, recipient)
    assert written.changed and written.warning is None
    assert path.read_text() == f"{recipient}\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    before = path.stat()
    again = ensure_public_key_file(tmp_path, recipient)
    assert not again.changed and again.warning is None
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # an unchanged rerun writes nothing
    assert read_public_key_file(tmp_path).recipient == recipient
    # a hand-written one with a comment and no newline is as good
    path.write_text(f"# the repository's key\n{recipient}")
    assert not ensure_public_key_file(tmp_path, recipient).changed


def test_a_public_key_file_for_another_key_is_left_alone_unless_it_is_being_replaced(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import ensure_public_key_file, generate_identity

    ours, theirs = generate_identity().recipient, generate_identity().recipient
    path = tmp_path / ".age-public-key"
    path.write_text(f"{theirs}\n")
    kept = ensure_public_key_file(tmp_path, ours)
    assert not kept.changed and theirs in kept.warning and ours in kept.warning
    assert path.read_text() == f"{theirs}\n"
    checked = ensure_public_key_file(tmp_path, ours, replace={theirs}, check_mode=True)
    assert checked.changed and path.read_text() == f"{theirs}\n"
    replaced = ensure_public_key_file(tmp_path, ours, replace={theirs})
    assert replaced.changed and "updated" in replaced.message and path.read_text() == f"{ours}\n"


@pytest.mark.parametrize(("content", "problem"), [
    ("", "holds 0 lines"),
    ("age1abc\nage1def\n", "holds 2 lines"),
    ("age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq\n", "not hold a valid age public key"),
    ("ssh-ed25519 AAAA\n", "not hold a valid age public key"),
])
def test_a_public_key_file_that_is_not_one_recipient_is_a_problem(tmp_path, content, problem):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import (
        ensure_public_key_file,
        generate_identity,
        read_public_key_file,
    )

    (tmp_path / ".age-public-key").write_text(content)
    state = read_public_key_file(tmp_path)
    assert state.exists and state.recipient is None and problem in state.problem
    outcome = ensure_public_key_file(tmp_path, str(generate_identity().recipient))
    assert not outcome.changed and problem in outcome.warning
    assert (tmp_path / ".age-public-key").read_text() == content


def test_a_secret_key_in_the_public_key_file_is_named_but_never_shown(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import read_public_key_file

    generate_key_file(tmp_path / "age.key")
    (tmp_path / ".age-public-key").write_bytes((tmp_path / "age.key").read_bytes())
    state = read_public_key_file(tmp_path)
    assert "SECRET key" in state.problem and "AGE-SECRET-KEY-1" not in state.problem
    (tmp_path / ".age-public-key").unlink()
    (tmp_path / ".age-public-key").symlink_to(tmp_path / "age.key")
    assert "not a regular file" in read_public_key_file(tmp_path).problem


def test_the_repository_recipient_is_the_first_key_that_sops_config_lists(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import repository_recipient
    from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config

    first, second = generate_key_file(tmp_path / "a.key"), generate_key_file(tmp_path / "b.key")
    assert repository_recipient(tmp_path, [first, second]) == first  # no .sops.yaml yet
    (tmp_path / ".sops.yaml").write_text(default_sops_config([second]))
    assert repository_recipient(tmp_path, [first, second]) == second
    assert repository_recipient(tmp_path, [first]) is None  # a key of another repository is never published
    (tmp_path / ".sops.yaml").write_text("creation_rules: [broken\n")
    assert repository_recipient(tmp_path, [first, second]) == first
