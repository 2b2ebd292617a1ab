# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A repository's makejinja plugins, loaded as makejinja loads them, and our own template filters.

Plugin classes are trusted code (they come with the repository); a failing one becomes one problem per line
of its message, never a traceback. ``makejinja`` itself need not be installed.

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
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jinja2

from ansible_collections.cluster.secrets.plugins.plugin_utils._quoting import hcl_quote, yaml_quote
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_problems import TemplateProblem

FOLLOW_ON_ERROR = "default factory uses validated data, but at least one validation error occurred"
# Import names whose pip package has another name.
PACKAGE_NAMES = {"yaml": "PyYAML", "ruamel": "ruamel.yaml", "dateutil": "python-dateutil", "git": "GitPython"}


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
def plugin_import_context(import_paths: list[Path], needed: bool) -> Iterator[None]:
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


def plugin_file(spec: str) -> str:
    """The source file of a loaded plugin class's module (empty when it has none)."""
    module = sys.modules.get(spec.split(":", 1)[0] if ":" in spec else spec.rpartition(".")[0])
    return str(getattr(module, "__file__", "") or "")


def load_plugin(spec: str, env: jinja2.Environment, data: dict[str, Any]) -> list[Any]:
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
        location = display_path(Path(exc.filename or spec), root)
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


def display_path(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
