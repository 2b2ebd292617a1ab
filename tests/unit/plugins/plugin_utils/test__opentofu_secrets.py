# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_opentofu_secrets: the secrets in memory, read through the door (or handed over), the TF_* values, the credentials HMAC."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeIdentity, AgeKeys, generate_identity, generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import OpenTofuError, TofuOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_secrets import (
    InfraSecrets,
    load_secrets,
    tf_var_value,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_plan import PlaintextCache
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config

PASSWORD = "pw:with 'quotes' #and-more"
TOKEN = "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
SECRETS = "infrastructure/secrets.sops.yaml"


def secrets(**values: object) -> InfraSecrets:
    data = {"tfstate_username": "terraform", "tfstate_password": PASSWORD, "proxmox_api_token_secret": TOKEN,
            "cf_account_id": "0123456789abcdef"}
    data.update(values)
    return InfraSecrets(values={k: v for k, v in data.items() if v is not None}, mac_key=b"k" * 32)


class FakeSops(Sops):
    """The door with made-up keys; ``plaintexts`` answer decrypt (None: decrypting is a test failure)."""

    def __init__(self, root: Path, plaintexts: dict[str, bytes] | None = None, identity: str = "AGE-SECRET-KEY-1TEST",
                 identities: bool = True) -> None:
        keys = AgeKeys([AgeIdentity(identity, "age1test", "test")] if identities else [], ["test"])
        super().__init__(root, keys)
        self.plaintexts = plaintexts
        self.decrypted: list[str] = []

    def decrypt(self, relpath: str, content: bytes | None = None) -> bytes:
        if self.plaintexts is None:
            raise AssertionError(f"sops must not run: decrypt({relpath})")
        self.decrypted.append(relpath)
        return self.plaintexts[relpath]


@pytest.fixture
def options(tmp_path: Path) -> TofuOptions:
    options = TofuOptions(root=tmp_path, environ={"HOME": str(tmp_path / "home")})
    options.workdir.mkdir(parents=True)
    return options


def place(options: TofuOptions, relpath: str, content: bytes = b"sops: {}\n") -> None:
    path = options.root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


# ---------------------------------------------------------------------------- values and environment


@pytest.mark.parametrize(("password", "configured"), [
    (PASSWORD, True), ("", False), ("   ", False), (None, False), ("CHANGE-ME", False), ("changeme-later", False),
])
def test_configured_needs_a_real_password(password, configured):
    assert secrets(tfstate_password=password).configured is configured


def test_username_defaults_to_terraform():
    assert secrets(tfstate_username="").username == "terraform"
    assert secrets(tfstate_username="admin").username == "admin"


@pytest.mark.parametrize(("value", "text"), [
    ("a b", "a b"), (True, "true"), (False, "false"), (3, "3"), (1.5, "1.5"),
    (["a", 1], '["a", 1]'), ({"k": "v"}, '{"k": "v"}'),
])
def test_tf_var_value(value, text):
    assert tf_var_value(value) == text


def test_var_env_passes_every_value_and_skips_bad_names():
    data = secrets(**{"bad name": "x", "nothing": None})
    data.tfvars = {"extra": {"a": 1}}
    env = data.var_env()
    assert env["TF_VAR_proxmox_api_token_secret"] == TOKEN
    assert env["TF_VAR_extra"] == '{"a": 1}'
    assert "TF_VAR_nothing" not in env
    assert data.skipped_names == ["bad name"]


def test_scrub_values_cover_secrets_but_not_public_names():
    data = secrets()
    data.tfvars = {"short": "abc", "long_enough_value": "plain-but-long", "db_password": "pw"}
    values = data.scrub_values()
    assert PASSWORD in values and TOKEN in values and "plain-but-long" in values and "pw" in values
    assert "terraform" not in values and "abc" not in values


# ---------------------------------------------------------------------------- the credentials HMAC


def test_credentials_mac_changes_with_credentials_and_key():
    base = secrets().credentials_mac()
    assert base and PASSWORD not in base
    assert secrets(tfstate_password="other").credentials_mac() != base
    assert secrets(tfstate_username="admin").credentials_mac() != base
    other_key = secrets()
    other_key.mac_key = b"x" * 32
    assert other_key.credentials_mac() != base
    assert InfraSecrets(values={"tfstate_password": PASSWORD}).credentials_mac() is None  # no key, no MAC


def test_credentials_mac_is_keyed_by_the_age_identities_like_the_cache(options):
    values = {"tfstate_password": PASSWORD}
    door = FakeSops(options.root)
    loaded = load_secrets(options, door, values)
    assert loaded is not None and loaded.mac_key == PlaintextCache(None, door.keys).key
    same = load_secrets(options, FakeSops(options.root), values)
    other_key = load_secrets(options, FakeSops(options.root, identity="AGE-SECRET-KEY-1OTHER"), values)
    other_password = load_secrets(options, FakeSops(options.root), {"tfstate_password": "different"})
    assert same is not None and other_key is not None and other_password is not None
    assert same.credentials_mac() == loaded.credentials_mac()
    assert other_key.credentials_mac() != loaded.credentials_mac()
    assert other_password.credentials_mac() != loaded.credentials_mac()
    # Not the cache's own MAC of the same bytes: the two uses of the key stay apart.
    assert loaded.credentials_mac() != PlaintextCache(None, door.keys).mac(f"terraform\0{PASSWORD}".encode(), "")


# ---------------------------------------------------------------------------- reading through the door, or not at all


def test_no_secrets_file_means_none_without_looking_for_keys(options):
    options.age_key_file = str(options.root / "missing.key")  # looking for keys would fail
    assert load_secrets(options) is None
    assert load_secrets(options, FakeSops(options.root)) is None


def test_held_secrets_are_not_decrypted(options):
    place(options, SECRETS)
    place(options, "infrastructure/tofu/prod.tfvars.sops.yaml")
    loaded = load_secrets(options, FakeSops(options.root), {"tfstate_password": PASSWORD},
                          {"infrastructure/tofu/prod.tfvars.sops.yaml": {"region": "eu"}})
    assert loaded is not None
    assert loaded.values == {"tfstate_password": PASSWORD} and loaded.tfvars == {"region": "eu"}
    assert loaded.sources == [SECRETS, "infrastructure/tofu/prod.tfvars.sops.yaml"]


def test_files_on_disk_are_decrypted_once_through_the_door(options):
    place(options, SECRETS)
    place(options, "infrastructure/tofu/a.tfvars.sops.json")
    place(options, "infrastructure/tofu/b.tfvars.sops.env")
    door = FakeSops(options.root, {
        SECRETS: b"tfstate_password: pw\nproxmox_node: pve\n",
        "infrastructure/tofu/a.tfvars.sops.json": b'{"a": 1}',
        "infrastructure/tofu/b.tfvars.sops.env": b"# comment\nb=two words\n",
    })
    loaded = load_secrets(options, door)
    assert loaded is not None
    assert loaded.values == {"tfstate_password": "pw", "proxmox_node": "pve"}
    assert loaded.tfvars == {"a": 1, "b": "two words"}
    assert sorted(door.decrypted) == sorted(set(door.decrypted)) == sorted(door.plaintexts or {})
    # Held secrets with a tfvars file the caller does not hold: only that file is decrypted.
    door.decrypted.clear()
    assert load_secrets(options, door, {"tfstate_password": "pw"}, {"infrastructure/tofu/a.tfvars.sops.json": {"a": 2}})
    assert door.decrypted == ["infrastructure/tofu/b.tfvars.sops.env"]


@pytest.mark.parametrize(("relpath", "plaintext", "message"), [
    ("infrastructure/tofu/x.tfvars.sops.ini", b"[a]\nb=c\n", "only YAML, JSON or dotenv files"),
    ("infrastructure/tofu/x.tfvars.sops.yaml", b"a: 1\n---\nb: 2\n", "does not parse as yaml"),
    ("infrastructure/tofu/x.tfvars.sops.json", b"{not json", "does not parse as json"),
    ("infrastructure/tofu/x.tfvars.sops.yaml", b"- a\n- b\n", "must be a mapping of variable names to values"),
])
def test_unusable_files_are_named(options, relpath, plaintext, message):
    place(options, SECRETS)
    place(options, relpath)
    door = FakeSops(options.root, {SECRETS: b"tfstate_password: pw\n", relpath: plaintext})
    with pytest.raises(OpenTofuError, match=message) as caught:
        load_secrets(options, door)
    assert caught.value.cause == "secrets" and relpath in str(caught.value)


def test_no_age_key_says_where_it_looked(options):
    place(options, SECRETS)
    with pytest.raises(OpenTofuError, match=r"secrets.sops.yaml: no age key to decrypt it \(looked in: test\)"):
        load_secrets(options, FakeSops(options.root, {}, identities=False))
    with pytest.raises(OpenTofuError, match="does not exist") as caught:
        load_secrets(TofuOptions(root=options.root, age_key_file=str(options.root / "missing.key")))
    assert caught.value.cause == "secrets"


def test_a_real_door_decrypts_a_real_file(options):
    """The real sops binary behind the door: the secrets file is read and decrypted once."""
    recipient = generate_key_file(options.root / "age.key")
    (options.root / ".sops.yaml").write_text(default_sops_config([recipient]))
    door = Sops.open(options.root, environ={"HOME": str(options.root / "home")})
    place(options, SECRETS, door.encrypt(f"tfstate_password: {PASSWORD!r}\n".encode(), SECRETS))
    calls: list[str] = []
    decrypt = door.decrypt

    def counted(relpath: str, content: bytes | None = None) -> bytes:
        calls.append(relpath)
        return decrypt(relpath, content)

    door.decrypt = counted  # type: ignore[method-assign]
    loaded = load_secrets(options, door)
    assert loaded is not None and loaded.password == PASSWORD and calls == [SECRETS]
    assert loaded.credentials_mac() == load_secrets(options, door, {"tfstate_password": PASSWORD}).credentials_mac()  # type: ignore[union-attr]
    stranger = generate_identity("stranger")
    with pytest.raises(OpenTofuError) as caught:
        load_secrets(options, Sops(options.root, AgeKeys([stranger], ["stranger"])))
    assert caught.value.cause == "secrets" and SECRETS in str(caught.value) and PASSWORD not in str(caught.value)


# ---------------------------------------------------------------------------- terraform.tfvars.enc: HCL, encrypted whole

ENC = "infrastructure/tofu/terraform.tfvars.enc"


def test_encrypted_hcl_tfvars_are_decrypted_and_parsed(options):
    place(options, SECRETS)
    place(options, "infrastructure/tofu/a.tfvars.sops.yaml")
    place(options, ENC, b'{"data": "ENC[...]", "sops": {}}')
    place(options, "infrastructure/tofu/zz.auto.tfvars.enc", b'{"data": "ENC[...]", "sops": {}}')
    door = FakeSops(options.root, {
        SECRETS: b"tfstate_password: pw\n",
        "infrastructure/tofu/a.tfvars.sops.yaml": b"region: eu\nsize: 1\n",
        ENC: f'contabo_secret = "{TOKEN}"\nsize = 2\nzones = ["a", "b"]\n'.encode(),
        "infrastructure/tofu/zz.auto.tfvars.enc": b"size = 3\n",
    })
    loaded = load_secrets(options, door)
    assert loaded is not None
    # terraform.tfvars.enc after the *.tfvars.sops.* files, then the other *.tfvars.enc: later ones win a clash.
    assert loaded.sources == [SECRETS, "infrastructure/tofu/a.tfvars.sops.yaml", ENC, "infrastructure/tofu/zz.auto.tfvars.enc"]
    assert loaded.tfvars == {"region": "eu", "size": 3, "contabo_secret": TOKEN, "zones": ["a", "b"]}
    env = loaded.var_env()
    assert env["TF_VAR_contabo_secret"] == TOKEN and env["TF_VAR_zones"] == '["a", "b"]' and env["TF_VAR_size"] == "3"
    assert TOKEN in loaded.scrub_values()


def test_a_tfvars_only_project_needs_no_secrets_file(options):
    place(options, ENC)
    door = FakeSops(options.root, {ENC: b'api_token = "tok-123456789"\n'})
    loaded = load_secrets(options, door)
    assert loaded is not None and not loaded.has_secrets_file and not loaded.configured
    assert loaded.sources == [ENC] and loaded.values == {}
    assert loaded.http_env() == {} and loaded.var_env() == {"TF_VAR_api_token": "tok-123456789"}
    assert door.decrypted == [ENC]


def test_a_real_door_decrypts_a_binary_sops_tfvars_file(options):
    """The real sops binary, binary format (as `sops encrypt --input-type binary --output-type binary` writes it)."""
    recipient = generate_key_file(options.root / "age.key")
    (options.root / ".sops.yaml").write_text(f"creation_rules:\n  - path_regex: \\.enc$\n    age: {recipient}\n")
    door = Sops.open(options.root, environ={"HOME": str(options.root / "home")})
    plaintext = f'password = "{PASSWORD}"\nports = [80, 443]\n'.encode()
    ciphertext = door.encrypt(plaintext, ENC)
    assert PASSWORD.encode() not in ciphertext and b'"data": "ENC[' in ciphertext
    place(options, ENC, ciphertext)
    loaded = load_secrets(options, door)
    assert loaded is not None and loaded.tfvars == {"password": PASSWORD, "ports": [80, 443]}
    assert loaded.var_env() == {"TF_VAR_password": PASSWORD, "TF_VAR_ports": "[80, 443]"}
    assert PASSWORD.encode() not in b"".join(p.read_bytes() for p in options.root.rglob("*") if p.is_file()
                                             and p.name != "age.key")
