# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rendering a template tree in memory, following makejinja's conventions.

- delimiters ``#{ }#``, ``#% %#`` and comments ``#| ... #|`` unless makejinja.toml says otherwise;
- the ``.j2`` suffix is stripped, other files are copied as they are;
- several input folders are layered; for one output path the first input that has it wins
  (makejinja's rule), and the collection's built-in templates come last;
- ``exclude_patterns`` are matched like makejinja (``Path.match``);
- a plugin class (``filters()``, ``functions()``, ``data()``, ``tests()``) is loaded from
  ``import_paths`` / ``loaders``; ``makejinja`` itself need not be installed;
- an undefined variable is an error that names the template and line.

Nothing is written here: the result is a mapping of output paths to bytes.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import inspect
import ipaddress
import os
import sys
import tomllib
import traceback
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from ansible_collections.cluster.secrets.plugins.plugin_utils._quoting import hcl_quote, yaml_quote

BUILTIN_TEMPLATES = Path(__file__).resolve().parents[2] / "builtin_templates"
DEFAULT_DELIMITERS = {
    "block_start": "#%", "block_end": "%#",
    "variable_start": "#{", "variable_end": "}#",
    "comment_start": "#|", "comment_end": "#|",
}


@dataclass
class RenderSettings:
    inputs: list[Path]
    output: Path
    exclude_patterns: list[str] = field(default_factory=list)
    jinja_suffix: str = ".j2"
    keep_jinja_suffix: bool = False
    keep_empty: bool = False
    delimiters: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DELIMITERS))
    trim_blocks: bool = True
    lstrip_blocks: bool = True
    keep_trailing_newline: bool = True
    import_paths: list[Path] = field(default_factory=list)
    loaders: list[str] = field(default_factory=list)
    data_files: list[Path] = field(default_factory=list)
    config_file: Path | None = None


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


class StrictChainableUndefined(jinja2.ChainableUndefined, jinja2.StrictUndefined):
    """``a.b.c`` on something undefined stays undefined (``is defined`` and ``default`` work),
    but printing, iterating, comparing or testing it is an error."""

    __slots__ = ()


def settings_for(root: Path, builtin: bool = True, extra_inputs: list[Path] | None = None,
                 exclude_patterns: list[str] | None = None, delimiters: Mapping[str, str] | None = None) -> RenderSettings:
    """Settings for a repository: its makejinja.toml when present, else ``<root>/templates``."""
    root = Path(root)
    config_file = root / "makejinja.toml"
    settings = RenderSettings(inputs=[], output=root)
    if config_file.exists():
        settings.config_file = config_file
        with config_file.open("rb") as handle:
            try:
                config = tomllib.load(handle).get("makejinja", {})
            except tomllib.TOMLDecodeError as exc:
                raise RenderError([TemplateProblem("makejinja.toml", None, f"invalid TOML ({exc})")]) from None
        settings.inputs = [(root / p).resolve() for p in config.get("inputs", [])]
        settings.output = (root / config.get("output", ".")).resolve()
        settings.exclude_patterns = list(config.get("exclude_patterns", []))
        settings.jinja_suffix = config.get("jinja_suffix", ".jinja")
        settings.keep_jinja_suffix = bool(config.get("keep_jinja_suffix", False))
        settings.keep_empty = bool(config.get("keep_empty", False))
        settings.import_paths = [(root / p).resolve() for p in config.get("import_paths", [])]
        settings.loaders = list(config.get("loaders", [])) + list(config.get("plugins", []))
        settings.data_files = [(root / p).resolve() for p in config.get("data", [])]
        settings.delimiters.update({k: v for k, v in config.get("delimiter", {}).items() if k in DEFAULT_DELIMITERS})
        whitespace = config.get("whitespace", {})
        settings.trim_blocks = bool(whitespace.get("trim_blocks", True))
        settings.lstrip_blocks = bool(whitespace.get("lstrip_blocks", True))
        settings.keep_trailing_newline = bool(whitespace.get("keep_trailing_newline", True))
    elif (root / "templates").is_dir():
        settings.inputs = [(root / "templates").resolve()]
    settings.inputs = [Path(p) for p in extra_inputs or []] + settings.inputs
    if builtin:
        settings.inputs.append(BUILTIN_TEMPLATES)
    if exclude_patterns:
        settings.exclude_patterns += list(exclude_patterns)
    if delimiters:
        settings.delimiters.update(delimiters)
    return settings


def _b64encode(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: Any) -> str:
    return base64.b64decode(str(value)).decode("utf-8")


def _nthhost(value: str, query: int) -> str | bool:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return str(network[query]) if 0 <= query < network.num_addresses else False


BUILTIN_FILTERS = {"yaml_quote": yaml_quote, "hcl_quote": hcl_quote, "b64encode": _b64encode,
                   "b64decode": _b64decode, "nthhost": _nthhost}


def _makejinja_shim() -> types.ModuleType:
    """Stand-in for ``import makejinja`` so plugin classes load without makejinja installed."""
    module = types.ModuleType("makejinja")
    plugin = types.ModuleType("makejinja.plugin")

    class Plugin:  # pylint: disable=too-few-public-methods
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

    plugin.Plugin = Plugin  # type: ignore[attr-defined]
    plugin.AbstractLoader = Plugin  # type: ignore[attr-defined]
    for alias in ("Data", "MutableData", "Filters", "Functions", "Tests", "Policies", "Extensions", "PathFilters"):
        setattr(plugin, alias, Any)
    module.plugin = plugin  # type: ignore[attr-defined]
    return module


@contextlib.contextmanager
def _plugin_import_context(import_paths: list[Path], needed: bool) -> Iterator[None]:
    """Make plugin modules importable. ``import makejinja`` gets a small stand-in unless makejinja is already
    loaded: plugin classes only use it as a base class, and the real package takes a third of a second to import."""
    if not needed:
        yield
        return
    saved_path = list(sys.path)
    installed_shim = False
    if "makejinja.plugin" not in sys.modules:
        shim = _makejinja_shim()
        sys.modules["makejinja"] = shim
        sys.modules["makejinja.plugin"] = shim.plugin  # type: ignore[attr-defined]
        installed_shim = True
    sys.path[:0] = [str(p) for p in import_paths]
    try:
        yield
    finally:
        sys.path[:] = saved_path
        if installed_shim:
            sys.modules.pop("makejinja", None)
            sys.modules.pop("makejinja.plugin", None)


def _load_plugin(spec: str, env: jinja2.Environment, data: dict[str, Any]) -> None:
    module_name, _sep, class_name = spec.partition(":")
    sys.modules.pop(module_name, None)
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name or "Plugin")
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {}
    for name, value in (("env", env), ("environment", env), ("data", data), ("config", None)):
        if name in params:
            kwargs[name] = value
    plugin = cls(**kwargs)
    for attr in ("globals", "functions"):
        if hasattr(plugin, attr):
            env.globals.update(_named(getattr(plugin, attr)()))
    if hasattr(plugin, "data"):
        env.globals.update(plugin.data())
    if hasattr(plugin, "filters"):
        env.filters.update(_named(plugin.filters()))
    if hasattr(plugin, "tests"):
        env.tests.update(_named(plugin.tests()))
    if hasattr(plugin, "policies"):
        env.policies.update(plugin.policies())


def _named(items: Any) -> dict[str, Any]:
    if isinstance(items, Mapping):
        return dict(items)
    return {func.__name__: func for func in items}


def _template_files(settings: RenderSettings) -> list[tuple[Path, str]]:
    """(input root, relative path) of every file to render, first input winning per output path."""
    chosen: dict[str, tuple[Path, str]] = {}
    for base in settings.inputs:
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(base).as_posix()
            if any(path.match(pattern) or PurePosixPath(rel).match(pattern) for pattern in settings.exclude_patterns):
                continue
            out = output_name(rel, settings)
            chosen.setdefault(out, (base, rel))
    return [chosen[key] for key in sorted(chosen)]


def output_name(rel: str, settings: RenderSettings) -> str:
    if settings.jinja_suffix and rel.endswith(settings.jinja_suffix) and not settings.keep_jinja_suffix:
        return rel[: -len(settings.jinja_suffix)]
    return rel


def _error_line(exc: BaseException, filename: str) -> int | None:
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line


def _display_name(base: Path, rel: str, root: Path) -> str:
    if base == BUILTIN_TEMPLATES:
        return f"cluster.secrets:{rel}"
    try:
        return str((base / rel).relative_to(root))
    except ValueError:
        return str(base / rel)


def render_tree(settings: RenderSettings, data: Mapping[str, Any], root: Path, *,
                bytecode_dir: Path | None = None) -> dict[str, bytes]:
    """Render every template; return {output path relative to root: bytes}. Raise RenderError listing all problems.

    ``bytecode_dir`` caches compiled templates between runs (keyed by source checksum).
    """
    search = [str(p) for p in settings.inputs if p.is_dir()]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*search, str(root)]),
        block_start_string=settings.delimiters["block_start"],
        block_end_string=settings.delimiters["block_end"],
        variable_start_string=settings.delimiters["variable_start"],
        variable_end_string=settings.delimiters["variable_end"],
        comment_start_string=settings.delimiters["comment_start"],
        comment_end_string=settings.delimiters["comment_end"],
        trim_blocks=settings.trim_blocks,
        lstrip_blocks=settings.lstrip_blocks,
        keep_trailing_newline=settings.keep_trailing_newline,
        undefined=StrictChainableUndefined,
        autoescape=False,  # noqa: S701 - renders YAML/HCL, not HTML
        bytecode_cache=_bytecode_cache(bytecode_dir),
    )
    env.filters.update(BUILTIN_FILTERS)
    context = dict(data)
    env.globals.update(context)
    problems: list[TemplateProblem] = []
    rendered: dict[str, bytes] = {}
    previous_cwd = os.getcwd()
    os.chdir(root)
    try:
        with _plugin_import_context(settings.import_paths, needed=bool(settings.loaders)):
            for spec in settings.loaders:
                try:
                    _load_plugin(spec, env, context)
                except Exception as exc:  # the plugin is user code: report, don't crash
                    problems.append(TemplateProblem(f"plugin {spec}", None, f"{exc.__class__.__name__}: {exc}"))
            if problems:
                raise RenderError(problems)
            for base, rel in _template_files(settings):
                out_rel = output_name(rel, settings)
                out_path = (settings.output / out_rel).resolve()
                try:
                    key = out_path.relative_to(root.resolve()).as_posix()
                except ValueError:
                    problems.append(TemplateProblem(_display_name(base, rel, root), None, "renders outside the repository"))
                    continue
                source = base / rel
                if settings.jinja_suffix and rel.endswith(settings.jinja_suffix):
                    content = _render_one(env, base, rel, root, problems)
                    if content is None:
                        continue
                    if not content.strip() and not settings.keep_empty:
                        continue
                    rendered[key] = content.encode("utf-8")
                else:
                    rendered[key] = source.read_bytes()
    finally:
        os.chdir(previous_cwd)
    if problems:
        raise RenderError(problems)
    return rendered


def _bytecode_cache(directory: Path | None) -> jinja2.BytecodeCache | None:
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(directory))


def _render_one(env: jinja2.Environment, base: Path, rel: str, root: Path, problems: list[TemplateProblem]) -> str | None:
    name = _display_name(base, rel, root)
    filename = str(base / rel)
    try:
        return env.get_template(rel).render()
    except jinja2.TemplateSyntaxError as exc:
        problems.append(TemplateProblem(name, exc.lineno, f"syntax error: {exc.message}"))
    except jinja2.UndefinedError as exc:
        problems.append(TemplateProblem(name, _error_line(exc, filename), f"undefined variable: {exc.message}"))
    except Exception as exc:  # errors from filters and plugin functions
        problems.append(TemplateProblem(name, _error_line(exc, filename), f"{exc.__class__.__name__}: {exc}"))
    return None
