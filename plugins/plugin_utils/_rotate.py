# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rotation: a new age key for the whole repository, or new data keys for every file.

Key rotation, in an order that keeps every file decryptable at every moment:

1. ``start``: the key file is copied to a 0600 backup; a new identity is generated and
   written into the key file *next to* the old one; a journal (public keys and file
   names only) records the rotation.
2. ``add``: the new recipient is added to every ``.sops.yaml`` rule that has an old one;
   each file gets ``sops updatekeys`` (old + new recipients) and ``sops rotate`` (a new
   data key), on a ciphertext copy beside it that must decrypt with the new key alone
   before it replaces the file. Then every file is checked again with the new key alone.
3. ``remove``: the old recipients leave ``.sops.yaml``; each file gets ``updatekeys``
   (new recipients only) and ``rotate`` again, so the final data key was never encrypted
   for the old key, and is checked to decrypt with the new key and not with the old one.
4. ``finish``: the key file keeps only the new identity (and any unrelated ones); the
   journal is removed.

A crash at any point leaves files encrypted for the old key, the new key or both, and
the key file holding both; the journal lets a rerun continue where it stopped.

Data-key rotation (the 90-day policy) runs ``sops rotate`` on every file with the same
recipients. Plaintext never touches the disk: sops works on ciphertext, and
verification reads decrypted output from a pipe and drops it.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import (
    AgeIdentity,
    AgeKeyError,
    derive_recipient,
    find_age_keys,
    generate_identity,
    parse_identities,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._backup import backup_dir, ensure_backup_dir, write_backup
from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import ROTATE_STATE_NAME, SKIP_DIRS, secret_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import (
    SECRET_FILE_PATTERN,
    SOPS_CONFIG_NAME,
    SopsToolError,
    encrypted_metadata,
    file_recipients,
    find_sops_binary,
    load_sops_config,
    rule_recipients,
    sops_format,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_admin import SopsRunner
from ansible_collections.cluster.secrets.plugins.plugin_utils._yaml_edit import YamlDocument, YamlEditError

MODES = ("age_key", "data_keys")
# A file that holds the age private key itself (the Flux `sops-age` Secret, bootstrap/sops-age.sops.yaml in
# cluster-template) is re-encrypted by the rotation but still holds the old key: only configure re-renders it.
STALE_KEY_NOTE = ("still holds the OLD age private key (rotation re-encrypted it, it cannot rewrite its content): "
                  "configure must re-render it with the new key")
RERUN_CONFIGURE = ("run `ansible-playbook cluster.secrets.configure` now: it re-renders the files that hold the age key "
                   "(the Flux sops-age Secret) with the new key; then apply that Secret to the cluster "
                   "(sops -d bootstrap/sops-age.sops.yaml | kubectl apply -f -) before you push, or Flux cannot decrypt "
                   "files encrypted for the new key")
_AGE_SECRET_RE = re.compile(rb"AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]+")
_BASE64_TOKEN_RE = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}")
TEMP_PREFIX = ".rotate-tmp."
PAUSE_ENV = "CLUSTER_SECRETS_TEST_ROTATE_PAUSE"  # tests only: "<phase>:<files>" sleeps there so a test can kill the run


class RotateError(Exception):
    """Anything that stops a rotation; the message names files and public keys, never secrets."""


@dataclass
class RotateOptions:
    root: Path
    mode: str = "age_key"
    age_key_file: str | None = None
    sops_binary: str | None = None
    secret_pattern: str = SECRET_FILE_PATTERN
    backup_dir: str | None = None
    environ: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if self.mode not in MODES:
            raise RotateError(f"mode must be one of {', '.join(MODES)}")


@dataclass
class RotateResult:
    mode: str
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    new_recipient: str | None = None
    removed_recipients: list[str] = field(default_factory=list)
    key_file: str | None = None
    key_backup: str | None = None
    resumed: bool = False
    changed: bool = False
    warnings: list[str] = field(default_factory=list)
    stale_key_files: list[str] = field(default_factory=list)

    def lines(self, check_mode: bool) -> list[str]:
        verb = "would be" if check_mode else "were"
        if self.mode == "data_keys":
            lines = [f"{len(self.files)} file(s) {verb} given a new data key (same recipients)"]
        else:
            lines = [f"{len(self.files)} file(s) {verb} re-encrypted for a new age key"
                     + (" (an interrupted rotation was resumed)" if self.resumed else "")]
            if self.new_recipient:
                lines.append(f"new public key: {self.new_recipient}")
            if self.removed_recipients:
                lines.append(f"old public key(s) {'to remove' if check_mode else 'removed'}: {', '.join(self.removed_recipients)}")
            if self.key_file:
                lines.append(f"key file: {self.key_file} ({'would hold' if check_mode else 'holds'} the new key)")
            if self.key_backup:
                lines.append(f"old key kept in {self.key_backup} (mode 0600): store it safely, then delete it")
        lines += [f"rotated: {f}" for f in self.files]
        lines += [f"skipped: {f}" for f in self.skipped]
        if self.mode == "age_key" and (self.files or self.stale_key_files):
            lines += [f"{f}: {STALE_KEY_NOTE}" for f in self.stale_key_files]
            lines.append(("after the rotation, " if check_mode else "next: ") + RERUN_CONFIGURE
                         + ("" if check_mode or self.stale_key_files else
                            " (no file here held the old key; rerun it anyway if one renders the key)"))
        return lines


# ---------------------------------------------------------------------------- .sops.yaml editing


def _edit_recipients(value: Any, add: str | None, remove: set[str], when: set[str]) -> tuple[Any, bool]:
    """A new ``age`` value (comma string or list) with ``add`` appended (where one of ``when`` is) and ``remove`` dropped."""
    is_list = isinstance(value, list)
    items = [str(v).strip() for v in value] if is_list else [p.strip() for p in str(value or "").split(",") if p.strip()]
    new = list(items)
    if add and add not in new and (not when or set(new) & when):
        new.append(add)
    if remove and add in new:
        new = [r for r in new if r not in remove]
    if new == items:
        return value, False
    if is_list:
        value[:] = new
        return value, True
    return ",".join(new), True


def update_sops_config(config: Path, add: str | None = None, remove: Iterable[str] = (), when: Iterable[str] = ()) -> bool:
    """Add a recipient to (or remove recipients from) every rule of .sops.yaml, keeping comments; True when written."""
    try:
        document = YamlDocument(config.read_text(encoding="utf-8"), SOPS_CONFIG_NAME)
    except OSError as exc:
        raise RotateError(f"{SOPS_CONFIG_NAME}: cannot read it ({exc.strerror})") from None
    except YamlEditError as exc:
        raise RotateError(str(exc)) from None
    data = document.data
    removing, trigger, changed = set(remove), set(when), False
    for rule in (data or {}).get("creation_rules") or []:
        if not isinstance(rule, dict):
            continue
        if "age" in rule:
            rule["age"], edited = _edit_recipients(rule["age"], add, removing, trigger)
            changed |= edited
        for group in rule.get("key_groups") or []:
            if isinstance(group, dict) and "age" in group:
                group["age"], edited = _edit_recipients(group["age"], add, removing, trigger)
                changed |= edited
    if changed:
        atomic_write(config, document.dump().encode("utf-8"))
    return changed


# ---------------------------------------------------------------------------- journal


def state_path(options: RotateOptions) -> Path:
    return backup_dir(options.root, options.backup_dir) / ROTATE_STATE_NAME


def load_state(options: RotateOptions) -> dict[str, Any] | None:
    path = state_path(options)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise RotateError(f"{path}: the rotation journal is unreadable; restore the key from the backup it names, "
                          "or delete it to start over") from None
    if not isinstance(state, dict) or state.get("version") != 1:
        raise RotateError(f"{path}: not a rotation journal of this version")
    return state


def save_state(options: RotateOptions, state: dict[str, Any]) -> None:
    ensure_backup_dir(state_path(options).parent)
    atomic_write(state_path(options), json.dumps(state, indent=1, sort_keys=True).encode(), mode=0o600)


# ---------------------------------------------------------------------------- helpers


def encrypted_files(root: Path, pattern: str) -> tuple[list[str], list[str]]:
    """(encrypted secret files, secret files that are not encrypted)."""
    encrypted: list[str] = []
    plain: list[str] = []
    for relpath in secret_files(root, pattern):
        content = (root / relpath).read_bytes()
        (encrypted if encrypted_metadata(content, sops_format(relpath)) is not None else plain).append(relpath)
    return encrypted, plain


def remove_stray_temps(root: Path) -> None:
    """Ciphertext copies left by an interrupted run (no plaintext: safe to delete)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            if name.startswith(TEMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(dirpath, name))


def _key_file_path(identity: AgeIdentity) -> Path | None:
    source = identity.source
    if source == "$SOPS_AGE_KEY":
        return None
    if source.startswith("$SOPS_AGE_KEY_FILE ("):
        return Path(source[len("$SOPS_AGE_KEY_FILE ("):-1])
    return Path(source)


def _pause(phase: str, done: int) -> None:
    wanted = os.environ.get(PAUSE_ENV, "")
    if wanted == f"{phase}:{done}":
        time.sleep(600)


def holds_age_secret(plaintext: bytes, secrets: Iterable[str]) -> bool:
    """Whether decrypted content holds one of ``secrets`` (age identities), as text or inside a base64 value."""
    wanted = {secret.encode() for secret in secrets}
    if not wanted:
        return False
    if wanted & set(_AGE_SECRET_RE.findall(plaintext)):
        return True
    for token in _BASE64_TOKEN_RE.findall(plaintext):
        try:
            decoded = base64.b64decode(token + b"=" * (-len(token) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        if wanted & set(_AGE_SECRET_RE.findall(decoded)):
            return True
    return False


def _rotate_one(runner: SopsRunner, root: Path, relpath: str, identities: list[AgeIdentity],
                verify_with: list[AgeIdentity], must_not: list[AgeIdentity] | None, update_keys: bool) -> bool:
    """updatekeys (optional) and rotate on a ciphertext copy; the copy replaces the file only once it verifies.

    Returns whether the decrypted content holds one of the ``must_not`` (old) identities: a file such as the Flux
    sops-age Secret, which only configure can re-render with the new key. The plaintext stays in memory.
    """
    target = root / relpath
    temp = target.with_name(TEMP_PREFIX + target.name)
    atomic_write(temp, target.read_bytes(), mode=target.stat().st_mode & 0o777)
    try:
        if update_keys:
            runner.run(["updatekeys", "--yes", str(temp)], identities, relpath)
        runner.run(["rotate", "--in-place", str(temp)], identities, relpath)
        try:
            holds_old = holds_age_secret(runner.run(["decrypt", str(temp)], verify_with, relpath),
                                         [i.secret for i in must_not or []])
        except SopsToolError:
            raise RotateError(f"{relpath}: after rotation it does not decrypt with the new key alone; "
                              "the file was left as it was") from None
        if must_not and runner.decrypts(temp, must_not):
            raise RotateError(f"{relpath}: after rotation the old key can still decrypt it; the file was left as it was "
                              f"(does a {SOPS_CONFIG_NAME} rule still list the old public key?)")
        os.replace(temp, target)
        return holds_old
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _new_identity() -> AgeIdentity:
    """The same key generator as init: pyrage, else age-keygen."""
    try:
        return generate_identity()
    except AgeKeyError as exc:
        raise RotateError(str(exc)) from None


def _key_text(new: AgeIdentity, kept: Iterable[AgeIdentity], note: str = "") -> bytes:
    created = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    text = f"# created: {created}\n# public key: {new.recipient}\n{new.secret}\n"
    for identity in kept:
        text += f"# {note or 'kept'}: public key {identity.recipient}\n{identity.secret}\n"
    return text.encode()


# ---------------------------------------------------------------------------- rotation


def rotate(options: RotateOptions, check_mode: bool = False,
           progress: Callable[[str], None] | None = None) -> RotateResult:
    root = options.root
    if not root.is_dir():
        raise RotateError(f"cluster_root {root} is not a directory")
    config = root / SOPS_CONFIG_NAME
    try:
        binary = find_sops_binary(options.sops_binary)
        rules = load_sops_config(config) if config.is_file() else None
    except SopsToolError as exc:
        raise RotateError(str(exc)) from None
    if rules is None:
        raise RotateError(f"{SOPS_CONFIG_NAME} not found in {root}: nothing says who the files are encrypted for")
    runner = SopsRunner(binary, root, config)
    files, plain = encrypted_files(root, options.secret_pattern)
    result = RotateResult(options.mode)
    if plain:
        result.warnings.append(f"not encrypted, so not rotated: {', '.join(plain)} (encrypt them, e.g. by running configure)")
    try:
        keys = find_age_keys(root, options.age_key_file, options.environ)
    except AgeKeyError as exc:
        raise RotateError(str(exc)) from None
    if options.mode == "data_keys":
        return _rotate_data_keys(options, runner, files, keys.identities, result, check_mode)
    return _rotate_age_key(options, runner, files, rules, result, check_mode, progress)


def _rotate_data_keys(options: RotateOptions, runner: SopsRunner, files: list[str], identities: list[AgeIdentity],
                      result: RotateResult, check_mode: bool) -> RotateResult:
    own = {i.recipient for i in identities}
    if not check_mode:
        remove_stray_temps(options.root)
    for relpath in files:
        meta = encrypted_metadata((options.root / relpath).read_bytes(), sops_format(relpath)) or {}
        if not own & file_recipients(meta):
            result.skipped.append(f"{relpath} (not encrypted for your key)")
            continue
        result.files.append(relpath)
        if not check_mode:
            _rotate_one(runner, options.root, relpath, identities, identities, None, update_keys=False)
    result.changed = bool(result.files)
    return result


def _start(options: RotateOptions, files: list[str], rules: list[dict[str, Any]], check_mode: bool) -> tuple[dict[str, Any], RotateResult]:
    """Pick the key file and the old identities; back the key file up and add a new identity to it."""
    root = options.root
    keys = find_age_keys(root, options.age_key_file, options.environ)
    in_repo = set().union(*(rule_recipients(r) for r in rules)) if rules else set()
    for relpath in files:
        in_repo |= file_recipients(encrypted_metadata((root / relpath).read_bytes(), sops_format(relpath)) or {})
    ours = [i for i in keys.identities if i.recipient in in_repo]
    if not ours:
        raise RotateError(f"none of the age keys found ({keys.where()}) is a recipient of this repository; "
                          "rotation needs the key the files are encrypted for")
    key_file = Path(options.age_key_file).expanduser() if options.age_key_file else _key_file_path(ours[0])
    if key_file is None:
        raise RotateError("the age key comes from $SOPS_AGE_KEY, so the new key has nowhere to go; "
                          "set rotate_age_key_file to the key file to rotate")
    try:
        in_file = parse_identities(key_file.read_text(encoding="utf-8"), str(key_file))
    except OSError as exc:
        raise RotateError(f"{key_file}: cannot read the age key file ({exc.strerror})") from None
    old = [i for i in in_file if i.recipient in in_repo]
    if not old:
        raise RotateError(f"{key_file} holds no key this repository is encrypted for")
    result = RotateResult("age_key", key_file=str(key_file), removed_recipients=sorted({str(i.recipient) for i in old}))
    state = {"version": 1, "mode": "age_key", "phase": "add", "key_file": str(key_file),
             "old_recipients": result.removed_recipients, "files": files, "done": {"add": [], "remove": []},
             "started": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()}
    if check_mode:
        return state, result
    original = key_file.read_bytes()
    backup = write_backup(backup_dir(root, options.backup_dir), key_file.name, original)
    new = _new_identity()
    state.update(new_recipient=new.recipient, key_backup=str(backup))
    # The new identity joins the key file before any file is encrypted for it; the old ones stay until the end.
    atomic_write(key_file, _key_text(new, in_file, note=f"previous key, kept until rotation finishes (backup: {backup})"),
                 mode=0o600)
    save_state(options, state)
    result.new_recipient, result.key_backup = new.recipient, str(backup)
    return state, result


def _rotate_age_key(options: RotateOptions, runner: SopsRunner, files: list[str], rules: list[dict[str, Any]],
                    result: RotateResult, check_mode: bool, progress: Callable[[str], None] | None) -> RotateResult:
    root = options.root
    state = load_state(options)
    if state is None:
        warnings = result.warnings
        state, result = _start(options, files, rules, check_mode)
        result.warnings = warnings
        if check_mode:
            result.files = files
            return result
    else:
        result.resumed = True
        if check_mode:
            result.files = sorted(set(state["files"]) | set(files))
            result.new_recipient, result.key_file = state.get("new_recipient"), state.get("key_file")
            result.removed_recipients, result.key_backup = state.get("old_recipients", []), state.get("key_backup")
            return result
    result.changed = True
    remove_stray_temps(root)
    key_file = Path(state["key_file"])
    try:
        in_file = parse_identities(key_file.read_text(encoding="utf-8"), str(key_file))
    except (OSError, AgeKeyError) as exc:
        raise RotateError(f"{key_file}: cannot read the key file during rotation ({exc}); "
                          f"the old key is in {state.get('key_backup')}") from None
    new = next((i for i in in_file if i.recipient == state["new_recipient"]), None)
    if new is None:
        raise RotateError(f"{key_file} no longer holds the new key {state['new_recipient']} of the interrupted rotation; "
                          f"restore the key file, or the old key from {state.get('key_backup')}, and delete "
                          f"{state_path(options)} to start over")
    old_recipients = set(state["old_recipients"])
    old = [i for i in in_file if i.recipient in old_recipients]
    both = [new, *old]
    all_files = list(dict.fromkeys([*state["files"], *files]))
    result.new_recipient, result.key_file, result.key_backup = new.recipient, str(key_file), state.get("key_backup")
    result.removed_recipients = sorted(old_recipients)
    config = root / SOPS_CONFIG_NAME

    def step(phase: str, relpath: str, must_not: list[AgeIdentity] | None) -> None:
        if not (root / relpath).is_file():
            result.skipped.append(f"{relpath} (deleted during the rotation)")
            return
        meta = encrypted_metadata((root / relpath).read_bytes(), sops_format(relpath)) or {}
        held = {i.recipient for i in both} & file_recipients(meta)
        if not held:
            result.skipped.append(f"{relpath} (not encrypted for your key)")
            return
        if _rotate_one(runner, root, relpath, both, [new], must_not, update_keys=True):
            state.setdefault("holds_old_key", []).append(relpath)
        state["done"][phase].append(relpath)
        save_state(options, state)
        if progress:
            progress(f"{phase}: {relpath}")
        _pause(phase, len(state["done"][phase]))

    if state["phase"] == "add":
        update_sops_config(config, add=new.recipient, when=old_recipients)
        for relpath in all_files:
            if relpath not in state["done"]["add"]:
                step("add", relpath, None)
        failing = [f for f in state["done"]["add"] if (root / f).is_file() and not runner.decrypts(root / f, [new])]
        if failing:
            raise RotateError(f"these files do not decrypt with the new key alone, so the old key stays: {', '.join(failing)}")
        state["phase"] = "remove"
        save_state(options, state)
    if state["phase"] == "remove":
        update_sops_config(config, add=new.recipient, remove=old_recipients, when=old_recipients)
        for relpath in state["done"]["add"]:
            if relpath not in state["done"]["remove"]:
                step("remove", relpath, old or None)
        state["phase"] = "finish"
        save_state(options, state)
    others = [i for i in in_file if i.recipient not in old_recipients and i.recipient != new.recipient]
    atomic_write(key_file, _key_text(new, others), mode=0o600)
    with contextlib.suppress(FileNotFoundError):
        state_path(options).unlink()
    result.files = sorted(set(state["done"]["remove"]))
    result.skipped = sorted(set(result.skipped))
    result.stale_key_files = sorted(set(state.get("holds_old_key", [])))
    result.warnings += [f"{relpath} {STALE_KEY_NOTE}: {RERUN_CONFIGURE}" for relpath in result.stale_key_files]
    if derive_recipient(new.secret) != new.recipient:  # pragma: no cover - a sanity check of the key file we wrote
        raise RotateError(f"{key_file}: the new key does not match its public key")
    return result


def rotate_argument_spec() -> dict[str, Any]:
    from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import repository_argument_spec  # noqa: PLC0415

    spec = repository_argument_spec()
    spec.update({
        "mode": {"type": "str", "default": "age_key", "choices": list(MODES)},
        "secret_pattern": {"type": "str", "default": SECRET_FILE_PATTERN},
        "backup_dir": {"type": "path"},
    })
    return spec
