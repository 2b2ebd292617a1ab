# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rendering a template tree in memory, exactly as makejinja does.

- the settings come from ``_makejinja`` (a repository's makejinja.toml, or cluster-template's
  conventions for a repository without one: ``#{ }#``, ``#% %#``, ``#| #|``, suffix ``.j2``);
- for one output path the first input that has it wins; excluded files are never parsed; files
  without the template suffix are copied byte for byte; empty output is not written;
- plugin classes load as makejinja loads them (``makejinja`` itself need not be installed), and a
  failing plugin becomes one problem per line of its message, never a traceback;
- templates run in Jinja's sandbox (no access to Python internals); plugin classes are trusted code;
- ``undefined`` follows makejinja's four modes (ours, for repositories without makejinja.toml, is
  strict but chainable), and every undefined value printed into a file is recorded with its
  template and line, so a silently empty secret can be reported.

Nothing is written here: the result maps output paths to bytes, with the modes makejinja would give.

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
from jinja2.sandbox import SandboxedEnvironment

from ansible_collections.cluster.secrets.plugins.plugin_utils._data_files import load_data_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._quoting import hcl_quote, yaml_quote

BUILTIN_TEMPLATES = Path(__file__).resolve().parents[2] / "builtin_templates"
# cluster-template's delimiters: the default for a repository without makejinja.toml.
DEFAULT_DELIMITERS = {
    "block_start": "#%", "block_end": "%#",
    "variable_start": "#{", "variable_end": "}#",
    "comment_start": "#|", "comment_end": "#|",
}
# makejinja's ``undefined`` values, and ours for repositories without makejinja.toml and for built-in templates.
UNDEFINED_MODES = {
    "default": jinja2.Undefined, "chainable": jinja2.ChainableUndefined,
    "debug": jinja2.DebugUndefined, "strict": jinja2.StrictUndefined,
}
OWN_UNDEFINED = "strict-chainable"
FOLLOW_ON_ERROR = "default factory uses validated data, but at least one validation error occurred"
# Import names whose pip package has another name.
PACKAGE_NAMES = {"yaml": "PyYAML", "ruamel": "ruamel.yaml", "dateutil": "python-dateutil", "git": "GitPython"}
# The data files makejinja reads, by suffix.
DATA_FILE_SUFFIXES = (".yaml", ".yml", ".toml", ".json")


@dataclass
class RenderSettings:
    inputs: list[Path]
    output: Path
    include_patterns: list[str] = field(default_factory=lambda: ["**/*"])
    exclude_patterns: list[str] = field(default_factory=list)
    jinja_suffix: str = ".j2"
    keep_jinja_suffix: bool = False
    keep_empty: bool = False
    copy_metadata: bool = False
    force: bool = True
    undefined: str = OWN_UNDEFINED
    delimiters: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DELIMITERS))
    line_statement_prefix: str | None = None
    line_comment_prefix: str | None = None
    trim_blocks: bool = True
    lstrip_blocks: bool = True
    newline_sequence: str = "\n"
    keep_trailing_newline: bool = True
    optimized: bool = True
    autoescape: bool = False
    enable_async: bool = False
    import_paths: list[Path] = field(default_factory=list)
    loaders: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)
    data_files: list[Path] = field(default_factory=list)
    data_vars: dict[str, Any] = field(default_factory=dict)
    file_data: dict[str, list[Path]] = field(default_factory=dict)
    config_file: Path | None = None
    # Repositories without makejinja.toml may include templates by their path from the repository root.
    search_root: bool = True


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


@dataclass
class RenderResult:
    """Rendered files (output path relative to the root -> bytes) and what rendering noticed."""

    files: dict[str, bytes] = field(default_factory=dict)
    # File mode to give a written file; absent means: keep an existing file's mode, new files get 0666 & ~umask.
    modes: dict[str, int] = field(default_factory=dict)
    undefined: list[UndefinedUse] = field(default_factory=list)
    # Outputs that exist and are left alone because makejinja.toml does not set force = true.
    kept: list[str] = field(default_factory=list)


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
    """Make plugin modules importable as makejinja does (import paths appended to ``sys.path``).

    ``import makejinja`` gets a small stand-in unless makejinja is already loaded: plugin classes only use
    it as a base class, and the real package takes a third of a second to import. Modules imported from
    the repository are forgotten afterwards, so nothing of one repository stays for the next.
    """
    if not needed:
        yield
        return
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    installed_shim = False
    if "makejinja.plugin" not in sys.modules:
        shim = _makejinja_shim()
        sys.modules["makejinja"] = shim
        sys.modules["makejinja.plugin"] = shim.plugin  # type: ignore[attr-defined]
        installed_shim = True
    sys.path.extend(str(p) for p in import_paths)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        roots = [str(p) for p in import_paths]
        for name in set(sys.modules) - saved_modules:
            origin = str(getattr(sys.modules.get(name), "__file__", "") or "")
            if origin and any(origin.startswith(r + os.sep) for r in roots):
                sys.modules.pop(name, None)
        if installed_shim:
            sys.modules.pop("makejinja", None)
            sys.modules.pop("makejinja.plugin", None)


def _import_class(spec: str) -> Any:
    """makejinja's ``import_string``: ``module:Class`` or ``module.Class``."""
    if ":" in spec:
        module_name, class_name = spec.split(":", 1)
    else:
        module_name, _sep, class_name = spec.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def _load_plugin(spec: str, env: jinja2.Environment, data: dict[str, Any]) -> list[Any]:
    """Load one plugin as makejinja does; return its path filters."""
    cls = _import_class(spec)
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
    if hasattr(plugin, "extensions"):
        for extension in plugin.extensions():
            env.add_extension(extension)
    if hasattr(plugin, "filters"):
        env.filters.update(_named(plugin.filters()))
    if hasattr(plugin, "tests"):
        env.tests.update(_named(plugin.tests()))
    if hasattr(plugin, "policies"):
        env.policies.update(plugin.policies())
    return list(plugin.path_filters()) if hasattr(plugin, "path_filters") else []


def _named(items: Any) -> dict[str, Any]:
    if isinstance(items, Mapping):
        return dict(items)
    return {func.__name__: func for func in items}


def _requires_python(root: Path) -> str:
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ""
    wanted = project.get("requires-python") if isinstance(project, dict) else None
    return f" (its pyproject.toml says requires-python {wanted})" if isinstance(wanted, str) else ""


def plugin_problems(spec: str, exc: BaseException, root: Path, import_paths: list[Path]) -> list[TemplateProblem]:
    """What a failing plugin means for the user, one problem per line of its message, never a traceback."""
    where = f"plugin {spec}"
    version = ".".join(str(v) for v in sys.version_info[:2])
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if not any((p / top).exists() or (p / f"{top}.py").exists() for p in import_paths):
            package = PACKAGE_NAMES.get(top, top)
            return [TemplateProblem(where, None, f"needs the Python package '{package}', which is not installed for "
                                                 f"{sys.executable}: run `{sys.executable} -m pip install {package}` "
                                                 "(the Python that runs ansible-playbook)")]
    if isinstance(exc, SyntaxError):
        location = _display_path(Path(exc.filename or spec), root)
        return [TemplateProblem(location, exc.lineno, f"Python {version} cannot read this plugin code ({exc.msg}); the repository's "
                                                      f"plugin needs a newer Python{_requires_python(root)}: run configure from a "
                                                      "virtualenv on Python 3.12 or later, e.g. `make venv PYTHON=python3.13`")]
    lines = [line.rstrip() for line in str(exc).splitlines() if line.strip()] or [exc.__class__.__name__]
    if len(lines) == 1:
        return [TemplateProblem(where, None, f"{exc.__class__.__name__}: {lines[0]}")]
    head = lines[0].rstrip(":")
    details = [line.strip() for line in lines[1:]]
    # pydantic's follow-on errors ("The default factory uses validated data, ...") only repeat that others occurred.
    details = [line for line in details if FOLLOW_ON_ERROR not in line] or details
    return [TemplateProblem(where, None, f"{head}: {line}") for line in details]


def _display_path(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _output_path(rel: PurePosixPath, settings: RenderSettings) -> PurePosixPath:
    """makejinja's ``generate_output_path``: the suffix goes when it is exactly the jinja suffix."""
    if settings.jinja_suffix and rel.suffix == settings.jinja_suffix and not settings.keep_jinja_suffix:
        return rel.with_suffix("")
    return rel


def output_name(rel: str, settings: RenderSettings) -> str:
    return _output_path(PurePosixPath(rel), settings).as_posix()


def _template_files(settings: RenderSettings, path_filters: list[Any]) -> list[tuple[Path, str]]:
    """(input folder, relative path) of every file to render, in makejinja's order; the first input wins per output."""
    chosen: dict[str, tuple[Path, str]] = {}
    for base in settings.inputs:
        if not base.is_dir():
            continue
        for pattern in settings.include_patterns:
            for path in sorted(base.glob(pattern)):
                if any(path.match(x) for x in settings.exclude_patterns) or any(not keep(path) for keep in path_filters):
                    continue
                if not path.is_file():
                    continue
                rel = path.relative_to(base).as_posix()
                chosen.setdefault(output_name(rel, settings), (base, rel))
    return list(chosen.values())


def _error_line(exc: BaseException, filename: str) -> int | None:
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == filename:
            line = lineno
    return line


def _display_name(base: Path, rel: str, root: Path) -> str:
    if base == BUILTIN_TEMPLATES:
        return f"cluster.secrets:{rel}"
    return _display_path(base / rel, root)


def _environment(settings: RenderSettings, root: Path, sink: list[UndefinedUse],
                 bytecode_dir: Path | None) -> jinja2.Environment:
    search = [str(p) for p in settings.inputs if p.is_dir()] + ([str(root)] if settings.search_root else [])
    # Template code runs in Jinja's sandbox: it cannot reach Python internals (``cycler.__init__.__globals__``).
    # The repository's plugin classes stay trusted code, as under makejinja: their functions are called as they are.
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(search),
        extensions=list(settings.extensions),
        block_start_string=settings.delimiters["block_start"],
        block_end_string=settings.delimiters["block_end"],
        variable_start_string=settings.delimiters["variable_start"],
        variable_end_string=settings.delimiters["variable_end"],
        comment_start_string=settings.delimiters["comment_start"],
        comment_end_string=settings.delimiters["comment_end"],
        line_statement_prefix=settings.line_statement_prefix,
        line_comment_prefix=settings.line_comment_prefix,
        trim_blocks=settings.trim_blocks,
        lstrip_blocks=settings.lstrip_blocks,
        newline_sequence=settings.newline_sequence,  # type: ignore[arg-type]
        keep_trailing_newline=settings.keep_trailing_newline,
        optimized=settings.optimized,
        undefined=recording_undefined(settings.undefined, sink),
        autoescape=settings.autoescape,
        enable_async=settings.enable_async,
        bytecode_cache=_bytecode_cache(bytecode_dir),
    )
    return env


def render_tree(settings: RenderSettings, data: Mapping[str, Any], root: Path, *,
                bytecode_dir: Path | None = None) -> RenderResult:
    """Render every template as makejinja would; raise RenderError listing all problems.

    Nothing is written: the result maps output paths (relative to ``root``) to bytes. ``data`` is what
    makejinja's ``data`` files hold; plugins may add to it. ``bytecode_dir`` caches compiled templates between runs (keyed by source checksum).
    """
    root = Path(root).resolve()
    result = RenderResult()
    try:
        env = _environment(settings, root, result.undefined, bytecode_dir)
    except (ImportError, AttributeError, TypeError, ValueError, AssertionError) as exc:
        raise RenderError([TemplateProblem("makejinja.toml", None, f"cannot set up Jinja ({exc.__class__.__name__}: {exc}); "
                                                                   "check extensions and the delimiter table")]) from None
    env.filters.update(BUILTIN_FILTERS)
    context = dict(data)
    env.globals.update(context)
    if settings.config_file is not None:
        env.globals["env"] = dict(os.environ)
    problems: list[TemplateProblem] = []
    path_filters: list[Any] = []
    previous_cwd = os.getcwd()
    os.chdir(root)
    try:
        with _plugin_import_context(settings.import_paths, needed=bool(settings.loaders)):
            for spec in settings.loaders:
                try:
                    path_filters += _load_plugin(spec, env, context)
                except Exception as exc:  # the plugin is user code: report, don't crash
                    problems += plugin_problems(spec, exc, root, settings.import_paths)
            if problems:
                raise RenderError(problems)
            done: set[str] = set()
            for base, rel in _template_files(settings, path_filters):
                _render_file(settings, env, base, rel, root, done, result, problems)
    finally:
        os.chdir(previous_cwd)
    if problems:
        raise RenderError(problems)
    return result


def _render_file(settings: RenderSettings, env: jinja2.Environment, base: Path, rel: str, root: Path,
                 done: set[str], result: RenderResult, problems: list[TemplateProblem]) -> None:
    # Lexically normalised, never through a link: a symbolic link in the output tree must not move the file elsewhere.
    out_path = Path(os.path.normpath(settings.output / output_name(rel, settings)))
    try:
        key = out_path.relative_to(root).as_posix()
    except ValueError:
        problems.append(TemplateProblem(_display_name(base, rel, root), None, "renders outside the repository"))
        return
    if key in done:
        return
    done.add(key)
    source = base / rel
    if not settings.force and out_path.exists():
        result.kept.append(key)
        return
    is_template = not settings.jinja_suffix or PurePosixPath(rel).suffix == settings.jinja_suffix
    if not is_template:
        result.files[key] = source.read_bytes()
        result.modes[key] = source.stat().st_mode & 0o7777
        return
    content = _render_one(env, base, rel, root, problems, settings.file_data.get(rel))
    if content is None or (not content.strip() and not settings.keep_empty):
        return
    try:
        result.files[key] = content.encode("utf-8")
    except UnicodeEncodeError:
        problems.append(TemplateProblem(_display_name(base, rel, root), None,
                                        "renders a character no file can store (a lone surrogate, e.g. from a plugin)"))
        return
    if settings.copy_metadata:
        result.modes[key] = source.stat().st_mode & 0o7777


def _bytecode_cache(directory: Path | None) -> jinja2.BytecodeCache | None:
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(directory))


def _file_data(paths: list[Path] | None, root: Path, problems: list[TemplateProblem]) -> dict[str, Any] | None:
    """makejinja's per-template data files (``file_data``), merged as makejinja merges them, each read within the
    bounds of the vars loader (size, aliases, nesting; never a FIFO or a device). None, with a problem for each file
    that cannot be used (its path and line), when one cannot."""
    data: dict[str, Any] = {}
    usable = True
    for path in paths or []:
        if not path.exists() or path.suffix not in DATA_FILE_SUFFIXES:
            continue  # makejinja skips a missing or unsupported file as well
        label = _display_path(path, root)
        document, _lines, findings = load_data_file(path, label, all_documents=True)
        if document is None:
            # Only what made the file unusable: a key defined twice is taken as makejinja takes it, the last one.
            found = [TemplateProblem(label, f.line, f"file_data: {f.message}" + (f" Hint: {f.hint}." if f.hint else "")) for f in findings]
            problems += [problem for problem in found if problem not in problems]  # once, however many templates use it
            usable = False
        elif not isinstance(document, dict):
            problems.append(TemplateProblem(label, 1, "file_data: the top level must be a mapping of keys to values"))
            usable = False
        else:
            data |= document
    return data if usable else None


def _render_one(env: jinja2.Environment, base: Path, rel: str, root: Path, problems: list[TemplateProblem],
                file_data: list[Path] | None = None) -> str | None:
    name = _display_name(base, rel, root)
    filename = str(base / rel)
    context = _file_data(file_data, root, problems)
    if context is None:
        return None
    try:
        return env.get_template(rel).render(context)
    except jinja2.TemplateSyntaxError as exc:
        problems.append(TemplateProblem(name, exc.lineno, f"syntax error: {exc.message}"))
    except jinja2.UndefinedError as exc:
        problems.append(TemplateProblem(name, _error_line(exc, filename), f"undefined variable: {exc.message}"))
    except Exception as exc:  # errors from filters and plugin functions
        problems.append(TemplateProblem(name, _error_line(exc, filename), f"{exc.__class__.__name__}: {exc}"))
    return None
