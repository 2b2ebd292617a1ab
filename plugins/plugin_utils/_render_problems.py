# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What rendering reports: problems at template:line, and every undefined value printed into a file.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import jinja2

# makejinja's ``undefined`` values, and ours for repositories without makejinja.toml and for built-in templates.
UNDEFINED_MODES = {
    "default": jinja2.Undefined, "chainable": jinja2.ChainableUndefined,
    "debug": jinja2.DebugUndefined, "strict": jinja2.StrictUndefined,
}
OWN_UNDEFINED = "strict-chainable"


@dataclass
class TemplateProblem:
    template: str
    line: int | None
    message: str

    def render(self) -> str:
        return f"{self.template}{':' + str(self.line) if self.line else ''}: {self.message}"


class RenderError(Exception):
    def __init__(self, problems: list[TemplateProblem]) -> None:
        self.problems = problems
        count = len(problems)
        super().__init__(
            f"templates: {count} problem{'s' if count != 1 else ''} found\n" + "\n".join(f"  - {p.render()}" for p in problems)
        )


@dataclass(frozen=True)
class UndefinedUse:
    """An undefined value printed into a rendered file: where, and what was missing (never a value)."""

    template: str
    line: int | None
    name: str

    def render(self) -> str:
        return f"{self.template}{':' + str(self.line) if self.line else ''}: {self.name}"


class StrictChainableUndefined(jinja2.ChainableUndefined, jinja2.StrictUndefined):
    """``a.b.c`` on something undefined stays undefined (``is defined`` and ``default`` work),
    but printing, iterating, comparing or testing it is an error."""

    __slots__ = ()


def _template_position() -> tuple[str, int | None]:
    """The template (name, line) whose code is running, found on the Python stack."""
    frame = sys._getframe(2)  # pylint: disable=protected-access
    while frame is not None:
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            return str(template.name), template.get_corresponding_lineno(frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    return "(template)", None


def _undefined_name(value: jinja2.Undefined) -> str:
    name = getattr(value, "_undefined_name", None)
    owner = getattr(value, "_undefined_obj", jinja2.utils.missing)
    if owner is jinja2.utils.missing:
        return str(name) if name is not None else "(unnamed value)"
    return f"{name} (attribute of a {type(owner).__name__} value)" if name is not None else "(item of a value)"


def recording_undefined(mode: str, sink: list[UndefinedUse]) -> type[jinja2.Undefined]:
    """The Undefined class for ``mode`` that also notes every undefined value printed, in ``sink``."""
    base: type[jinja2.Undefined] = StrictChainableUndefined if mode == OWN_UNDEFINED else UNDEFINED_MODES[mode]

    class RecordingUndefined(base):  # type: ignore[valid-type,misc]
        __slots__ = ()

        def __str__(self) -> str:
            text = super().__str__()
            template, line = _template_position()
            sink.append(UndefinedUse(template, line, _undefined_name(self)))
            return text

    return RecordingUndefined
