# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster vars (cluster.yaml / nodes.yaml, cluster.toml, or a repository's makejinja ``data`` files), loaded and merged.

The files are read within the bounds of ``_data_files`` and merged as makejinja merges its data files; the
result keeps where each key came from (file and line), so every later finding can say where it is.
Validation lives in ``_vars_validation``, secrecy in ``_secrecy``.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._data_files import load_data_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._findings import Finding, KeyPath, format_findings


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
        data, lines, findings = load_data_file(path)
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
