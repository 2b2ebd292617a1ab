# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loading and validating the cluster vars (cluster.yaml / nodes.yaml, cluster.toml, any YAML/TOML/JSON data file).

Values are data: they are parsed with a safe YAML loader and never passed through
a template engine. Every problem is collected (schema, semantics, likely typos)
so that one run reports all of them, each with file, line and key path, and
never with the value of a secret field.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import base64
import html
import ipaddress
import itertools
import json
import os
import re
import stat
import tomllib
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "cluster.schema.json"
SECRET_NAME_RE = re.compile(r"(?i)(passw(or)?d|secret|token|private[_-]?key|credential|api[_-]?key|passphrase)")
PLACEHOLDER_RE = re.compile(r"^CHANGE-?ME", re.IGNORECASE)
KeyPath = tuple[Any, ...]


@dataclass
class Finding:
    path: KeyPath
    message: str
    file: str | None = None
    line: int | None = None
    hint: str | None = None
    severity: str = "error"

    def render(self) -> str:
        where = self.file or "cluster vars"
        if self.line:
            where += f":{self.line}"
        text = f"{where}: {format_path(self.path) or '(top level)'}: {self.message}"
        if self.hint:
            text += f" Hint: {self.hint}."
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": format_path(self.path), "message": self.message, "file": self.file,
            "line": self.line, "hint": self.hint, "severity": self.severity,
        }


@dataclass
class ClusterVars:
    """The merged cluster vars with where each key came from."""

    data: dict[str, Any] = field(default_factory=dict)
    lines: dict[KeyPath, tuple[str, int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def locate(self, path: KeyPath) -> tuple[str | None, int | None]:
        for length in range(len(path), 0, -1):
            if path[:length] in self.lines:
                return self.lines[path[:length]]
        return (self.files[0] if self.files else None, None)

    def add(self, path: KeyPath, message: str, hint: str | None = None, severity: str = "error") -> None:
        file, line = self.locate(path)
        self.findings.append(Finding(path, message, file, line, hint, severity))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


class ClusterVarsError(Exception):
    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__(format_findings(findings))


def format_path(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_findings(findings: list[Finding], title: str = "cluster vars") -> str:
    errors = [f for f in findings if f.severity == "error"]
    head = f"{title}: {len(errors)} problem{'s' if len(errors) != 1 else ''} found"
    return "\n".join([head] + [f"  - {f.render()}" for f in findings])


# Bounds on what a vars file may ask of the loader: a few kilobytes are normal, nesting is shallow,
# anchors are rare. A file past them is refused with its line, never loaded (alias bombs, endless nesting).
MAX_VARS_BYTES = 4 * 1024 * 1024
MAX_ALIASES = 200
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 100_000


class InputLimitError(yaml.MarkedYAMLError):
    """A vars file that is past one of the loader's bounds."""


class _LineLoader(yaml.SafeLoader):
    """A safe loader that also records the line of every key and rejects duplicate keys, alias bombs,
    recursive aliases and excessive nesting (before any of it is built in memory)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._open_anchors: set[str] = set()

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise InputLimitError(None, None, f"more than {MAX_ALIASES} aliases (*name): refused, as an alias bomb would be",
                                      event.start_mark)
            if event.anchor in self._open_anchors:
                raise InputLimitError(None, None, f"the alias *{event.anchor} refers to a node that contains it",
                                      event.start_mark)
            return super().compose_node(parent, index)
        event = self.peek_event()
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise InputLimitError(None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        anchor = getattr(event, "anchor", None)
        if anchor:
            self._open_anchors.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor:
                self._open_anchors.discard(anchor)


def _walk_nodes(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], duplicates: list[tuple[KeyPath, int]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark.line)
            child = (*path, key)
            if key in seen:
                duplicates.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk_nodes(value_node, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _walk_nodes(item, child, lines, duplicates)


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document has once every alias is expanded, computed on the composed graph
    (where an alias is a shared node) without expanding anything."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if children_done:
            sizes[id(node)] = min(1 + sum(sizes.get(id(child), 0) for child in children), MAX_EXPANDED_NODES + 1)
        else:
            stack.append((node, True))
            stack += [(child, False) for child in children if id(child) not in sizes]
    return sizes[id(root)]


def load_yaml_with_lines(text: str, label: str) -> tuple[Any, dict[KeyPath, int], list[Finding]]:
    """Parse one YAML document; return the data, the line of every key, and problems (no values)."""
    findings: list[Finding] = []
    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)
        node = loader.get_single_node()
        if node is None:
            return {}, {}, findings
        size = _expanded_size(node)
        if size > MAX_EXPANDED_NODES:
            raise InputLimitError(None, None, f"aliases would expand it to more than {MAX_EXPANDED_NODES} values "
                                  "(an alias bomb)", node.start_mark)
        lines: dict[KeyPath, int] = {}
        duplicates: list[tuple[KeyPath, int]] = []
        _walk_nodes(node, (), lines, duplicates)
        data = loader.construct_document(node)
    except InputLimitError as exc:
        mark = exc.problem_mark
        findings.append(Finding((), f"refused: {exc.problem}", label, mark.line + 1 if mark else None,
                                "write the values out; cluster vars need no deep nesting and few aliases"))
        return None, {}, findings
    except yaml.MarkedYAMLError as exc:
        # An unclosed quote is reported at the end of the file; the line where the quote opened is the useful one.
        at_end = exc.context_mark is not None and "end of stream" in str(exc.problem)
        mark = exc.context_mark if at_end else (exc.problem_mark or exc.context_mark)
        line = mark.line + 1 if mark else None
        # Quoted text in the parser's message may be a value: hidden, unless it is a one- or two-character token.
        problem = re.sub(r"'[^']{3,}'|\"[^\"]{3,}\"", "…", exc.problem or "invalid YAML")
        findings.append(Finding((), f"invalid YAML ({problem}, column {mark.column + 1 if mark else '?'})", label, line,
                                "fix the syntax; quote values that contain ': ', '#', or start with * & ! { [ %"))
        return None, {}, findings
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        findings.append(Finding((), f"invalid YAML (a control character, code {exc.character!r:.12}, that YAML does not allow)",
                                label, line, "remove it; to put such a character in a value, write it as an escape in double quotes"))
        return None, {}, findings
    except yaml.YAMLError as exc:
        findings.append(Finding((), f"invalid YAML ({exc.__class__.__name__})", label, None))
        return None, {}, findings
    except RecursionError:
        findings.append(Finding((), f"refused: nested too deeply to read (more than {MAX_DEPTH} levels)", label, None,
                                "cluster vars need no deep nesting"))
        return None, {}, findings
    finally:
        if loader is not None:
            loader.dispose()
    for path, line in duplicates:
        findings.append(Finding(path, "this key is defined more than once; only the last one would count", label, line,
                                "keep one definition"))
    return data, lines, findings


def toml_key_lines(text: str) -> dict[KeyPath, int]:
    """The line of every key and table of a TOML document (``[a.b]``, ``[[nodes]]``, ``key = value``), by key path."""
    lines: dict[KeyPath, int] = {}
    table: KeyPath = ()
    counts: dict[KeyPath, int] = {}
    header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    assignment = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        match = header.match(line)
        if match:
            path: KeyPath = tuple(part.strip().strip("\"'") for part in match.group(2).split("."))
            if match.group(1) == "[[":
                index = counts.get(path, 0)
                counts[path] = index + 1
                lines.setdefault(path, number)
                path = (*path, index)
            table = path
            lines.setdefault(table, number)
            continue
        match = assignment.match(line)
        if match:
            key = tuple(part.strip().strip("\"'") for part in match.group(1).split("."))
            lines.setdefault((*table, *key), number)
    return lines


def read_vars_text(path: Path, label: str) -> tuple[str | None, list[Finding]]:
    """The text of a vars file: a regular file (never a FIFO or a device), at most MAX_VARS_BYTES, UTF-8."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return None, [Finding((), f"cannot open the file ({exc.strerror or exc.__class__.__name__})", label, None,
                              "check the path and its permissions")]
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, [Finding((), "is not a regular file (a folder, pipe or device); refused", label, None,
                                  "point the cluster vars at a plain file")]
        if info.st_size > MAX_VARS_BYTES:
            return None, [Finding((), f"is {info.st_size} bytes, more than the {MAX_VARS_BYTES} a vars file may have; refused",
                                  label, None, "check that this is the right file")]
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_VARS_BYTES + 1)
    except OSError as exc:
        return None, [Finding((), f"cannot read the file ({exc.strerror or exc.__class__.__name__})", label, None)]
    finally:
        os.close(fd)
    if len(raw) > MAX_VARS_BYTES:
        return None, [Finding((), f"is more than {MAX_VARS_BYTES} bytes; refused", label, None, "check that this is the right file")]
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [Finding((), "is not UTF-8 text", label, line, "save it as UTF-8")]


def _load_one(path: Path) -> tuple[Any, dict[KeyPath, int], list[Finding]]:
    """One vars file (YAML, TOML or JSON) with the line of every key it could locate."""
    label = path.name
    text, problems = read_vars_text(path, label)
    if text is None:
        return None, {}, problems
    if path.suffix == ".toml":
        try:
            document = tomllib.loads(text)
        except RecursionError:
            return None, {}, [Finding((), "refused: nested too deeply to read", label, None, "cluster vars need no deep nesting")]
        except tomllib.TOMLDecodeError as exc:
            line = getattr(exc, "lineno", None) or _toml_error_line(str(exc))
            problem = re.sub(r"'[^']*'|\"[^\"]*\"", "…", str(exc).split(" (at ", maxsplit=1)[0])
            return None, {}, [Finding((), f"invalid TOML ({problem})", label, line, "fix the syntax")]
        if _depth(document) > MAX_DEPTH:
            return None, {}, [Finding((), f"refused: nested more than {MAX_DEPTH} levels deep", label, None,
                                      "cluster vars need no deep nesting")]
        return document, toml_key_lines(text), []
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return None, {}, [Finding((), f"invalid JSON ({exc.msg}, column {exc.colno})", label, exc.lineno, "fix the syntax")]
        except RecursionError:
            return None, {}, [Finding((), "refused: nested too deeply to read", label, None, "cluster vars need no deep nesting")]
        return (data, {}, []) if _depth(data) <= MAX_DEPTH else (
            None, {}, [Finding((), f"refused: nested more than {MAX_DEPTH} levels deep", label, None, "cluster vars need no deep nesting")])
    return load_yaml_with_lines(text, label)


def _depth(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    """How deeply ``value`` nests, counting no further than ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level >= limit:
            return level
        if isinstance(item, Mapping):
            stack += [(child, level + 1) for child in item.values()]
        elif isinstance(item, list):
            stack += [(child, level + 1) for child in item]
    return deepest


def _toml_error_line(message: str) -> int | None:
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else None


def load_cluster_vars(files: Sequence[Path] | Path, nodes_file: Path | None = None) -> ClusterVars:
    """Load the vars files in order, merged as makejinja merges its data files: a later top-level key replaces an earlier one.

    ``files`` is the list of vars files; for callers of the two-file form, a single path and an optional
    ``nodes_file`` (skipped when it does not exist).
    """
    if isinstance(files, (str, Path)):
        paths = [Path(files)] + ([Path(nodes_file)] if nodes_file is not None and Path(nodes_file).exists() else [])
    else:
        paths = [Path(p) for p in files]
    result = ClusterVars()
    for path in paths:
        label = path.name
        if not path.exists():
            result.findings.append(Finding((), "file not found", str(path), None,
                                           "create it (`ansible-playbook cluster.secrets.init` makes cluster.yaml from the "
                                           "sample; a cluster-template repository copies its cluster.sample.* file), "
                                           "or set cluster_file"))
            continue
        result.files.append(label)
        data, lines, findings = _load_one(path)
        result.findings += findings
        if data is None:
            continue
        if not isinstance(data, dict):
            result.findings.append(Finding((), "the top level must be a mapping of keys to values", label, 1))
            continue
        for key, value in data.items():
            result.data[key] = value
            for stale in [p for p in result.lines if p[:1] == (key,)]:
                del result.lines[stale]
        for key_path, line in lines.items():
            result.lines[key_path] = (label, line)
    _check_storable(result)
    return result


def iter_leaves(data: Any) -> Iterator[tuple[KeyPath, Any]]:
    """Every value that is neither a mapping nor a list, with its key path (iteratively: no recursion limit)."""
    stack: list[tuple[Any, KeyPath]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, Mapping):
            stack += [(item, (*path, key)) for key, item in value.items()]
        elif isinstance(value, list):
            stack += [(item, (*path, index)) for index, item in enumerate(value)]
        else:
            yield path, value


def _check_storable(cluster: ClusterVars) -> None:
    """A string no file can hold (a lone UTF-16 surrogate such as ``"\\ud800"``) is reported where it is."""
    for path, value in iter_leaves(cluster.data):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                cluster.add(path, "holds a lone surrogate (a \\ud800-\\udfff escape on its own), which no file can store",
                            "write the whole character, or both halves of its surrogate pair")


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def secret_keys(schema: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> set[str]:
    """Top-level keys that hold secrets: writeOnly in the schema, or named like a secret."""
    keys = {name for name, prop in schema.get("properties", {}).items() if prop.get("writeOnly")}
    for name in data or {}:
        if isinstance(name, str) and SECRET_NAME_RE.search(name) and not _declared_public(schema, name):
            keys.add(name)
    return keys


def _declared_public(schema: Mapping[str, Any], name: str) -> bool:
    prop = schema.get("properties", {}).get(name)
    return prop is not None and not prop.get("writeOnly")


def is_secret_path(path: KeyPath, schema: Mapping[str, Any]) -> bool:
    if not path:
        return False
    top = path[0]
    if top in secret_keys(schema):
        return True
    return any(isinstance(p, str) and SECRET_NAME_RE.search(p) and not _declared_public(schema, p) for p in path)


def _osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (edits, with adjacent swaps counted once)."""
    rows = [[0] * (len(b) + 1) for _row in range(len(a) + 1)]
    for i in range(len(a) + 1):
        rows[i][0] = i
    for j in range(len(b) + 1):
        rows[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[len(a)][len(b)]


def likely_misspelling(name: str, known: Iterable[str]) -> str | None:
    lowered = name.lower()
    best: tuple[int, str] | None = None
    for candidate in known:
        if candidate == name:
            return None
        if candidate.lower() == lowered:
            return candidate
        limit = 1 if len(candidate) < 6 else 2
        if abs(len(candidate) - len(name)) > limit:
            continue
        distance = _osa_distance(lowered, candidate.lower())
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def _jsonschema() -> Any:
    """jsonschema, imported on first use: plugins that only read cluster vars need not pay for it."""
    try:
        import jsonschema  # noqa: PLC0415
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return jsonschema


def _format_checker(jsonschema: Any) -> Any:
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("ipv4", raises=ValueError)
    def _ipv4(value: object) -> bool:
        if not isinstance(value, str):
            return True
        ipaddress.IPv4Address(value)
        return True

    @checker.checks("cidr", raises=ValueError)
    def _cidr(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if "/" not in value:
            raise ValueError("no prefix length")
        ipaddress.ip_network(value, strict=True)
        return True

    @checker.checks("domain")
    def _domain(value: object) -> bool:
        if not isinstance(value, str):
            return True
        labels = value.rstrip(".").split(".")
        return len(labels) >= 2 and all(re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", x) for x in labels)

    return checker


_TYPE_NAMES = {"string": "a string", "integer": "a whole number", "boolean": "true or false", "array": "a list",
               "object": "a mapping", "number": "a number", "null": "empty"}


def _yaml_type(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a string"


def _schema_message(error: Any, secret: bool) -> tuple[str, str | None]:
    """A message for one jsonschema error that never quotes a secret value."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = schema.get("x-hint")
    shown = "" if secret else f" (got {json.dumps(error.instance, default=str)})"
    kind = error.validator
    if kind == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        name = missing[0] if missing else "a key"
        return f"required key '{name}' is missing", "add it; see the sample cluster.yaml for its meaning"
    if kind == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        names = " or ".join(str(_TYPE_NAMES.get(w, w)) for w in wanted)
        type_hint = None
        if "string" in wanted and not isinstance(error.instance, str):
            type_hint = "quote the value in YAML, e.g. key: \"yes\", so it stays text"
        return f"must be {names}, but YAML read it as {_yaml_type(error.instance)}", type_hint or hint
    if kind == "minLength":
        return "must not be empty", hint or "set a value, or remove the key if it is optional"
    if kind == "pattern":
        return f"has the wrong form{shown}", hint or f"it must match {error.validator_value}"
    if kind == "format":
        what = {"ipv4": "an IPv4 address", "cidr": "a network in CIDR form", "domain": "a domain name"}.get(error.validator_value, error.validator_value)
        return f"is not {what}{shown}", hint
    if kind == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"must be one of: {allowed}{shown}", None
    if kind in ("minimum", "maximum"):
        return f"is out of range ({kind} {error.validator_value}){shown}", hint
    return f"is invalid ({kind}){shown}", hint


# The keys the collection's own features read: in a repository with its own makejinja.toml (and its own
# idea of what its templates need) only these are checked against the schema.
OWN_KEYS = ("cf_account_id", "tfstate_username", "tfstate_password", "tfstate_url", "proxmox_api_url", "proxmox_node",
            "proxmox_api_token_id", "proxmox_api_token_secret", "external_secrets")


def own_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema narrowed to the collection's own keys."""
    narrowed = {key: value for key, value in schema.items() if key not in ("properties", "required")}
    narrowed["properties"] = {key: value for key, value in schema.get("properties", {}).items() if key in OWN_KEYS}
    return narrowed


def validate(cluster: ClusterVars, schema: Mapping[str, Any], known_keys: Iterable[str] = (),
             own_only: bool = False) -> list[Finding]:
    """Add every schema, semantic and misspelling problem to ``cluster.findings``; return them all.

    ``own_only``: the repository has its own makejinja.toml; check only the collection's own keys (and the
    network rules on the keys that are present), never what the repository's templates may or may not need.
    """
    if own_only:
        schema = own_schema(schema)
    jsonschema = _jsonschema()
    if jsonschema is None:
        cluster.add((), "the Python package jsonschema is required to validate cluster vars", "pip install jsonschema")
        return cluster.findings
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema, format_checker=_format_checker(jsonschema))
    for error in sorted(validator.iter_errors(cluster.data), key=lambda e: [str(p) for p in e.absolute_path]):
        path = tuple(error.absolute_path)
        if error.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", error.message)
            path = path + tuple(missing[:1])
        message, hint = _schema_message(error, is_secret_path(path, schema))
        cluster.add(path, message, hint)
    _check_misspellings(cluster, schema, known_keys)
    _check_networks(cluster)
    _check_infrastructure(cluster)
    return cluster.findings


def _check_misspellings(cluster: ClusterVars, schema: Mapping[str, Any], known_keys: Iterable[str]) -> None:
    allowed = set(known_keys)
    known = list(schema.get("properties", {}))
    for key in cluster.data:
        if not isinstance(key, str) or key in known or key in allowed:
            continue
        guess = likely_misspelling(key, known)
        if guess:
            cluster.add((key,), f"unknown key, likely a misspelling of '{guess}'",
                        f"rename it to {guess}; if it is your own key, add it to known_keys")
    node_known = list(schema.get("properties", {}).get("nodes", {}).get("items", {}).get("properties", {}))
    for index, node in enumerate(cluster.data.get("nodes") or []):
        if not isinstance(node, dict):
            continue
        for key in node:
            if isinstance(key, str) and key not in node_known and key not in allowed:
                guess = likely_misspelling(key, node_known)
                if guess:
                    cluster.add(("nodes", index, key), f"unknown key, likely a misspelling of '{guess}'", f"rename it to {guess}")


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(value, strict=True) if isinstance(value, str) and "/" in value else None
    except ValueError:
        return None


def _address(value: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(value) if isinstance(value, str) else None
    except ValueError:
        return None


NETWORK_KEYS = ("node_cidr", "cluster_pod_cidr", "cluster_svc_cidr")
VIP_KEYS = ("cluster_api_addr", "cluster_gateway_addr", "cluster_dns_gateway_addr", "cloudflare_gateway_addr")
NETWORK_DEFAULTS = {"cluster_pod_cidr": "10.42.0.0/16", "cluster_svc_cidr": "10.43.0.0/16"}


def _check_networks(cluster: ClusterVars) -> None:
    data = cluster.data
    networks = {}
    for key in NETWORK_KEYS:
        net = _network(data.get(key, NETWORK_DEFAULTS.get(key)))
        if net is not None:
            networks[key] = net
    for (key_a, net_a), (key_b, net_b) in itertools.combinations(networks.items(), 2):
        if net_a.version == net_b.version and net_a.overlaps(net_b):
            if net_a == net_b:
                relation = "is the same network as"
            elif net_b.subnet_of(net_a):  # type: ignore[arg-type]  # same version, checked above
                relation = "contains"
            elif net_a.subnet_of(net_b):  # type: ignore[arg-type]
                relation = "is inside"
            else:
                relation = "overlaps"
            path_key = key_b if key_b in data else key_a
            cluster.add((path_key,), f"{key_a} {net_a} {relation} {key_b} {net_b}",
                        "networks must be disjoint; pick non-overlapping ranges (defaults: pods 10.42.0.0/16, services 10.43.0.0/16)")
    node_net = networks.get("node_cidr")
    used: dict[ipaddress.IPv4Address, str] = {}
    for key in (*VIP_KEYS, "node_default_gateway"):
        addr = _address(data.get(key))
        if addr is None:
            continue
        if addr in used:
            cluster.add((key,), f"{addr} is already used by {used[addr]}", "every gateway and API address must be unique")
        else:
            used[addr] = key
        if key in VIP_KEYS and node_net is not None and node_net.version == 4:
            if addr not in node_net:
                cluster.add((key,), f"{addr} is outside node_cidr {node_net}", "pick an unused address inside node_cidr")
            elif addr in (node_net.network_address, node_net.broadcast_address):
                cluster.add((key,), f"{addr} is the network or broadcast address of node_cidr", "pick a usable host address")
    names: dict[str, int] = {}
    for index, node in enumerate(data.get("nodes") or []):
        if not isinstance(node, dict):
            continue
        name = node.get("name")
        if isinstance(name, str):
            if name in names:
                cluster.add(("nodes", index, "name"), f"node name '{name}' is also used by nodes[{names[name]}]", "node names must be unique")
            names.setdefault(name, index)
        addr = _address(node.get("address"))
        if addr is None:
            continue
        label = f"nodes[{index}]"
        if addr in used:
            cluster.add(("nodes", index, "address"), f"{addr} is already used by {used[addr]}",
                        "each node needs its own address, distinct from the gateway and API addresses")
        else:
            used[addr] = label
        if node_net is not None and node_net.version == 4 and addr not in node_net:
            cluster.add(("nodes", index, "address"), f"{addr} is outside node_cidr {node_net}", "node addresses must be inside node_cidr")
    bgp = [k for k in ("cilium_bgp_router_addr", "cilium_bgp_router_asn", "cilium_bgp_node_asn") if data.get(k) not in (None, "")]
    if 0 < len(bgp) < 3:
        missing = sorted({"cilium_bgp_router_addr", "cilium_bgp_router_asn", "cilium_bgp_node_asn"} - set(bgp))
        cluster.add((bgp[0],), f"BGP is half configured: {', '.join(missing)} missing", "set all three cilium_bgp_* keys, or none")


INFRASTRUCTURE_TOKEN_KEYS = ("proxmox_api_token_id", "proxmox_api_token_secret")


def _check_infrastructure(cluster: ClusterVars) -> None:
    """With proxmox_api_url and proxmox_node set (infrastructure enabled) the token is required."""
    data = cluster.data
    if not (data.get("proxmox_api_url") and data.get("proxmox_node")):
        return
    for key in INFRASTRUCTURE_TOKEN_KEYS:
        if key not in data:
            cluster.add((key,), f"required key '{key}' is missing: infrastructure is enabled (proxmox_api_url and proxmox_node are set)",
                        "add it to cluster.yaml; if it is already in infrastructure/secrets.sops.yaml, "
                        "run `ansible-playbook cluster.secrets.migrate` to copy it over")


def with_defaults(data: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """The data the templates see: schema defaults filled in, derived values added."""
    merged = {name: prop["default"] for name, prop in schema.get("properties", {}).items() if "default" in prop}
    merged.update(data)
    node_net = _network(merged.get("node_cidr"))
    if "node_default_gateway" not in merged and node_net is not None and node_net.num_addresses > 2:
        merged["node_default_gateway"] = str(next(node_net.hosts()))
    merged["infrastructure_enabled"] = bool(merged.get("proxmox_api_url") and merged.get("proxmox_node"))
    merged["cilium_bgp_enabled"] = all(merged.get(k) not in (None, "") for k in ("cilium_bgp_router_addr", "cilium_bgp_router_asn", "cilium_bgp_node_asn"))
    return merged


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and bool(PLACEHOLDER_RE.match(value.strip()))


def load_and_validate(files: Sequence[Path] | Path, nodes_file: Path | None = None, schema_path: Path | None = None,
                      known_keys: Iterable[str] = (), own_only: bool = False) -> ClusterVars:
    """Load and validate; raise ClusterVarsError listing every error at once."""
    cluster = load_cluster_vars(files, nodes_file)
    if not cluster.errors:
        validate(cluster, load_schema(schema_path or SCHEMA_PATH), known_keys, own_only)
    if cluster.errors:
        raise ClusterVarsError(cluster.findings)
    return cluster


def secret_paths_by_value(data: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Every string held under a secret key, with the key paths that hold it (only the names are ever shown)."""
    schema = schema if schema is not None else load_schema()
    found: dict[str, list[str]] = {}
    for path, value in iter_leaves(data):
        if isinstance(value, str) and value.strip() and is_secret_path(path, schema) and not is_placeholder(value):
            found.setdefault(value, []).append(format_path(path))
    return found


def secret_values(data: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> list[str]:
    """Every string held under a secret key (for scrubbing messages and spotting plaintext leaks), longest first."""
    return sorted(secret_paths_by_value(data, schema), key=len, reverse=True)


def without_secrets(data: Any, schema: Mapping[str, Any], path: KeyPath = ()) -> Any:
    """A copy of ``data`` without any value held under a secret key, at any depth."""
    if isinstance(data, Mapping):
        return {key: without_secrets(value, schema, (*path, key)) for key, value in data.items()
                if not is_secret_path((*path, key), schema)}
    if isinstance(data, list):
        return [without_secrets(value, schema, (*path, index)) for index, value in enumerate(data)]
    return data


def encoded_forms(value: str) -> list[str]:
    """The ways a value shows up in text: as is, JSON/YAML/HCL-escaped (how Ansible, yaml_quote and
    terraform print it), YAML single-quoted, with HCL's doubled ``$${``/``%%{``, URL-encoded (a password
    in a DSN), HTML-escaped, and base64-encoded."""
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    forms = {value, escaped, json.dumps(value)[1:-1], escaped.replace("${", "$${").replace("%{", "%%{"),
             value.replace("'", "''"), urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
             urllib.parse.quote(value), html.escape(value), html.escape(value, quote=False),
             base64.b64encode(value.encode("utf-8")).decode("ascii")}
    return sorted(forms, key=len, reverse=True)


def secret_fragments(value: str, min_length: int) -> list[str]:
    """What to look for in a rendered file: the value, and each line of a multi-line value (a key pasted
    through ``indent()`` shows up line by line), in every encoded form, none shorter than ``min_length``."""
    parts = [value] + [line.strip() for line in value.splitlines() if line.strip() != value]
    found = {form for part in parts if len(part) >= min_length for form in encoded_forms(part) if len(form) >= min_length}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, values: Iterable[str]) -> str:
    """Replace any secret value, in any of its encoded forms, and its lines when it spans several, in ``text``."""
    for value in values:
        if len(value) < 3:
            continue
        for form in encoded_forms(value):
            text = text.replace(form, "********")
        for part in value.splitlines():
            if len(part) >= 6:
                for form in encoded_forms(part):
                    text = text.replace(form, "********")
    return text
