# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one planner for secret files: which of them a run creates, changes or leaves, and their new ciphertext.

A secret file is rewritten only when its decrypted data differs from the new plaintext, or its
recipients differ from its creation rule's. To avoid decrypting every secret on every run, a keyed
cache (``PlaintextCache``) remembers, per file, the SHA-256 of the encrypted bytes and an HMAC of
the plaintext keyed with a hash of the age identities: it reveals nothing to someone without the
age key, and a mismatch only means falling back to decrypt-and-compare. Each file is read once
(``Sops.status``), decrypted at most once, and encrypted at most once, several at a time.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeys
from ansible_collections.cluster.secrets.plugins.plugin_utils._changes import FileChange
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write, private_dir
from ansible_collections.cluster.secrets.plugins.plugin_utils._guard import flatten_document
from ansible_collections.cluster.secrets.plugins.plugin_utils._parallel import parallel_map
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops, SopsToolError, decrypt_each
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import (
    SOPS_CONFIG_NAME,
    damaged_secret_file,
    rule_fingerprint,
    rule_for,
    rule_recipients,
    sops_format,
)


class _PlaintextLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loading, and a plain ``=`` (YAML 1.1's value tag, which sops writes unquoted) read as the text it is."""


_PlaintextLoader.add_constructor("tag:yaml.org,2002:value", _PlaintextLoader.construct_yaml_str)
_MISSING = object()


# ---------------------------------------------------------------------------- comparing plaintext


def parse_plaintext(content: bytes, fmt: str) -> Any:
    """A secret's plaintext as data, in the format sops reads it (binary stays bytes)."""
    if fmt == "yaml":
        return list(yaml.load_all(content, Loader=_PlaintextLoader))
    if fmt == "json":
        return json.loads(content)
    if fmt == "dotenv":
        pairs = {}
        for line in content.decode("utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _sep, value = line.partition("=")
                pairs[key.strip()] = value
        return pairs
    if fmt == "ini":
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(content.decode("utf-8"))
        return {section: dict(parser[section]) for section in parser.sections()}
    return content


def parse_plaintext_safe(content: bytes, path: str) -> Any:
    try:
        return parse_plaintext(content, sops_format(path))
    except (ValueError, yaml.YAMLError, configparser.Error):
        return content


def parse_pair(old: bytes, new: bytes, path: str) -> tuple[Any, Any]:
    """Old and new plaintext as data to compare, or both as bytes when either does not parse: a value PyYAML cannot
    read back from sops' output must not look like a removed key (``(file content)`` against parsed keys)."""
    try:
        fmt = sops_format(path)
        return parse_plaintext(old, fmt), parse_plaintext(new, fmt)
    except (ValueError, yaml.YAMLError, configparser.Error):
        return old, new


def changed_key_paths(before: Any, after: Any, fmt: str) -> list[str]:
    """Key paths whose values differ (names only, never values)."""
    if fmt == "binary":
        return ["(file content)"] if before != after else []
    flat_before, flat_after = flatten_document(before), flatten_document(after)
    keys = set(flat_before) | set(flat_after)
    return sorted(k or "(document)" for k in keys if flat_before.get(k, _MISSING) != flat_after.get(k, _MISSING))


# ---------------------------------------------------------------------------- the keyed cache


class PlaintextCache:
    """What a run learnt about a repository, kept in the user's cache folder (0600), keyed by the age identities."""

    VERSION = 1

    def __init__(self, path: Path | None, keys: AgeKeys) -> None:
        self.path = path
        self.key = None if not keys.identities else hashlib.sha256(
            b"cluster.secrets plaintext cache v1\0" + "\n".join(sorted(i.secret for i in keys.identities)).encode()).digest()
        self.data: dict[str, Any] = self._load()
        self.files: dict[str, Any] = dict(self.data.get("files", {}))

    @staticmethod
    def location(root: Path, cache_dir: Path | None, environ: Mapping[str, str] | None) -> Path:
        environ = environ if environ is not None else os.environ
        base = cache_dir or Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cluster.secrets"
        return Path(base) / (hashlib.sha256(str(root).encode()).hexdigest()[:32] + ".json")

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("version") == self.VERSION else {}

    def mac(self, plaintext: bytes, fingerprint: str) -> str | None:
        if self.key is None:
            return None
        return hmac.new(self.key, plaintext + b"\0" + fingerprint.encode(), hashlib.sha256).hexdigest()

    def hit(self, path: str, ciphertext: bytes, plaintext: bytes, fingerprint: str) -> bool:
        """These exact bytes were checked (or written) for this plaintext and this rule's recipients."""
        entry, mac = self.files.get(path), self.mac(plaintext, fingerprint)
        return (mac is not None and isinstance(entry, dict) and entry.get("enc") == hashlib.sha256(ciphertext).hexdigest()
                and hmac.compare_digest(str(entry.get("mac", "")), mac))

    def entry(self, ciphertext: bytes, plaintext: bytes, fingerprint: str) -> dict[str, str] | None:
        mac = self.mac(plaintext, fingerprint)
        return None if mac is None else {"enc": hashlib.sha256(ciphertext).hexdigest(), "mac": mac}

    def save(self, known: set[str], **extra: Any) -> None:
        """Keep the entries of ``known`` files (and ``extra`` values); the cache only saves time, so errors pass."""
        if self.path is None:
            return
        data = {**self.data, **extra, "version": self.VERSION, "files": {k: v for k, v in self.files.items() if k in known}}
        try:
            private_dir(self.path.parent)
            atomic_write(self.path, json.dumps(data, sort_keys=True, indent=1).encode(), mode=0o600)
        except OSError:
            pass


# ---------------------------------------------------------------------------- planning


Guard = Callable[[list[FileChange]], "str | None"]


def plan_secret_files(sops: Sops, desired: Mapping[str, bytes], cache: PlaintextCache | None = None,
                      guard: Guard | None = None, error: type[Exception] = SopsToolError,
                      warnings: list[str] | None = None) -> list[FileChange]:
    """Compare each secret file with its new plaintext and encrypt the ones that change.

    ``sops.use_config()`` must hold the creation rules this run writes with. ``guard`` sees the files
    about to change (with their old and new data) before anything is encrypted and may stop the run.
    Every problem of every file is collected and raised at once as ``error``; nothing is written here.
    """
    warnings = warnings if warnings is not None else []
    try:
        rules = sops.rules  # parsed here, so a broken .sops.yaml is one clear error before anything else
    except SopsToolError as exc:
        raise error(str(exc)) from None
    own = set(sops.keys.recipients)
    planned: dict[str, FileChange] = {}
    matched: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    to_decrypt: list[str] = []
    problems: list[str] = []
    for path in sorted(desired):
        rule = rule_for(path, rules)
        if rule is None:
            problems.append(f"{path}: no creation rule in {SOPS_CONFIG_NAME} matches this path; add a path_regex for it")
            continue
        matched[path] = rule
        fingerprint = fingerprints[path] = rule_fingerprint(rule)
        status = sops.status(path)
        if status.content is None:
            planned[path] = FileChange(path, True, "created")
        elif cache is not None and cache.hit(path, status.content, desired[path], fingerprint):
            planned[path] = FileChange(path, True, "unchanged")
        elif status.meta is None:
            damage = damaged_secret_file(status.content, status.fmt)
            if damage:
                problems.append(f"{path}: {damage}: restore it from git (`git checkout -- {path}`) or delete it so the run "
                                "writes it anew")
                continue
            # A secret committed in plaintext: replaced by its encrypted form; the guard compares its values.
            warnings.append(f"{path} exists unencrypted in the repository; it will be replaced by its encrypted form")
            previous, new = parse_pair(status.content, desired[path], path)
            planned[path] = FileChange(path, True, "changed", previous=previous, rendered=new,
                                       changed_keys=["(was not encrypted)", *changed_key_paths(previous, new, status.fmt)])
        elif not own:
            problems.append(f"{path}: cannot compare it with the new content: no age key found (looked in: "
                            f"{sops.keys.where()}); the file expects {', '.join(sorted(status.recipients)) or 'no age recipient'}")
        elif not own & status.recipients:
            problems.append(f"{path}: cannot decrypt it: it is encrypted for {', '.join(sorted(status.recipients)) or 'no age recipient'}, "
                            f"but the age keys found ({sops.keys.where()}) are {', '.join(sorted(own))}")
        else:
            to_decrypt.append(path)
            planned[path] = FileChange(path, True, "pending")
    _raise(problems, error)

    for path, plaintext in decrypt_each(sops, to_decrypt):
        if isinstance(plaintext, SopsToolError):
            problems.append(str(plaintext))
            continue
        status, item = sops.status(path), planned[path]
        old, new = parse_pair(plaintext, desired[path], path)
        if old == new and status.recipients == rule_recipients(matched[path]):
            item.state = "unchanged"
            if cache is not None and status.content is not None:
                cache.files[path] = cache.entry(status.content, desired[path], fingerprints[path])
        else:
            item.state, item.changed_keys = "changed", changed_key_paths(old, new, status.fmt)
            item.previous, item.rendered = old, new
    _raise(problems, error)
    if guard is not None:
        stop = guard(list(planned.values()))
        if stop:
            raise error(stop)

    def encrypt(item: FileChange) -> tuple[FileChange, bytes | SopsToolError]:
        try:
            return item, sops.encrypt(desired[item.path], item.path)
        except SopsToolError as exc:
            return item, exc

    for item, ciphertext in parallel_map(encrypt, [p for p in planned.values() if p.state in ("created", "changed")]):
        if isinstance(ciphertext, SopsToolError):
            problems.append(str(ciphertext))
            continue
        item.content = ciphertext
        if item.state == "created":
            item.changed_keys = changed_key_paths(None, parse_plaintext_safe(desired[item.path], item.path),
                                                  sops_format(item.path))
        if cache is not None:
            item.cache_entry = cache.entry(ciphertext, desired[item.path], fingerprints[item.path])
    _raise(problems, error)
    return [planned[path] for path in sorted(planned)]


def _raise(problems: list[str], error: type[Exception]) -> None:
    if problems:
        raise error("secret files: " + str(len(problems)) + " problem(s)\n" + "\n".join(f"  - {p}" for p in problems))
