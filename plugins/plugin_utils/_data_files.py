# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading one data file (YAML, TOML or JSON: a cluster vars file, a makejinja ``data`` or ``file_data`` file) within bounds.

Values are data: they are parsed with a safe YAML loader and never passed through a template engine.
A file is read only when it is a regular file (never a FIFO or a device) of at most MAX_VARS_BYTES;
YAML past the alias, depth or expansion bounds is refused before it is built in memory. Each problem
is a finding with file and line, never with a value. The line of every key is recorded.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._findings import Finding, KeyPath

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


def _compose(loader: _LineLoader, all_documents: bool) -> list[yaml.Node]:
    """The composed document (or, with ``all_documents``, every document), nothing built yet."""
    if not all_documents:
        node = loader.get_single_node()
        return [node] if node is not None else []
    nodes = []
    while loader.check_node():
        node = loader.get_node()
        if node is not None:
            nodes.append(node)
    return nodes


def load_yaml_with_lines(text: str, label: str, *, all_documents: bool = False) -> tuple[Any, dict[KeyPath, int], list[Finding]]:
    """Parse one YAML document (or, with ``all_documents``, every document, merged as makejinja merges them:
    a later top-level key replaces an earlier one); return the data, the line of every key, and problems (no values)."""
    findings: list[Finding] = []
    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)
        nodes = _compose(loader, all_documents)
        if not nodes:
            return {}, {}, findings
        if sum(_expanded_size(node) for node in nodes) > MAX_EXPANDED_NODES:
            raise InputLimitError(None, None, f"aliases would expand it to more than {MAX_EXPANDED_NODES} values "
                                  "(an alias bomb)", nodes[0].start_mark)
        lines: dict[KeyPath, int] = {}
        duplicates: list[tuple[KeyPath, int]] = []
        data: Any = {} if all_documents else None
        for node in nodes:
            document = loader.construct_document(node)
            if not all_documents:
                data = document
            elif isinstance(document, dict):
                lines = {path: line for path, line in lines.items() if path[0] not in document}
                data |= document
            elif document is not None:
                findings.append(Finding((), "a document here is not a mapping of keys to values", label, node.start_mark.line + 1,
                                        "make every document (between --- lines) a mapping"))
                return None, {}, findings
            _walk_nodes(node, (), lines, duplicates)
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
                                  "use a plain file there")]
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


def load_data_file(path: Path, label: str | None = None, *, all_documents: bool = False) -> tuple[Any, dict[KeyPath, int], list[Finding]]:
    """One data file (YAML, TOML or JSON, by its suffix) with the line of every key it could locate.

    ``label`` names the file in findings (its name by default). ``all_documents``: a YAML file may hold several
    documents, merged as makejinja merges them (a later top-level key replaces an earlier one); otherwise one.
    """
    label = label or path.name
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
    return load_yaml_with_lines(text, label, all_documents=all_documents)


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
