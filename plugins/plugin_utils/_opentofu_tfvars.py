# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HCL tfvars, decrypted in memory, turned into plain Python values: ``parse_tfvars``.

A ``terraform.tfvars.enc`` is an HCL tfvars file encrypted whole by sops (binary format). Its decrypted
bytes are parsed here with python-hcl2 (imported on first use; only a repository with such a file needs
it) into names and literal values: strings (with HCL escapes resolved), numbers, bools, lists and maps.
A tfvars file holds constants only, so blocks, references, function calls and ``${...}`` templates are
refused. Messages name the file, the line and the variable, never a value: the file is secret.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import OpenTofuError

TFVARS_ENC_GLOB = "*.tfvars.enc"
HCL_PIP_PACKAGE = "python-hcl2"
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def _hcl2() -> Any:
    try:
        return importlib.import_module("hcl2")
    except ImportError:
        raise OpenTofuError(f"reading an encrypted tfvars file (*.tfvars.enc) needs the Python package {HCL_PIP_PACKAGE} on "
                            f"the controller: pip install {HCL_PIP_PACKAGE} (it is in the collection's requirements.txt)",
                            "secrets") from None


def parse_tfvars(plaintext: bytes, relpath: str) -> dict[str, Any]:
    """The variables of a decrypted HCL tfvars file, as plain values; an error never quotes the content."""
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise OpenTofuError(f"{relpath}: the decrypted content is not UTF-8 text; it must be an HCL tfvars file", "secrets") from None
    hcl2 = _hcl2()
    options = hcl2.SerializationOptions(with_comments=False, with_meta=False, explicit_blocks=True, preserve_heredocs=False,
                                        preserve_scientific_notation=False, strip_string_quotes=False)
    try:
        data = hcl2.loads(text, serialization_options=options)
    except Exception as exc:  # the parser's messages quote the content: only its position is kept
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        where = f":{line}:{column}" if isinstance(line, int) and line > 0 else ""
        raise OpenTofuError(f"{relpath}{where}: the decrypted content does not parse as HCL tfvars (name = value lines); "
                            f"fix it with `sops edit {relpath}`", "secrets") from None
    if not isinstance(data, Mapping):
        raise OpenTofuError(f"{relpath}: the decrypted content must be HCL tfvars (name = value lines)", "secrets")
    return {_key(name, relpath): _literal(value, relpath, _key(name, relpath)) for name, value in data.items()}


def _key(name: Any, relpath: str) -> str:
    text = str(name)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return _unquote(text[1:-1], relpath, "a key")
    return text


def _is_block(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value.get("__is_block__"))


def _literal(value: Any, relpath: str, name: str) -> Any:
    if _is_block(value) or (isinstance(value, list) and any(_is_block(item) for item in value)):
        raise OpenTofuError(f"{relpath}: `{name}` is a block; a tfvars file holds only `name = value` lines", "secrets")
    if isinstance(value, Mapping):
        return {_key(k, relpath): _literal(v, relpath, f"{name}.{_key(k, relpath)}") for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(item, relpath, f"{name}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return _unquote(value[1:-1], relpath, f"`{name}`")
        raise OpenTofuError(f"{relpath}: `{name}` is an expression, not a literal value; a tfvars file may hold only "
                            "strings, numbers, bools, lists and maps (no references or function calls)", "secrets")
    return value  # int, float, bool, None


def _unquote(body: str, relpath: str, what: str) -> str:
    """The string an HCL quoted template stands for, when it is a constant (escapes resolved, no interpolation)."""
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            code = body[index + 1]
            if code in _ESCAPES:
                out.append(_ESCAPES[code])
                index += 2
                continue
            width = {"u": 4, "U": 8}.get(code)
            digits = body[index + 2:index + 2 + width] if width else ""
            if width and len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits) \
                    and int(digits, 16) <= 0x10FFFF:
                out.append(chr(int(digits, 16)))
                index += 2 + width
                continue
            raise OpenTofuError(f"{relpath}: {what} holds an invalid escape sequence", "secrets")
        if char in "$%" and body[index + 1:index + 3] == char + "{":
            out.append(char + "{")  # $${ and %%{ stand for a literal ${ and %{
            index += 3
            continue
        if char in "$%" and body[index + 1:index + 2] == "{":
            raise OpenTofuError(f"{relpath}: {what} holds a template sequence ({char}{{...}}); a tfvars value must be a "
                                f"constant: write {char}{char}{{ for a literal {char}{{", "secrets")
        out.append(char)
        index += 1
    return "".join(out)


def tfvars_example(folder: Path, relfolder: str) -> bytes:
    """``terraform.tfvars.example``: every variable the folder's ``.tf`` files declare, in order, with no value.

    Descriptions become comments; a variable with a default is shown commented out (it is optional). Nothing
    here is secret: names and descriptions come from the committed configuration.
    """
    hcl2 = _hcl2()
    lines = ["# Generated by cluster.secrets (opentofu_command=example): every variable of the configuration, no values.",
             "# Copy it to terraform.tfvars (gitignored), fill it in, then encrypt it whole and commit only that:",
             "#   sops encrypt --input-type binary --output-type binary terraform.tfvars > terraform.tfvars.enc",
             "# configure and the infra playbook hand its values to OpenTofu as TF_VAR_* variables, never on disk.", ""]
    for path in sorted(folder.glob("*.tf")):
        try:
            data = hcl2.loads(path.read_text(encoding="utf-8"))
        except Exception:  # the parser's own messages are long; the binary reports syntax errors itself
            raise OpenTofuError(f"{relfolder}/{path.name} does not parse as HCL; fix it (`tofu validate` says where)",
                                "config") from None
        for block in data.get("variable", []) if isinstance(data, Mapping) else []:
            for name, declared in block.items():
                body = declared if isinstance(declared, Mapping) else {}
                description = str(_unquote_text(body.get("description", ""))).strip()
                lines += [f"# {line}" for line in description.splitlines()] if description else []
                kind = "sensitive: " if body.get("sensitive") is True else ""
                default = "default" in body
                lines.append(f"{'# ' if default else ''}{_unquote_text(name)} = \"\"  # {kind}"
                             f"{'optional (has a default)' if default else 'required'}")
    return ("\n".join(lines).rstrip("\n") + "\n").encode()


def _unquote_text(value: Any) -> str:
    text = str(value)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
