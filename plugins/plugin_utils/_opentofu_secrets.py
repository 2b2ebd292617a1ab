# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The secrets an OpenTofu run hands to the binary, held in memory only.

``infrastructure/secrets.sops.yaml``, any ``*.tfvars.sops.*`` next to the configuration, and any
``*.tfvars.enc`` there (an HCL tfvars file encrypted whole by sops, parsed by ``_opentofu_tfvars``) are
read and decrypted through the one door to sops (``_sops.Sops``), or taken as they are when the
caller already holds them decrypted (configure, right after rendering): then nothing is decrypted.
The secrets file is optional when tfvars files exist (a project that only has tfvars).
They become ``TF_HTTP_USERNAME`` / ``TF_HTTP_PASSWORD`` (from the secrets file only) and
``TF_VAR_<key>`` values for the child's environment, the list of values to scrub from output, and an HMAC of the backend
credentials keyed like the plaintext cache (``_secret_plan.PlaintextCache.key``).

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import OpenTofuError, TofuOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_tfvars import TFVARS_ENC_GLOB, parse_tfvars
from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import SECRET_NAME_RE, is_placeholder, secret_values
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_plan import PlaintextCache, parse_plaintext
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops, SopsToolError
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import sops_format
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import load_schema

TFVARS_SOPS_GLOB = "*.tfvars.sops.*"
TF_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
TFVARS_MIN_SECRET_LENGTH = 8
# Separates the credentials HMAC from every other use of the keyed-cache key.
CREDENTIALS_MAC_CONTEXT = b"cluster.secrets opentofu credentials v2\0"


@dataclass
class InfraSecrets:
    """Decrypted infrastructure secrets, held in memory only."""

    values: dict[str, Any] = field(default_factory=dict, repr=False)
    tfvars: dict[str, Any] = field(default_factory=dict, repr=False)
    sources: list[str] = field(default_factory=list)
    mac_key: bytes | None = field(default=None, repr=False)
    skipped_names: list[str] = field(default_factory=list)
    # False for a tfvars-only project (no secrets file): no backend credentials are passed, none are required.
    has_secrets_file: bool = True

    @property
    def username(self) -> str:
        value = self.values.get("tfstate_username")
        return str(value) if value not in (None, "") else "terraform"

    @property
    def password(self) -> str:
        value = self.values.get("tfstate_password")
        return "" if value is None else str(value)

    @property
    def configured(self) -> bool:
        """True when the state backend password is set and not a CHANGE-ME placeholder."""
        return bool(self.password.strip()) and not is_placeholder(self.password)

    def scrub_values(self) -> list[str]:
        """Every value to mask in output: secret-named or writeOnly keys, and whatever tfvars files hold."""
        found = set(secret_values(self.values, load_schema()))
        if self.password:
            found.add(self.password)
        for key, value in _flat_strings(self.tfvars):
            if len(value) >= TFVARS_MIN_SECRET_LENGTH or SECRET_NAME_RE.search(key):
                found.add(value)
        return sorted((v for v in found if v), key=len, reverse=True)

    def http_env(self) -> dict[str, str]:
        if not self.has_secrets_file:
            return {}
        return {"TF_HTTP_USERNAME": self.username, "TF_HTTP_PASSWORD": self.password}

    def var_env(self) -> dict[str, str]:
        merged = dict(self.values)
        merged.update(self.tfvars)
        env = {}
        for key, value in merged.items():
            if value is None:
                continue
            if not isinstance(key, str) or not TF_VAR_NAME_RE.match(key):
                self.skipped_names.append(str(key))
                continue
            env[f"TF_VAR_{key}"] = tf_var_value(value)
        return env

    def credentials_mac(self) -> str | None:
        """An HMAC of the backend credentials (None without an age key to key it); reveals nothing without the key."""
        if self.mac_key is None:
            return None
        material = f"{self.username}\0{self.password}".encode()
        return hmac.new(self.mac_key, CREDENTIALS_MAC_CONTEXT + material, hashlib.sha256).hexdigest()


def _flat_strings(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return [pair for key, item in value.items() for pair in _flat_strings(item, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(value, list):
        return [pair for item in value for pair in _flat_strings(item, prefix)]
    return [(prefix, value)] if isinstance(value, str) else []


def tf_var_value(value: Any) -> str:
    """How a value is written in a TF_VAR_* variable: strings as they are, the rest as HCL/JSON literals.

    OpenTofu reads a list or map TF_VAR_* as an HCL expression, where a quoted ``${`` or ``%{`` starts a template:
    those are escaped (``$${``, ``%%{``) so every string arrives as written."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    # `$` and `%` occur only inside JSON strings, so the replacements touch nothing else.
    return json.dumps(value, default=str, ensure_ascii=False).replace("${", "$${").replace("%{", "%%{")


# ---------------------------------------------------------------------------- reading them


def open_sops(options: TofuOptions) -> Sops:
    """The repository's door to sops, for a caller that did not hand one over."""
    try:
        return Sops.open(options.root, options.age_key_file, options.sops_binary, options.environ)
    except SopsToolError as exc:
        raise OpenTofuError(str(exc), "secrets") from None


def tfvars_files(options: TofuOptions) -> list[str]:
    """The encrypted tfvars files next to the configuration, relative to the repository: ``*.tfvars.sops.*`` in name
    order, then ``terraform.tfvars.enc`` and the other ``*.tfvars.enc`` in name order (later ones win a clash)."""
    if not options.workdir.is_dir():
        return []
    sops_files = sorted(options.workdir.glob(TFVARS_SOPS_GLOB))
    enc_files = sorted(options.workdir.glob(TFVARS_ENC_GLOB), key=lambda p: (p.name != "terraform.tfvars.enc", p.name))
    return [path.relative_to(options.root).as_posix() for path in [*sops_files, *enc_files] if path.is_file()]


def load_secrets(options: TofuOptions, sops: Sops | None = None, values: Mapping[str, Any] | None = None,
                 tfvars: Mapping[str, Mapping[str, Any]] | None = None) -> InfraSecrets | None:
    """The infrastructure secrets and tfvars values, in memory; None when there is neither a secrets file nor a
    tfvars file. Without a secrets file (a tfvars-only project), ``has_secrets_file`` is False.

    ``values``: the secrets file's decrypted mapping, when the caller already holds it; that file is then neither
    read nor decrypted. ``tfvars``: decrypted ``*.tfvars.sops.*`` files the caller holds, by path relative to the
    repository; those on disk that are not among them are decrypted through ``sops`` (opened here when not given).
    """
    on_disk = tfvars_files(options)
    held = dict(tfvars or {})
    if values is None and sops is None and not (options.root / options.secrets_file).is_file() and not on_disk and not held:
        return None  # nothing to decrypt: no need to look for age keys
    sops = sops or open_sops(options)
    present = values is not None or sops.status(options.secrets_file).exists
    if not present and not on_disk and not held:
        return None
    if values is None and present:
        values = decrypt_mapping(sops, options.secrets_file)
    secrets = InfraSecrets(values=_mapping(values, options.secrets_file), mac_key=PlaintextCache(None, sops.keys).key,
                           sources=[options.secrets_file] if present else [], has_secrets_file=present)
    # The *.tfvars.sops.* files (held or on disk) in name order, as before; then the *.tfvars.enc files.
    enc = [relpath for relpath in on_disk if relpath.endswith(".tfvars.enc") and relpath not in held]
    order = sorted((set(on_disk) - set(enc)) | set(held)) + enc
    for relpath in order:
        data = held[relpath] if relpath in held else decrypt_mapping(sops, relpath)
        secrets.tfvars.update(_mapping(data, relpath))
        secrets.sources.append(relpath)
    return secrets


def decrypt_mapping(sops: Sops, relpath: str) -> dict[str, Any]:
    """A secret file decrypted through the door and parsed into a mapping of variable names to values."""
    fmt = sops_format(relpath)
    hcl = fmt == "binary" and relpath.endswith(".tfvars.enc")
    if fmt not in ("yaml", "json", "dotenv") and not hcl:
        raise OpenTofuError(f"{relpath}: only YAML, JSON or dotenv files, or HCL *.tfvars.enc files, can be turned into "
                            "TF_VAR_* variables; rename it to *.tfvars.sops.yaml, *.tfvars.sops.json or *.tfvars.enc", "secrets")
    if not sops.keys.identities:
        raise OpenTofuError(f"{relpath}: no age key to decrypt it (looked in: {sops.keys.where()})", "secrets")
    try:
        plaintext = sops.decrypt(relpath)
    except SopsToolError as exc:
        raise OpenTofuError(str(exc), "secrets") from None
    if hcl:
        return parse_tfvars(plaintext, relpath)
    unparsable = OpenTofuError(f"{relpath}: the decrypted content does not parse as {fmt}", "secrets")
    try:
        data = parse_plaintext(plaintext, fmt)
    except (ValueError, yaml.YAMLError):
        raise unparsable from None
    if fmt == "yaml":
        if len(data) > 1:  # a stream of several documents is not one mapping
            raise unparsable
        data = data[0] if data else None
    return _mapping(data, relpath)


def _mapping(data: Any, relpath: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise OpenTofuError(f"{relpath}: the decrypted content must be a mapping of variable names to values", "secrets")
    return dict(data)
