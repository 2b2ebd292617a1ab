# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rotation: a new age key for the whole repository, or new data keys for every file.

Key rotation, in an order that keeps every file decryptable at every moment:

1. ``start``: a new identity is generated; the key file is copied to a 0600 backup and the
   new identity written into it *next to* the old one; a journal (``_rotate_journal``: public
   keys and file names only) records the rotation.
2. ``add``: the new recipient is added to every ``.sops.yaml`` rule that has an old one;
   each file gets ``sops updatekeys`` (old + new recipients) and ``sops rotate`` (a new
   data key), on a ciphertext copy beside it that must decrypt with the new key alone.
   The verified ciphertexts are the phase's change set (``_changes``), written atomically
   file by file; the journal then records the phase's files. Then every file is checked
   again with the new key alone.
3. ``remove``: the old recipients leave ``.sops.yaml``; each file gets ``updatekeys``
   (new recipients only) and ``rotate`` again, so the final data key was never encrypted
   for the old key, and is checked to decrypt with the new key and not with the old one;
   written and journaled as in ``add``.
4. ``finish``: ``.age-public-key`` names the new recipient (written atomically when it is
   absent or names an old one; ``_age.ensure_public_key_file``), the key file keeps only the
   new identity (and any unrelated ones); the journal is removed.

A crash at any point leaves files encrypted for the old key, the new key or both, and
the key file holding both; the journal lets a rerun redo the phase it stopped in.

Data-key rotation (the 90-day policy) runs ``sops rotate`` on every file with the same
recipients. Every sops call goes through the run's ``_sops.Sops``, with exactly the
identities given. Plaintext never touches the disk: sops works on ciphertext, and
verification reads decrypted output from a pipe and drops it.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import (
    AgeIdentity,
    AgeKeyError,
    derive_recipient,
    ensure_public_key_file,
    generate_identity,
    key_file_text,
    parse_identities,
    read_public_key_file,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._backup import backup_dir, write_backup
from ansible_collections.cluster.secrets.plugins.plugin_utils._changes import ChangeSet, FileChange
from ansible_collections.cluster.secrets.plugins.plugin_utils._credential_dates_plan import record_rotation
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write, stale_temp_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._lock import repository_lock
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate_files import (
    encrypted_files,
    re_encrypt,
    remove_stray_temps,
    write_changes,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate_journal import (
    JournalError,
    journal_path,
    load_journal,
    remove_journal,
    save_journal,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate_result import (
    MODES,
    RERUN_CONFIGURE,
    STALE_KEY_NOTE,
    RotateError,
    RotateResult,
    StepHook,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import FileStatus, Sops
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import SECRET_FILE_PATTERN, SOPS_CONFIG_NAME, SopsToolError, rules_recipients
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_recipients import edit_recipients
from ansible_collections.cluster.secrets.plugins.plugin_utils._yaml_edit import YamlEditError


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

    @property
    def journal(self) -> Path:
        return journal_path(self.root, self.backup_dir)


# ---------------------------------------------------------------------------- .sops.yaml editing


def update_sops_config(config: Path, add: str | None = None, remove: Iterable[str] = (), when: Iterable[str] = ()) -> bool:
    """Edit the recipients of ``config`` (see ``_sops_recipients.edit_recipients``) and write it atomically; True when written."""
    try:
        before = config.read_bytes()
    except OSError as exc:
        raise RotateError(f"{SOPS_CONFIG_NAME}: cannot read it ({exc.strerror})") from None
    try:
        after = edit_recipients(before.decode("utf-8"), add, remove, when)
    except UnicodeDecodeError:
        raise RotateError(f"{SOPS_CONFIG_NAME}: it is not UTF-8 text") from None
    except YamlEditError as exc:
        raise RotateError(str(exc)) from None
    if after is None:
        return False
    change = FileChange(config.name, False, "changed", content=after.encode("utf-8"), before=before)
    ChangeSet(config.parent, [change], stale_temps=stale_temp_files([config])).apply()
    return True


# ---------------------------------------------------------------------------- rotation


def rotate(options: RotateOptions, check_mode: bool = False, on_step: StepHook | None = None) -> RotateResult:
    """Rotate the age key or the data keys of every encrypted file; ``on_step`` is told of each step (see StepHook)."""
    root = options.root
    if not root.is_dir():
        raise RotateError(f"cluster_root {root} is not a directory")
    try:
        sops = Sops.open(root, options.age_key_file, options.sops_binary, options.environ)
        _binary = sops.binary  # found (or refused) before anything is written, in check mode too
        if not sops.config_path.is_file():
            raise RotateError(f"{SOPS_CONFIG_NAME} not found in {root}: nothing says who the files are encrypted for")
        rules = sops.rules
    except SopsToolError as exc:
        raise RotateError(str(exc)) from None
    files, plain = encrypted_files(sops, options.secret_pattern)
    result = RotateResult(options.mode)
    if plain:
        result.warnings.append(f"not encrypted, so not rotated: {', '.join(plain)} (encrypt them, e.g. by running configure)")
    if options.mode == "data_keys":
        return _rotate_data_keys(options, sops, files, result, check_mode, on_step)
    return _rotate_age_key(options, sops, files, rules, result, check_mode, on_step)


def _follow_dates(options: RotateOptions, sops: Sops, result: RotateResult, before: dict[str, FileStatus],
                  identities: list[AgeIdentity], previous: list[AgeIdentity]) -> None:
    """.credential-dates.yaml follows the rewritten files (same dates; new content hashes, new fingerprints for a new key)."""
    written, warnings = record_rotation(sops, options.secret_pattern, before, identities, previous)
    result.credential_dates_updated = written
    result.warnings += warnings


def _rotate_data_keys(options: RotateOptions, sops: Sops, files: list[str], result: RotateResult, check_mode: bool,
                      on_step: StepHook | None) -> RotateResult:
    identities = sops.keys.identities
    own = {i.recipient for i in identities}
    for relpath in files:
        if own & sops.status(relpath).recipients:
            result.files.append(relpath)
        else:
            result.skipped.append(f"{relpath} (not encrypted for your key)")
    result.changed = bool(result.files)
    if check_mode:
        return result
    remove_stray_temps(sops.root)
    changes = []
    for relpath in result.files:
        changes.append(re_encrypt(sops, relpath, identities, identities, None, update_keys=False)[0])
        if on_step:
            on_step("data_keys", len(changes))
    if on_step:
        on_step("data_keys:write", len(changes))
    before = {relpath: sops.status(relpath) for relpath in result.files}  # read before the writes (forgotten then)
    write_changes(sops, changes)
    _follow_dates(options, sops, result, before, identities, [])
    return result


def _start(options: RotateOptions, sops: Sops, files: list[str], rules: list[dict[str, Any]],
           check_mode: bool) -> tuple[dict[str, Any], RotateResult]:
    """Pick the key file and the old identities; back the key file up and add a new identity to it."""
    keys = sops.keys
    in_repo = rules_recipients(rules)
    for relpath in files:
        in_repo |= sops.status(relpath).recipients
    ours = [i for i in keys.identities if i.recipient in in_repo]
    if not ours:
        raise RotateError(f"none of the age keys found ({keys.where()}) is a recipient of this repository; "
                          "rotation needs the key the files are encrypted for")
    key_file = Path(options.age_key_file).expanduser() if options.age_key_file else ours[0].key_file
    if key_file is None:
        raise RotateError("the age key comes from $SOPS_AGE_KEY, so the new key has nowhere to go; "
                          "set rotate_age_key_file to the key file to rotate")
    in_file = _read_key_file(key_file)
    old = [i for i in in_file if i.recipient in in_repo]
    if not old:
        raise RotateError(f"{key_file} holds no key this repository is encrypted for")
    result = RotateResult("age_key", key_file=str(key_file), removed_recipients=sorted({str(i.recipient) for i in old}))
    state = {"version": 1, "mode": "age_key", "phase": "add", "key_file": str(key_file),
             "old_recipients": result.removed_recipients, "files": files, "done": {"add": [], "remove": []},
             "started": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()}
    if check_mode:
        return state, result
    try:
        new = generate_identity()  # the same generator as init: pyrage, else age-keygen
    except AgeKeyError as exc:
        raise RotateError(str(exc)) from None
    with _key_file_lock(options, key_file):  # read again under the lock: another cluster's rotation may share the file
        in_file = _read_key_file(key_file)
        backup = write_backup(backup_dir(options.root, options.backup_dir), key_file.name, key_file.read_bytes())
        state.update(new_recipient=new.recipient, key_backup=str(backup))
        # The new identity joins the key file before any file is encrypted for it; the old ones stay until the end.
        atomic_write(key_file, key_file_text(new, in_file, note=f"previous key, kept until rotation finishes (backup: {backup})"),
                     mode=0o600)
    save_journal(options.journal, state)
    result.new_recipient, result.key_backup = new.recipient, str(backup)
    return state, result


def _read_key_file(key_file: Path) -> list[AgeIdentity]:
    try:
        return parse_identities(key_file.read_text(encoding="utf-8"), str(key_file))
    except OSError as exc:
        raise RotateError(f"{key_file}: cannot read the age key file ({exc.strerror})") from None


def _key_file_lock(options: RotateOptions, key_file: Path) -> contextlib.AbstractContextManager[None]:
    """One writer at a time for a key file several repositories share (``~/.config/sops/age/keys.txt``, a fleet's
    rotation): the lock of its folder. A key file in the repository is already held by the repository's lock."""
    folder = key_file.expanduser().resolve().parent
    if folder == Path(options.root).resolve():
        return contextlib.nullcontext()
    return repository_lock(folder, f"rotate of {options.root} (its age key file {key_file.name})", environ=options.environ)


def _public_key_file_follows(root: Path, recipients: Iterable[str]) -> bool:
    """Whether the finish step writes (or keeps) ``.age-public-key`` for the new key: absent, or naming one of ``recipients``."""
    current = read_public_key_file(root)
    return not current.exists or (current.recipient is not None and current.recipient in set(recipients))


def _load_journal(options: RotateOptions) -> dict[str, Any] | None:
    try:
        return load_journal(options.journal)
    except JournalError as exc:
        raise RotateError(str(exc)) from None


def _rotate_age_key(options: RotateOptions, sops: Sops, files: list[str], rules: list[dict[str, Any]],
                    result: RotateResult, check_mode: bool, on_step: StepHook | None) -> RotateResult:
    root = options.root
    before = {relpath: sops.status(relpath) for relpath in files}  # as this run found them, for the credential dates
    state = _load_journal(options)
    if state is None:
        warnings = result.warnings
        state, result = _start(options, sops, files, rules, check_mode)
        result.warnings = warnings
        if check_mode:
            result.files = files
            result.public_key_file_updated = _public_key_file_follows(root, result.removed_recipients)
            return result
    else:
        result.resumed = True
        if check_mode:
            result.files = sorted(set(state["files"]) | set(files))
            result.new_recipient, result.key_file = state.get("new_recipient"), state.get("key_file")
            result.removed_recipients, result.key_backup = state.get("old_recipients", []), state.get("key_backup")
            result.public_key_file_updated = _public_key_file_follows(
                root, [*result.removed_recipients, str(state.get("new_recipient"))])
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
                          f"{options.journal} to start over")
    old_recipients = set(state["old_recipients"])
    old = [i for i in in_file if i.recipient in old_recipients]
    both = [new, *old]
    result.new_recipient, result.key_file, result.key_backup = new.recipient, str(key_file), state.get("key_backup")
    result.removed_recipients = sorted(old_recipients)

    def run_phase(name: str, candidates: list[str], must_not: list[AgeIdentity] | None) -> None:
        """Re-encrypt every file of the phase, then write them all and journal them (a rerun redoes an unfinished phase)."""
        changes: list[FileChange] = []
        holding: list[str] = []
        for relpath in candidates:
            if relpath in state["done"][name]:
                continue
            if not (root / relpath).is_file():
                result.skipped.append(f"{relpath} (deleted during the rotation)")
                continue
            if not {i.recipient for i in both} & sops.status(relpath).recipients:
                result.skipped.append(f"{relpath} (not encrypted for your key)")
                continue
            change, holds_old = re_encrypt(sops, relpath, both, [new], must_not, update_keys=True)
            changes.append(change)
            if holds_old:
                holding.append(relpath)
            if on_step:
                on_step(name, len(changes))
        if on_step:
            on_step(f"{name}:write", len(changes))
        write_changes(sops, changes)
        state["done"][name] += [c.path for c in changes]
        state["holds_old_key"] = sorted(set(state.get("holds_old_key", [])) | set(holding))
        save_journal(options.journal, state)

    if state["phase"] == "add":
        update_sops_config(sops.config_path, add=new.recipient, when=old_recipients)
        sops.use_config(None)
        run_phase("add", list(dict.fromkeys([*state["files"], *files])), None)
        failing = [f for f in state["done"]["add"] if (root / f).is_file() and not sops.decrypts_with(root / f, [new])]
        if failing:
            raise RotateError(f"these files do not decrypt with the new key alone, so the old key stays: {', '.join(failing)}")
        state["phase"] = "remove"
        save_journal(options.journal, state)
    if state["phase"] == "remove":
        update_sops_config(sops.config_path, add=new.recipient, remove=old_recipients, when=old_recipients)
        sops.use_config(None)
        run_phase("remove", list(state["done"]["add"]), old or None)
        state["phase"] = "finish"
        save_journal(options.journal, state)
    # The old key has left .sops.yaml and every file: the committed public key follows (a rerun finds it written).
    public = ensure_public_key_file(root, str(new.recipient), replace=old_recipients)
    result.public_key_file_updated = public.warning is None
    if public.warning:
        result.warnings.append(public.warning)
    # Before the old key leaves the key file: a rerun after a crash here still compares with it.
    found = [i for i in sops.keys.identities if i.recipient not in old_recipients and i.recipient != new.recipient]
    _follow_dates(options, sops, result, before, [new, *found], old)
    with _key_file_lock(options, key_file):  # the file as it is now: another rotation may have added its own key
        current = _read_key_file(key_file)
        others = [i for i in current if i.recipient not in old_recipients and i.recipient != new.recipient]
        atomic_write(key_file, key_file_text(new, others), mode=0o600)
    remove_journal(options.journal)
    result.files = sorted(set(state["done"]["remove"]))
    result.skipped = sorted(set(result.skipped))
    result.stale_key_files = sorted(set(state.get("holds_old_key", [])))
    result.warnings += [f"{relpath} {STALE_KEY_NOTE}: {RERUN_CONFIGURE}" for relpath in result.stale_key_files]
    if derive_recipient(new.secret) != new.recipient:  # pragma: no cover - a sanity check of the key file we wrote
        raise RotateError(f"{key_file}: the new key does not match its public key")
    return result
