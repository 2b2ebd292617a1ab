# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks on what a run rendered, before anything is written: YAML syntax, secrets in plain files, paths in the
way, undefined values printed, plugin errors located in the cluster vars, readable vars files.

Messages name files, lines and keys, never values.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars
from ansible_collections.cluster.secrets.plugins.plugin_utils._data_files import MAX_VARS_BYTES
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import permission_bits
from ansible_collections.cluster.secrets.plugins.plugin_utils._findings import Finding
from ansible_collections.cluster.secrets.plugins.plugin_utils._gitignore import ignored_paths
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_problems import TemplateProblem, UndefinedUse
from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import secret_fragments, secret_paths_by_value
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import SOPS_CONFIG_NAMES, sops_format
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import load_schema

_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# A secret this long or longer is looked for anywhere in a plain file, in every encoded form and line by line;
# a shorter one only as a whole token, and then as a warning (four characters match by chance too often).
LEAK_MIN_LENGTH = 6
SHORT_SECRET_MIN_LENGTH = 3


def is_secret_file(path: str, secret_re: re.Pattern[str]) -> bool:
    """A rendered file to encrypt: it matches the secret pattern and is not the sops configuration itself."""
    return bool(secret_re.search(path)) and PurePosixPath(path).name not in SOPS_CONFIG_NAMES


def check_rendered_yaml(rendered: Mapping[str, bytes], secret_re: re.Pattern[str]) -> list[Finding]:
    findings = []
    for path, content in rendered.items():
        if sops_format(path) != "yaml":
            continue
        try:
            # Syntax only: a tag PyYAML cannot construct (such as the plain scalar `=`) is still valid YAML.
            for _node in yaml.compose_all(content, Loader=_YamlLoader):
                pass
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or "invalid YAML"
            if secret_re.search(path):
                problem = re.sub(r"'[^']*'|\"[^\"]*\"", "…", problem)
            findings.append(Finding((), f"rendered YAML does not parse ({problem}, column {mark.column + 1 if mark else '?'})",
                                    path, mark.line + 1 if mark else None,
                                    "check the template; insert values with the yaml_quote filter"))
        except yaml.YAMLError as exc:
            findings.append(Finding((), f"rendered YAML does not parse ({exc.__class__.__name__})", path, None))
    return findings


def find_plaintext_leaks(rendered: Mapping[str, bytes], secret_re: re.Pattern[str], cluster: ClusterVars) -> dict[str, Finding]:
    """Plain files (not encrypted) that hold a secret value from the cluster vars, by path.

    A value of LEAK_MIN_LENGTH or more is found as is, escaped, URL- or HTML-encoded, base64-encoded, or line by
    line (an indented multi-line key); a shorter one only as a whole token, reported as a warning finding.
    """
    schema = load_schema()
    names_of = secret_paths_by_value(cluster.data, schema)
    long_values = {v: secret_fragments(v, LEAK_MIN_LENGTH) for v in names_of if len(v.strip()) >= LEAK_MIN_LENGTH}
    short_values = {v: re.compile(r"(?<![\w.-])" + re.escape(v.strip()) + r"(?![\w.-])")
                    for v in names_of if SHORT_SECRET_MIN_LENGTH <= len(v.strip()) < LEAK_MIN_LENGTH}
    findings = {}
    for path, content in rendered.items():
        if is_secret_file(path, secret_re):
            continue
        text = content.decode("utf-8", errors="replace")
        names: list[str] = []
        first_line: int | None = None
        for value, fragments in long_values.items():
            found = next((form for form in fragments if form in text), None)
            if found is not None:
                names += names_of[value]
                line = text[: text.index(found)].count("\n") + 1
                first_line = line if first_line is None else min(first_line, line)
        short = sorted({name for value, pattern in short_values.items() if pattern.search(text) for name in names_of[value]})
        if names:
            findings[path] = Finding((), f"contains the value of {', '.join(sorted(set(names)))} (as is, escaped, encoded or "
                                         "line by line) but is not a secret file and git does not ignore it, so it would be "
                                         "committed unencrypted", path, first_line,
                                     "name the file *.sops.* so it is encrypted, add its path to .gitignore if it must stay "
                                     "plaintext on this machine only, or do not put the secret there")
        elif short:
            findings[path] = Finding((), f"contains a word equal to the (short) value of {', '.join(short)}; if that is the "
                                         "secret, it would be committed unencrypted", path, None,
                                     "a secret this short is weak: use a longer one, or check the file", severity="warning")
    return findings


def check_plaintext_leaks(rendered: Mapping[str, bytes], secret_re: re.Pattern[str], cluster: ClusterVars,
                          root: Path | None = None) -> tuple[list[Finding], set[str]]:
    """Refuse a secret value in a plain file git would commit; allow it where git ignores the path.

    Returns the findings (errors) and the paths that may stay plaintext because git ignores them.
    """
    leaks = find_plaintext_leaks(rendered, secret_re, cluster)
    allowed = ignored_paths(root, list(leaks)) if root is not None and leaks else set()
    return [finding for path, finding in sorted(leaks.items()) if path not in allowed], {
        path for path in allowed if leaks[path].severity == "error"}


_PLUGIN_FINDING = re.compile(r"^(?P<head>.*?): (?P<loc>[A-Za-z_][\w-]*(?:(?:\.|\[)[\w-]+\]?)*): (?P<message>.+)$")


def locate_plugin_problem(problem: TemplateProblem, cluster: ClusterVars) -> TemplateProblem:
    """A plugin's validation error that names a key path (``nodes.0.mac_addr: ...``) is shown at that key's file and line."""
    if not problem.template.startswith("plugin "):
        return problem
    match = _PLUGIN_FINDING.match(problem.message)
    if match is not None:
        file, line = _locate_dotted(match["loc"], cluster)
        if line is not None:
            return TemplateProblem(str(file), line, f"{match['loc']}: {match['message']} (found by the repository's {problem.template})")
    # Else the first key path the message names, e.g. "address ... is used by both gateways.internal and nodes[0].address".
    head, _sep, message = problem.message.partition(": ")
    for candidate in _KEY_PATH.findall(message if _sep else head):
        file, line = _locate_dotted(candidate, cluster)
        if line is not None:
            return TemplateProblem(str(file), line, f"{message or head} (found by the repository's {problem.template})")
    return problem


_KEY_PATH = re.compile(r"\b[A-Za-z_]\w*(?:\.\w+|\[\d+\])+(?:\.\w+)*")


def _locate_dotted(dotted: str, cluster: ClusterVars) -> tuple[str | None, int | None]:
    path = tuple(int(part) if part.isdigit() else part for part in re.split(r"[.\[\]]+", dotted) if part)
    if not path or path[0] not in cluster.data:
        return None, None
    return cluster.locate(path)


def check_targets(root: Path, paths: Iterable[str]) -> list[Finding]:
    """Every path configure will write must be a regular file or free; a folder, link, pipe or device in the way
    stops the run before anything is written (never halfway through the renames)."""
    findings = []
    for rel in sorted(set(paths)):
        target = root / rel
        for parent in reversed(target.relative_to(root).parents):
            folder = root / parent
            if folder != root and (folder.is_symlink() or (folder.exists() and not folder.is_dir())):
                findings.append(Finding((), f"{parent} is in the way: it is not a folder", rel, None,
                                        "move it aside so the rendered file can be written"))
                break
        else:
            if target.is_symlink() or (target.exists() and not target.is_file()):
                kind = "a symbolic link" if target.is_symlink() else "a folder" if target.is_dir() else "not a regular file"
                findings.append(Finding((), f"the path to write is {kind}", rel, None,
                                        "move it aside so the rendered file can be written; configure writes no file through a link"))
    return findings


def readable_vars_warnings(vars_files: Iterable[Path], cache: Mapping[str, Any], secrets: Iterable[str],
                           modes: Mapping[str, int] | None = None) -> list[str]:
    """Cluster vars files that hold secrets and that others may read: said once (not again while the mode stays).

    ``modes`` are the files' modes when the caller has them already (``str(path)`` to mode)."""
    seen = cache.get("vars_modes", {}) if isinstance(cache.get("vars_modes"), dict) else {}
    values = [v for v in secrets if len(v) >= LEAK_MIN_LENGTH]
    warnings = []
    for path in vars_files:
        mode = modes.get(str(path)) if modes is not None else permission_bits(path)
        if mode is None or not mode & 0o077 or seen.get(str(path)) == mode or not path.is_file():
            continue
        text = path.read_bytes()[:MAX_VARS_BYTES].decode("utf-8", errors="replace")
        if any(value in text for value in values):
            warnings.append(f"{path.name} holds secrets but is readable by {'others' if mode & 0o007 else 'its group'} "
                            f"(mode {mode:04o}): run `chmod 600 {path}`")
    return warnings


def undefined_message(uses: list[UndefinedUse], strict: bool) -> str:
    """One message listing every undefined value printed into a file (names and places, never values)."""
    unique = list(dict.fromkeys(use.render() for use in uses))
    head = (f"{len(unique)} undefined value(s) were printed into rendered files as empty text"
            if not strict else f"{len(unique)} undefined value(s) would be printed into rendered files")
    tail = ("set them in the cluster vars, or give the template a default; configure_undefined=strict makes this an error"
            if not strict else "set them in the cluster vars or give the templates a default (configure_undefined=strict is set)")
    return f"{head}: " + "; ".join(unique) + f". Hint: {tail}."
