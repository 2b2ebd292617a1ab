# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which paths of the user's repository git ignores, so a plaintext secret is written only where git will not commit it.

``ignored_paths`` asks ``git check-ignore`` when it can, and otherwise reads the repository's
``.gitignore`` files itself with ``gitignore_ignores`` (https://git-scm.com/docs/gitignore).
Only paths are handled here, never file contents.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

GIT_TIMEOUT = 30
# Variables that would point git at another repository or index than the one under ``root``.
_GIT_REDIRECTS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY", "GIT_NAMESPACE")
_NO_INTERACTION = {"GIT_PAGER": "cat", "PAGER": "cat", "GIT_EDITOR": ":", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9",
    "graph": "!-~", "lower": "a-z", "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z", "xdigit": "0-9A-Fa-f",
}
_NEVER = "(?!)"


class _Rule(NamedTuple):
    """One pattern line of a .gitignore file."""

    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    basename: bool  # no slash in the pattern: it matches the last component at any depth


def ignored_paths(root: Path, paths: Iterable[str]) -> set[str]:
    """The subset of ``paths`` (POSIX paths relative to ``root``, files that may not exist yet) that git ignores.

    Inside a git work tree git answers, so a tracked file is never reported (git would commit it)
    and every ignore source git reads counts. Without git, outside a work tree or when git fails,
    the ``.gitignore`` files under ``root`` decide.
    """
    root = Path(root)
    wanted = [path for path in dict.fromkeys(paths) if path]
    if not wanted:
        return set()
    answer = _git_check_ignore(root, wanted)
    if answer is None:
        matcher = _Matcher(root)
        answer = {path for path in wanted if matcher.ignores(path)}
    return answer


def gitignore_ignores(root: Path, path: str) -> bool:
    """Whether the ``.gitignore`` files in ``root`` and in the directories on ``path`` ignore ``path``."""
    return _Matcher(Path(root)).ignores(path)


def _git_env() -> dict[str, str]:
    """The caller's environment without repository redirections, pagers, editors or prompts."""
    env = {key: value for key, value in os.environ.items() if key not in _GIT_REDIRECTS}
    env.update(_NO_INTERACTION)
    return env


def _git_check_ignore(root: Path, paths: list[str]) -> set[str] | None:
    """The paths ``git check-ignore`` reports, or None when git is missing, ``root`` is no work tree or git fails."""
    git = shutil.which("git")
    if git is None or not _is_dir(root) or any("\0" in path for path in paths):
        return None
    stdin = b"".join(os.fsencode(path) + b"\0" for path in paths)
    try:
        result = subprocess.run([git, "-C", str(root), "check-ignore", "--stdin", "-z"], input=stdin, capture_output=True,
                                env=_git_env(), timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode not in (0, 1):
        return None
    reported = {os.fsdecode(item) for item in result.stdout.split(b"\0") if item}
    return reported & set(paths)


class _Matcher:
    """The .gitignore files under one root, each read once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._rules: dict[tuple[str, ...], list[_Rule]] = {}

    def ignores(self, path: str) -> bool:
        """Whether ``path`` or one of its parent directories is ignored (git does not look inside an ignored directory)."""
        parts = tuple(part for part in path.split("/") if part not in ("", "."))
        for depth in range(1, len(parts) + 1):
            is_dir = depth < len(parts) or _is_dir(self.root / path)
            if self._excluded(parts[:depth], is_dir):
                return True
        return False

    def _excluded(self, parts: tuple[str, ...], is_dir: bool) -> bool:
        """The verdict of the last matching rule, the deepest .gitignore first."""
        for level in range(len(parts) - 1, -1, -1):
            relative = "/".join(parts[level:])
            for rule in reversed(self._rules_in(parts[:level])):
                if rule.dir_only and not is_dir:
                    continue
                if rule.regex.fullmatch(parts[-1] if rule.basename else relative):
                    return not rule.negate
        return False

    def _rules_in(self, directory: tuple[str, ...]) -> list[_Rule]:
        if directory not in self._rules:
            self._rules[directory] = _read_rules(self.root.joinpath(*directory, ".gitignore"))
        return self._rules[directory]


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a directory on the way that cannot be searched
        return False


def _read_rules(path: Path) -> list[_Rule]:
    """The rules of one .gitignore; a missing, unreadable or symlinked file (git does not follow those) has none."""
    try:
        if path.is_symlink() or not path.is_file():
            return []
        text = path.read_text(encoding="utf-8-sig", errors="surrogateescape")
    except OSError:
        return []
    rules = (_parse_line(line.removesuffix("\r")) for line in text.split("\n"))
    return [rule for rule in rules if rule is not None]


def _parse_line(line: str) -> _Rule | None:
    """The rule on one line, or None for a blank line or a comment."""
    if line.startswith("#"):
        return None
    pattern = _strip_trailing_spaces(line)
    negate = pattern.startswith("!")
    pattern = pattern.removeprefix("!")
    dir_only = pattern.endswith("/")
    pattern = pattern.removesuffix("/")
    if not pattern:
        return None
    basename = "/" not in pattern
    regex = _translate(pattern.removeprefix("/"))
    return _Rule(re.compile(regex, re.DOTALL), negate, dir_only, basename)


def _strip_trailing_spaces(line: str) -> str:
    """``line`` without its trailing spaces, keeping a space escaped with a backslash."""
    end = len(line)
    index = 0
    while index < len(line):
        if line[index] == "\\":
            index += 1
            end = index + 1
        elif line[index] != " ":
            end = index + 1
        index += 1
    return line[:min(end, len(line))]


def _translate(pattern: str) -> str:
    """The regular expression (for ``fullmatch``) of a wildmatch pattern where ``*``, ``?`` and classes stop at ``/``."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            index, piece = _stars(pattern, index)
        elif char == "[":
            index, piece = _char_class(pattern, index)
        elif char == "\\":
            if index + 1 == len(pattern):
                return _NEVER  # a trailing backslash is an invalid pattern: it matches nothing
            index, piece = index + 2, re.escape(pattern[index + 1])
        else:
            index, piece = index + 1, "[^/]" if char == "?" else re.escape(char)
        if piece == _NEVER:
            return _NEVER
        out.append(piece)
    return "".join(out)


def _stars(pattern: str, index: int) -> tuple[int, str]:
    """A run of ``*`` at ``index``: ``**`` between slashes (or the ends) crosses directories, anything else does not."""
    end = index
    while end < len(pattern) and pattern[end] == "*":
        end += 1
    whole_component = (index == 0 or pattern[index - 1] == "/") and (end == len(pattern) or pattern[end] == "/")
    if end - index < 2 or not whole_component:
        return end, "[^/]*"
    if end == len(pattern):
        return end, ".*"
    return end + 1, "(?:.*/)?"  # "**/" is zero or more directories


def _char_class(pattern: str, index: int) -> tuple[int, str]:
    """A ``[...]`` class at ``index``; an unterminated or malformed class makes the whole pattern match nothing."""
    pos = index + 1
    negate = pos < len(pattern) and pattern[pos] in "!^"
    pos += negate
    first, items = pos, []
    previous: str | None = None  # the character a following "-" starts a range from
    while pos < len(pattern) and (pattern[pos] != "]" or pos == first):
        if pattern.startswith("[:", pos) and (close := pattern.find("]", pos + 2)) > pos + 2 and pattern[close - 1] == ":":
            if pattern[pos + 2:close - 1] not in _POSIX_CLASSES:
                return len(pattern), _NEVER  # git gives up on an unknown [:name:]
            items.append(_POSIX_CLASSES[pattern[pos + 2:close - 1]])
            pos, previous = close + 1, None
        elif pattern[pos] == "-" and previous is not None and pos + 1 < len(pattern) and pattern[pos + 1] != "]":
            high, pos = _class_char(pattern, pos + 1)
            items.append(f"{re.escape(previous)}-{re.escape(high)}" if previous <= high else "")
            previous = None
        else:
            previous, pos = _class_char(pattern, pos)
            items.append(re.escape(previous))
    if pos >= len(pattern):
        return len(pattern), _NEVER
    body = "".join(items)
    return pos + 1, f"[^/{body}]" if negate else f"(?!/)[{body}]"


def _class_char(pattern: str, pos: int) -> tuple[str, int]:
    """The character at ``pos``, unescaped, and the position after it."""
    if pattern[pos] == "\\" and pos + 1 < len(pattern):
        return pattern[pos + 1], pos + 2
    return pattern[pos], pos + 1
