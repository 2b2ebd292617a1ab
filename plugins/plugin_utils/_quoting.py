# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turning values into YAML and HCL literals that parse back to exactly the same value.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_YAML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}


def _yaml_char(char: str) -> str:
    if char in _YAML_ESCAPES:
        return _YAML_ESCAPES[char]
    code = ord(char)
    # C0/C1 controls, DEL, line/paragraph separators, BOM and non-characters are escaped:
    # YAML would otherwise fold them or reject them.
    if code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF):
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    if 0xD800 <= code <= 0xDFFF:
        raise ValueError("a lone surrogate cannot be written to YAML")
    return char


def yaml_quote(value: Any) -> str:
    """A YAML flow literal for ``value``: strings double-quoted, so `yes`, `null`, `0x10` stay strings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_yaml_char(c) for c in value) + '"'
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{yaml_quote(str(k))}: {yaml_quote(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_quote(v) for v in value) + "]"
    return yaml_quote(str(value))


_HCL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def hcl_quote(value: Any) -> str:
    """An HCL (OpenTofu/Terraform) literal for ``value``; template sequences ``${``/``%{`` are escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(hcl_quote(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{hcl_quote(str(k))} = {hcl_quote(v)}" for k, v in value.items()) + " }"
    text = str(value)
    out = []
    for index, char in enumerate(text):
        nxt = text[index + 1] if index + 1 < len(text) else ""
        if char in _HCL_ESCAPES:
            out.append(_HCL_ESCAPES[char])
        elif char in "$%" and nxt == "{":
            out.append(char + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
