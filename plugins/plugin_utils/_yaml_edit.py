# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Editing YAML files people wrote by hand (cluster.yaml, .sops.yaml) without losing their comments.

A ruamel.yaml round trip keeps comments, key order and quoting; the file's own indentation
and its ``---`` document start are detected and kept too.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import io
import re
from typing import Any

try:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError as RuamelYAMLError
    from ruamel.yaml.util import load_yaml_guess_indent
except ImportError:  # pragma: no cover - depends on the environment
    YAML = None
    RuamelYAMLError = ValueError


class YamlEditError(Exception):
    """The file cannot be edited safely; the message never quotes its content."""


class YamlDocument:
    """One YAML document loaded for editing and dumped back in the file's own style."""

    def __init__(self, text: str, label: str) -> None:
        if YAML is None:
            raise YamlEditError("the Python package ruamel.yaml is required to edit YAML without losing comments: pip install ruamel.yaml")
        try:
            _data, indent, block_seq_indent = load_yaml_guess_indent(text) if text.strip() else (None, 2, 0)
            self.yaml = YAML(typ="rt")
            self.yaml.preserve_quotes = True
            self.yaml.width = 4096
            offset = block_seq_indent or 0
            sequence = max(indent or 2, offset + 2)
            # ruamel guesses the indent from sequences ("  - x" reads as 4, offset 2); mappings use the step before the dash.
            mapping = sequence - offset if offset else sequence
            self.yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
            self.yaml.explicit_start = bool(re.match(r"(?:\s*#[^\n]*\n)*\s*---", text))
            self.data: Any = self.yaml.load(text)
        except RuamelYAMLError as exc:
            raise YamlEditError(f"{label}: cannot parse it ({exc.__class__.__name__}); fix it first") from None

    def dump(self) -> str:
        out = io.StringIO()
        self.yaml.dump(self.data, out)
        return out.getvalue()
