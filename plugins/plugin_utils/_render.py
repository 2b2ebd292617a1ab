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

import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ansible_collections.cluster.secrets.plugins.plugin_utils._data_files import load_data_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_plugins import (
    BUILTIN_FILTERS,
    display_path,
    load_plugin,
    plugin_file,
    plugin_import_context,
    plugin_problems,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_problems import (
    OWN_UNDEFINED,
    RenderError,
    TemplateProblem,
    UndefinedUse,
    recording_undefined,
)

BUILTIN_TEMPLATES = Path(__file__).resolve().parents[2] / "builtin_templates"
# cluster-template's delimiters: the default for a repository without makejinja.toml.
DEFAULT_DELIMITERS = {
    "block_start": "#%", "block_end": "%#",
    "variable_start": "#{", "variable_end": "}#",
    "comment_start": "#|", "comment_end": "#|",
}
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
class RenderResult:
    """Rendered files (output path relative to the root -> bytes) and what rendering noticed."""

    files: dict[str, bytes] = field(default_factory=dict)
    # File mode to give a written file; absent means: keep an existing file's mode, new files get 0666 & ~umask.
    modes: dict[str, int] = field(default_factory=dict)
    undefined: list[UndefinedUse] = field(default_factory=list)
    # Outputs that exist and are left alone because makejinja.toml does not set force = true.
    kept: list[str] = field(default_factory=list)
    # The process environment entries templates read through makejinja's ``env`` ("*": all of them).
    env_used: set[str] = field(default_factory=set)
    # The source files of the plugin classes loaded.
    plugin_files: set[str] = field(default_factory=set)


class RecordingEnviron(dict[str, str]):
    """The process environment as templates see it (makejinja's ``env``), noting which entries they read."""

    def __init__(self, environ: Mapping[str, str], used: set[str]) -> None:
        super().__init__(environ)
        self.used = used

    def __getitem__(self, key: Any) -> Any:
        self.used.add(str(key))
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.used.add(str(key))
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.used.add(str(key))
        return super().__contains__(key)

    def __iter__(self) -> Any:
        self.used.add("*")
        return super().__iter__()

    def keys(self) -> Any:
        self.used.add("*")
        return super().keys()

    def items(self) -> Any:
        self.used.add("*")
        return super().items()

    def values(self) -> Any:
        self.used.add("*")
        return super().values()


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
    return display_path(base / rel, root)


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
        env.globals["env"] = RecordingEnviron(os.environ, result.env_used)
    problems: list[TemplateProblem] = []
    path_filters: list[Any] = []
    previous_cwd = os.getcwd()
    os.chdir(root)
    try:
        with plugin_import_context(settings.import_paths, needed=bool(settings.loaders)):
            for spec in settings.loaders:
                try:
                    path_filters += load_plugin(spec, env, context)
                    result.plugin_files.add(plugin_file(spec))
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
        label = display_path(path, root)
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
