# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""doctor's checks of git: what .gitignore covers, what is tracked, and age keys left in the history.

Tracked files are read (bounded in number and size) for age private keys under any name and for
plaintext Kubernetes Secrets outside ``*.sops.*``; ``git log``/``git show`` search the history
for age keys, bounded in commits and time. Findings name files, commits and public keys, never a
value; blobs are read into memory only.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError, derive_recipient
from ansible_collections.cluster.secrets.plugins.plugin_utils._backup import BACKUP_DIR_NAME
from ansible_collections.cluster.secrets.plugins.plugin_utils._gitignore import ignored_paths
from ansible_collections.cluster.secrets.plugins.plugin_utils._tree import is_stale_temp, template_dirs, walk

if TYPE_CHECKING:  # the report types live in _doctor, which runs these checks
    from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor import DoctorOptions, DoctorReport

NEVER_TRACKED = ("cluster.yaml", "age.key")
TOOL_TIMEOUT = 30
# An age identity as age-keygen writes it (bech32, upper case); "AGE-SECRET-KEY-1..." in prose does not match.
AGE_IDENTITY_RE = re.compile(r"AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]{50,}")
AGE_IDENTITY_GIT_RE = "AGE-SECRET-KEY-(PQ-)?1[0-9A-Z]{50,}"  # the same, as a POSIX extended regex for git's pickaxe
MAX_SCANNED_BYTES = 1024 * 1024  # tracked files larger than this are not read for keys or Secrets
MAX_SCANNED_FILES = 20000
HISTORY_COMMITS = 200  # git history searched for age keys: the newest commits that added or removed one
HISTORY_TIMEOUT = 60
YAML_SUFFIXES = (".yaml", ".yml")


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


def _is_glob(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def _matching_files(root: Path, pattern: str) -> list[str]:
    """Files of the repository a .gitignore-style glob names (by file name, or by path when it holds a slash)."""
    anchored = pattern.lstrip("/")
    if "/" in anchored:
        return sorted(relpath for relpath in walk(root) if fnmatch.fnmatch(relpath, anchored))
    return sorted(relpath for relpath in walk(root) if fnmatch.fnmatch(relpath.rsplit("/", 1)[-1], anchored))


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


def gitignore_patterns(root: Path, gitignore: Mapping[str, str]) -> dict[str, str]:
    """What .gitignore must cover, for this repository: ``cluster.yaml`` stands for its cluster vars file, which is
    ``cluster.toml`` in a repository of cluster-template's TOML era (no cluster.yaml, a cluster.toml)."""
    patterns = dict(gitignore)
    if "cluster.yaml" in patterns and not (root / "cluster.yaml").exists() and (root / "cluster.toml").is_file():
        patterns.setdefault("cluster.toml", patterns.pop("cluster.yaml"))
    return patterns


def check_git(options: DoctorOptions, report: DoctorReport, tracked: set[str] | None) -> None:
    for pattern, severity in gitignore_patterns(options.root, options.gitignore).items():
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
    templates = template_dirs(options.root)
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
