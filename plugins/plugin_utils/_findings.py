# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A problem found in the user's input, and how a list of them reads.

A finding says where (file, line, key path), what is wrong, and what to do next, and never holds a
value: every loader and checker of the collection reports through it.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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


def format_path(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_findings(findings: list[Finding], title: str = "cluster vars") -> str:
    errors = [f for f in findings if f.severity == "error"]
    head = f"{title}: {len(errors)} problem{'s' if len(errors) != 1 else ''} found"
    return "\n".join([head] + [f"  - {f.render()}" for f in findings])
