# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A repository's ``makejinja.toml``, read as makejinja 2.8 reads it.

``makejinja.toml`` is the contract between a cluster-template repository and its renderer:
configure honours every key makejinja reads, with makejinja's defaults, and names any key it
does not carry out (``exec_pre``, ``exec_post``, ``clean``) in a warning. A repository without
``makejinja.toml`` is rendered from ``<root>/templates`` with the cluster-template conventions.

Which cluster vars a repository has follows from the same file: its ``data`` entries (files
or folders, YAML/TOML/JSON, merged in order, later keys replacing earlier ones), else
``cluster.yaml`` + ``nodes.yaml``, else ``cluster.toml``.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._render import BUILTIN_TEMPLATES, DEFAULT_DELIMITERS, RenderSettings
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_problems import OWN_UNDEFINED, UNDEFINED_MODES, RenderError, TemplateProblem

CONFIG_NAME = "makejinja.toml"
DATA_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
# Keys of makejinja 2.8's [makejinja] table that configure carries out.
HONOURED_KEYS = frozenset({
    "inputs", "output", "include_patterns", "exclude_patterns", "jinja_suffix", "keep_jinja_suffix", "keep_empty",
    "copy_metadata", "data", "data_vars", "file_data", "loaders", "plugins", "import_paths", "extensions", "undefined",
    "force", "quiet", "delimiter", "prefix", "whitespace", "internal",
})
# Keys makejinja reads that configure deliberately does not carry out, and why.
UNSUPPORTED_KEYS = {
    "exec_pre": "configure does not run shell commands from makejinja.toml; run them yourself before configure",
    "exec_post": "configure does not run shell commands from makejinja.toml; run them yourself after configure",
    "clean": "configure never deletes the output folder (with output = \"./\" that is the repository); "
             "it rewrites only files whose content changed",
}
SUB_TABLE_KEYS = {
    "delimiter": frozenset(DEFAULT_DELIMITERS),
    "prefix": frozenset({"line_statement", "line_comment"}),
    "whitespace": frozenset({"trim_blocks", "lstrip_blocks", "newline_sequence", "keep_trailing_newline"}),
    "internal": frozenset({"optimized", "autoescape", "cache_size", "auto_reload", "enable_async"}),
}


@dataclass
class RepositoryLayout:
    """How a repository renders: settings for its own templates, where its cluster vars are, what to warn about."""

    settings: RenderSettings
    vars_files: list[Path]
    makejinja: bool
    warnings: list[str] = field(default_factory=list)


def _problem(message: str) -> RenderError:
    return RenderError([TemplateProblem(CONFIG_NAME, None, message)])


def _paths(root: Path, value: Any, key: str) -> list[Path]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _problem(f"makejinja.{key} must be a list of paths")
    return [(root / item).resolve() for item in value]


def _table(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key, {})
    if not isinstance(value, dict):
        raise _problem(f"makejinja.{key} must be a table")
    return value


def read_config(root: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The ``[makejinja]`` table of ``<root>/makejinja.toml`` (None without the file) and warnings about its keys."""
    path = root / CONFIG_NAME
    if not path.is_file():
        return None, []
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise _problem(f"invalid TOML ({exc}); fix the file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _problem(f"cannot read it ({exc.__class__.__name__})") from None
    config = document.get("makejinja", {})
    if not isinstance(config, dict):
        raise _problem("[makejinja] must be a table")
    warnings = []
    for key, value in config.items():
        if key in UNSUPPORTED_KEYS:
            if value:
                warnings.append(f"{CONFIG_NAME}: makejinja.{key} is not supported: {UNSUPPORTED_KEYS[key]}")
        elif key not in HONOURED_KEYS:
            warnings.append(f"{CONFIG_NAME}: makejinja.{key} is not a makejinja 2.8 setting; it is ignored")
        elif key in SUB_TABLE_KEYS and isinstance(value, dict):
            warnings += [f"{CONFIG_NAME}: makejinja.{key}.{sub} is not a makejinja 2.8 setting; it is ignored"
                         for sub in value if sub not in SUB_TABLE_KEYS[key]]
    return config, warnings


def _settings_from_config(root: Path, config: Mapping[str, Any]) -> RenderSettings:
    delimiter = _table(config, "delimiter")
    prefix = _table(config, "prefix")
    whitespace = _table(config, "whitespace")
    internal = _table(config, "internal")
    undefined = config.get("undefined", "default")
    if undefined not in UNDEFINED_MODES:
        raise _problem(f"makejinja.undefined = {undefined!r} is not one of {', '.join(sorted(UNDEFINED_MODES))}")
    file_data = _table(config, "file_data")
    data_vars = _table(config, "data_vars")
    settings = RenderSettings(
        inputs=_paths(root, config.get("inputs", []), "inputs"),
        output=(root / str(config.get("output", "."))).resolve(),
        include_patterns=[str(p) for p in config.get("include_patterns", ["**/*"])],
        exclude_patterns=[str(p) for p in config.get("exclude_patterns", [])],
        jinja_suffix=config.get("jinja_suffix", ".jinja") or "",
        keep_jinja_suffix=bool(config.get("keep_jinja_suffix", False)),
        keep_empty=bool(config.get("keep_empty", False)),
        copy_metadata=bool(config.get("copy_metadata", False)),
        force=bool(config.get("force", False)),
        undefined=undefined,
        delimiters={**DEFAULT_JINJA_DELIMITERS, **{k: str(v) for k, v in delimiter.items() if k in DEFAULT_DELIMITERS}},
        line_statement_prefix=prefix.get("line_statement"),
        line_comment_prefix=prefix.get("line_comment"),
        trim_blocks=bool(whitespace.get("trim_blocks", True)),
        lstrip_blocks=bool(whitespace.get("lstrip_blocks", True)),
        newline_sequence=str(whitespace.get("newline_sequence", "\n")),
        keep_trailing_newline=bool(whitespace.get("keep_trailing_newline", True)),
        optimized=bool(internal.get("optimized", True)),
        autoescape=bool(internal.get("autoescape", False)),
        enable_async=bool(internal.get("enable_async", False)),
        import_paths=_paths(root, config.get("import_paths", ["."]), "import_paths"),
        loaders=[str(p) for p in [*config.get("plugins", []), *config.get("loaders", [])]],
        extensions=[str(e) for e in config.get("extensions", [])],
        data_files=_paths(root, config.get("data", []), "data"),
        data_vars={str(k): v for k, v in data_vars.items()},
        file_data={str(k): _paths(root, v, f"file_data.{k}") for k, v in file_data.items()},
        config_file=root / CONFIG_NAME,
        search_root=False,
    )
    return settings


# makejinja's defaults are Jinja's ({{ }}, {% %}, {# #}); cluster-template's #{ }# table comes from its makejinja.toml.
DEFAULT_JINJA_DELIMITERS = {
    "block_start": "{%", "block_end": "%}", "variable_start": "{{", "variable_end": "}}",
    "comment_start": "{#", "comment_end": "#}",
}


def collect_data_files(paths: list[Path]) -> list[Path]:
    """makejinja's ``collect_files``: a folder stands for its non-hidden files, recursively, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += [f for f in sorted(path.glob("**/*")) if not f.name.startswith(".") and f.is_file()]
        elif path.is_file():
            files.append(path)
    return [f for f in files if f.suffix in DATA_SUFFIXES]


def _replace_vars_file(files: list[Path], stem: str, replacement: Path | None) -> list[Path]:
    if replacement is None:
        return files
    replaced = [replacement if f.stem == stem else f for f in files]
    return replaced if replacement in replaced else [*replaced, replacement]


def repository_layout(root: Path, *, cluster_file: Path | None = None, nodes_file: Path | None = None,
                      extra_inputs: list[Path] | None = None, exclude_patterns: list[str] | None = None) -> RepositoryLayout:
    """Everything about how ``root`` renders, from its makejinja.toml when it has one.

    ``cluster_file`` / ``nodes_file`` given explicitly take the place of the data entry of the same stem
    (``cluster.*`` / ``nodes.*``), or are added after the others.
    """
    root = Path(root).resolve()
    config, warnings = read_config(root)
    if config is not None:
        settings = _settings_from_config(root, config)
        # A data file that does not exist is kept: loading it reports "file not found" with what to do.
        files = [f for p in settings.data_files
                 for f in (collect_data_files([p]) if p.exists() else [p] if p.suffix in DATA_SUFFIXES else [])]
    else:
        settings = RenderSettings(inputs=[(root / "templates").resolve()] if (root / "templates").is_dir() else [],
                                  output=root, undefined=OWN_UNDEFINED, force=True, search_root=True)
        if (root / "cluster.yaml").exists() or not (root / "cluster.toml").exists():
            files = [root / "cluster.yaml"] + ([root / "nodes.yaml"] if (root / "nodes.yaml").exists() else [])
        else:
            files = [root / "cluster.toml"]
    files = _replace_vars_file(files, "cluster", Path(cluster_file).resolve() if cluster_file else None)
    if nodes_file is not None and Path(nodes_file).exists():
        files = _replace_vars_file(files, "nodes", Path(nodes_file).resolve())
    settings.inputs = [Path(p).resolve() for p in extra_inputs or []] + settings.inputs
    settings.exclude_patterns += list(exclude_patterns or [])
    return RepositoryLayout(settings, files, config is not None, warnings)


def builtin_settings(root: Path, exclude_patterns: list[str] | None = None) -> RenderSettings:
    """Settings for the collection's own templates (the infrastructure layer), rendered with cluster-template's
    conventions; ``exclude_patterns`` (configure's own option) apply to them too."""
    return RenderSettings(inputs=[BUILTIN_TEMPLATES], output=Path(root).resolve(), undefined=OWN_UNDEFINED, force=True,
                          search_root=False, exclude_patterns=list(exclude_patterns or []))
