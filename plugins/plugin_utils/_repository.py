# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The configure engine: validate, render, encrypt, and write only what changed.

``plan()`` does all the work that can fail (validation, rendering, YAML checks,
age key and .sops.yaml checks, decryption of existing secrets, encryption of
new ones) without touching the repository. ``apply()`` then writes the planned
files atomically. So bad input stops before any file is written, and check mode
is simply ``plan()`` without ``apply()``.

A secret file is rewritten only when its decrypted data differs from the newly
rendered data (or its recipients changed). To avoid decrypting every secret on
every run, a small cache remembers, per file, the SHA-256 of the encrypted bytes
and an HMAC of the rendered plaintext keyed with a hash of the age identities:
it reveals nothing to someone without the age key, and a mismatch only means
falling back to decrypt-and-compare.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import configparser
import contextlib
import copy
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils import _cluster_vars as _cluster_vars_module
from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError, AgeKeys, find_age_keys
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import (
    SCHEMA_PATH,
    ClusterVars,
    ClusterVarsError,
    Finding,
    format_findings,
    load_and_validate,
    load_cluster_vars,
    load_schema,
    scrub,
    secret_fragments,
    secret_paths_by_value,
    secret_values,
    with_defaults,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._cue import SCHEMA_DIR as CUE_SCHEMA_DIR
from ansible_collections.cluster.secrets.plugins.plugin_utils._cue import run_cue
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import (
    atomic_write,
    atomic_write_many,
    private_dir,
    private_tempfile,
    stale_temp_files,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._gitignore import ignored_paths
from ansible_collections.cluster.secrets.plugins.plugin_utils._guard import check_secret_overwrites
from ansible_collections.cluster.secrets.plugins.plugin_utils._makejinja import RepositoryLayout, builtin_settings, repository_layout
from ansible_collections.cluster.secrets.plugins.plugin_utils._render import (
    RenderError,
    RenderResult,
    TemplateProblem,
    UndefinedUse,
    render_tree,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import (
    SECRET_FILE_PATTERN,
    SOPS_CONFIG_NAME,
    SOPS_CONFIG_NAMES,
    SopsTool,
    SopsToolError,
    check_rule_patterns,
    default_sops_config,
    encrypted_metadata,
    file_recipients,
    find_sops_binary,
    parallel_map,
    rule_fingerprint,
    rule_for,
    rule_recipients,
    sops_format,
)

try:
    _YamlLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _YamlLoader = yaml.SafeLoader


# A secret this long or longer is looked for anywhere in a plain file, in every encoded form and line by line;
# a shorter one only as a whole token, and then as a warning (four characters match by chance too often).
LEAK_MIN_LENGTH = 6
SHORT_SECRET_MIN_LENGTH = 3


class ConfigureError(Exception):
    """Anything that stops configure before it writes; the message names files and keys, never values."""


@dataclass
class ConfigureOptions:
    root: Path
    # Explicit vars files; None means: what makejinja.toml's data names, else cluster.yaml + nodes.yaml, else cluster.toml.
    cluster_file: Path | None = None
    nodes_file: Path | None = None
    age_key_file: str | None = None
    sops_binary: str | None = None
    secret_pattern: str = SECRET_FILE_PATTERN
    builtin_templates: bool = True
    extra_inputs: list[Path] = field(default_factory=list)
    exclude_patterns: list[str] = field(default_factory=list)
    known_keys: list[str] = field(default_factory=list)
    cache: bool = True
    cache_dir: Path | None = None
    environ: Mapping[str, str] | None = None
    allow_secret_overwrite: bool = False
    # "warn": undefined values printed into files are listed in one warning; "strict": they stop configure.
    undefined: str = "warn"
    # Seconds to wait for another run that holds the repository.
    lock_timeout: float = 120.0
    _layout: RepositoryLayout | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.cluster_file = Path(self.cluster_file) if self.cluster_file else None
        self.nodes_file = Path(self.nodes_file) if self.nodes_file else None

    def layout(self) -> RepositoryLayout:
        """How the repository renders and where its cluster vars are (read once)."""
        if self._layout is None:
            self._layout = repository_layout(self.root, cluster_file=self.cluster_file, nodes_file=self.nodes_file,
                                             extra_inputs=self.extra_inputs, exclude_patterns=self.exclude_patterns)
        return self._layout

    @property
    def vars_files(self) -> list[Path]:
        return self.layout().vars_files

    def vars_files_or_guess(self) -> list[Path]:
        """The vars files, or the usual names when makejinja.toml cannot be read (for scrubbing error messages)."""
        try:
            return self.vars_files
        except RenderError:
            return [p for p in (self.root / "cluster.yaml", self.root / "nodes.yaml", self.root / "cluster.toml") if p.exists()]


@dataclass
class PlannedFile:
    path: str
    secret: bool
    state: str  # created | changed | unchanged
    content: bytes | None = None
    before: bytes | None = None
    changed_keys: list[str] = field(default_factory=list)
    cache_entry: dict[str, str] | None = None
    mode: int | None = None
    # A plain (not *.sops.*) file that holds a secret value and that git ignores: written 0600.
    plaintext_ignored: bool = False
    # Parsed plaintext of the existing secret file, kept in memory only for files that change.
    previous: Any = None
    rendered: Any = None


@dataclass
class Plan:
    options: ConfigureOptions
    cluster: ClusterVars
    files: list[PlannedFile]
    warnings: list[str] = field(default_factory=list)
    cache_path: Path | None = None
    cache_data: dict[str, Any] = field(default_factory=dict)
    # Undefined values printed into files (template:line, name), and outputs left alone (force = false).
    undefined: list[UndefinedUse] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    # Temporary files an interrupted run left beside the files this plan renders (removed by apply).
    stale_temps: list[Path] = field(default_factory=list)

    def paths(self, state: str, secret: bool | None = None) -> list[str]:
        return [f.path for f in self.files if f.state == state and (secret is None or f.secret == secret)]

    @property
    def changed(self) -> bool:
        return any(f.state != "unchanged" for f in self.files)

    def summary(self) -> dict[str, Any]:
        return {
            "created": self.paths("created"),
            "updated": self.paths("changed"),
            "unchanged": len(self.paths("unchanged")),
            "secrets_created": self.paths("created", True),
            "secrets_updated": self.paths("changed", True),
            "secrets_unchanged": len(self.paths("unchanged", True)),
            "plaintext_gitignored": sorted(f.path for f in self.files if f.plaintext_ignored),
            "undefined_printed": [use.render() for use in self.undefined],
            "kept": list(self.kept),
        }

    def diff(self) -> list[dict[str, str]]:
        diffs = []
        secrets = secret_values(self.cluster.data)
        for item in self.files:
            if item.state == "unchanged" or (item.path == SOPS_CONFIG_NAME and item.content is None):
                continue
            if item.secret:
                before = "" if item.state == "created" else "(encrypted; keys unchanged are not shown)\n"
                after = "".join(f"{k}\n" for k in item.changed_keys) or "(re-encrypted for new recipients)\n"
                diffs.append({
                    "before_header": f"{item.path} (encrypted)", "after_header": f"{item.path} (encrypted): keys changed",
                    "before": before, "after": after,
                })
            elif item.plaintext_ignored:
                hidden = "(plaintext, gitignored: holds secret values, not shown)\n"
                diffs.append({
                    "before_header": item.path, "after_header": f"{item.path} (plaintext, gitignored, 0600)",
                    "before": "" if item.before is None else hidden, "after": hidden,
                })
            else:
                # A plain file holds no secret (configure checked); masking short values too costs nothing.
                diffs.append({
                    "before_header": item.path, "after_header": item.path,
                    "before": scrub(_text_for_diff(item.before), secrets), "after": scrub(_text_for_diff(item.content), secrets),
                })
        return diffs


def _text_for_diff(content: bytes | None) -> str:
    if content is None:
        return ""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return "(binary content)\n"


# ---------------------------------------------------------------------------- comparison helpers


def parse_plaintext(content: bytes, fmt: str) -> Any:
    if fmt == "yaml":
        return list(yaml.load_all(content, Loader=_YamlLoader))
    if fmt == "json":
        return json.loads(content)
    if fmt == "dotenv":
        pairs = {}
        for line in content.decode("utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _sep, value = line.partition("=")
                pairs[key.strip()] = value
        return pairs
    if fmt == "ini":
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(content.decode("utf-8"))
        return {section: dict(parser[section]) for section in parser.sections()}
    return content


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or ({prefix: {}} if prefix else {})
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out or ({prefix: []} if prefix else {})
    return {prefix: value}


def changed_key_paths(before: Any, after: Any, fmt: str) -> list[str]:
    """Key paths whose values differ (names only, never values)."""
    if fmt == "binary":
        return ["(file content)"] if before != after else []
    flat_before, flat_after = flatten(_single_document(before)), flatten(_single_document(after))
    keys = set(flat_before) | set(flat_after)
    return sorted(k or "(document)" for k in keys if flat_before.get(k, _MISSING) != flat_after.get(k, _MISSING))


def _single_document(value: Any) -> Any:
    """A parsed YAML stream of one document is compared as that document; nothing at all as empty."""
    if value is None:
        return {}
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


_MISSING = object()


# ---------------------------------------------------------------------------- cache


def _cache_key(keys: AgeKeys) -> bytes | None:
    if not keys.identities:
        return None
    material = "\n".join(sorted(i.secret for i in keys.identities)).encode()
    return hashlib.sha256(b"cluster.secrets plaintext cache v1\0" + material).digest()


def _cache_path(options: ConfigureOptions) -> Path | None:
    if not options.cache:
        return None
    environ = options.environ if options.environ is not None else os.environ
    base = options.cache_dir or Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cluster.secrets"
    return Path(base) / (hashlib.sha256(str(options.root).encode()).hexdigest()[:32] + ".json")


def _load_cache(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == 1 else {}


def _mac(key: bytes, plaintext: bytes, fingerprint: str) -> str:
    return hmac.new(key, plaintext + b"\0" + fingerprint.encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------- planning


def is_secret_file(path: str, secret_re: re.Pattern[str]) -> bool:
    """A rendered file to encrypt: it matches the secret pattern and is not the sops configuration itself."""
    return bool(secret_re.search(path)) and PurePosixPath(path).name not in SOPS_CONFIG_NAMES


def load_template_data(options: ConfigureOptions, validated: bool = False) -> tuple[ClusterVars, dict[str, Any]]:
    """The cluster vars and the data templates see.

    In a repository with makejinja.toml, templates see exactly makejinja's data (the data files merged,
    then ``data_vars``); only the collection's own keys are validated. Elsewhere the whole schema applies
    and its defaults and derived values are filled in. ``validated`` skips the checks for input that passed
    them before.
    """
    layout = options.layout()
    if validated:
        cluster = load_cluster_vars(layout.vars_files)
        if cluster.errors:
            raise ClusterVarsError(cluster.findings)
    else:
        cluster = load_and_validate(layout.vars_files, known_keys=options.known_keys, own_only=layout.makejinja)
        findings, warnings = run_cue(options.root, layout.vars_files, options.environ)
        layout.warnings += warnings
        if findings:
            for finding in findings:
                finding.file, finding.line = finding.file or None, finding.line or cluster.locate(finding.path)[1]
            raise ClusterVarsError(findings)
    if not layout.makejinja:
        return cluster, with_defaults(cluster.data, load_schema())
    data = copy.deepcopy(cluster.data)
    for dotted, value in layout.settings.data_vars.items():
        here = data
        *parents, last = dotted.split(".")
        for part in parents:
            here = here.setdefault(part, {})
        here[last] = value
    return cluster, data


INFRASTRUCTURE_KEYS = ("cf_account_id", "tfstate_password", "tfstate_url", "proxmox_api_url", "proxmox_node",
                       "proxmox_api_token_id", "proxmox_api_token_secret")


BUILTIN_LAYER_FILES = ("infrastructure/secrets.sops.yaml", "infrastructure/tofu/backend.tf")


def wants_builtin_infrastructure(cluster: ClusterVars, root: Path, rendered: Iterable[str]) -> bool:
    """The built-in OpenTofu layer belongs where the cluster vars set infrastructure fields (or an earlier run
    wrote it), and never in a repository that renders an infrastructure layer of its own (its own secrets file
    or backend). A repository that only replaces some built-in files (``providers.tf``) keeps the others."""
    if set(BUILTIN_LAYER_FILES) & set(rendered):
        return False
    configured = any(cluster.data.get(key) not in (None, "") for key in INFRASTRUCTURE_KEYS)
    return configured or any((root / path).is_file() for path in BUILTIN_LAYER_FILES)


def check_rendered_yaml(rendered: Mapping[str, bytes], secret_re: re.Pattern[str]) -> list[Finding]:
    findings = []
    for path, content in rendered.items():
        if sops_format(path) != "yaml":
            continue
        try:
            # Syntax only: a tag PyYAML cannot construct (such as the plain scalar `=`) is still valid YAML.
            for _node in yaml.compose_all(content, Loader=_YamlLoader):
                pass
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or "invalid YAML"
            if secret_re.search(path):
                problem = re.sub(r"'[^']*'|\"[^\"]*\"", "…", problem)
            findings.append(Finding((), f"rendered YAML does not parse ({problem}, column {mark.column + 1 if mark else '?'})",
                                    path, mark.line + 1 if mark else None,
                                    "check the template; insert values with the yaml_quote filter"))
        except yaml.YAMLError as exc:
            findings.append(Finding((), f"rendered YAML does not parse ({exc.__class__.__name__})", path, None))
    return findings


def find_plaintext_leaks(rendered: Mapping[str, bytes], secret_re: re.Pattern[str], cluster: ClusterVars) -> dict[str, Finding]:
    """Plain files (not encrypted) that hold a secret value from the cluster vars, by path.

    A value of LEAK_MIN_LENGTH or more is found as is, escaped, URL- or HTML-encoded, base64-encoded, or line by
    line (an indented multi-line key); a shorter one only as a whole token, reported as a warning finding.
    """
    schema = load_schema()
    names_of = secret_paths_by_value(cluster.data, schema)
    long_values = {v: secret_fragments(v, LEAK_MIN_LENGTH) for v in names_of if len(v.strip()) >= LEAK_MIN_LENGTH}
    short_values = {v: re.compile(r"(?<![\w.-])" + re.escape(v.strip()) + r"(?![\w.-])")
                    for v in names_of if SHORT_SECRET_MIN_LENGTH <= len(v.strip()) < LEAK_MIN_LENGTH}
    findings = {}
    for path, content in rendered.items():
        if is_secret_file(path, secret_re):
            continue
        text = content.decode("utf-8", errors="replace")
        names: list[str] = []
        first_line: int | None = None
        for value, fragments in long_values.items():
            found = next((form for form in fragments if form in text), None)
            if found is not None:
                names += names_of[value]
                line = text[: text.index(found)].count("\n") + 1
                first_line = line if first_line is None else min(first_line, line)
        short = sorted({name for value, pattern in short_values.items() if pattern.search(text) for name in names_of[value]})
        if names:
            findings[path] = Finding((), f"contains the value of {', '.join(sorted(set(names)))} (as is, escaped, encoded or "
                                         "line by line) but is not a secret file and git does not ignore it, so it would be "
                                         "committed unencrypted", path, first_line,
                                     "name the file *.sops.* so it is encrypted, add its path to .gitignore if it must stay "
                                     "plaintext on this machine only, or do not put the secret there")
        elif short:
            findings[path] = Finding((), f"contains a word equal to the (short) value of {', '.join(short)}; if that is the "
                                         "secret, it would be committed unencrypted", path, None,
                                     "a secret this short is weak: use a longer one, or check the file", severity="warning")
    return findings


def check_plaintext_leaks(rendered: Mapping[str, bytes], secret_re: re.Pattern[str], cluster: ClusterVars,
                          root: Path | None = None) -> tuple[list[Finding], set[str]]:
    """Refuse a secret value in a plain file git would commit; allow it where git ignores the path.

    Returns the findings (errors) and the paths that may stay plaintext because git ignores them.
    """
    leaks = find_plaintext_leaks(rendered, secret_re, cluster)
    allowed = ignored_paths(root, list(leaks)) if root is not None and leaks else set()
    return [finding for path, finding in sorted(leaks.items()) if path not in allowed], {
        path for path in allowed if leaks[path].severity == "error"}


def _new_file_mode() -> int:
    """The mode makejinja's plain ``open(path, "w")`` gives a new file: 0666 less the umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def plan(options: ConfigureOptions) -> Plan:
    root = options.root
    if not root.is_dir():
        raise ConfigureError(f"cluster_root {root} is not a directory")
    layout = options.layout()
    try:
        keys = find_age_keys(root, options.age_key_file, options.environ)
    except AgeKeyError as exc:
        raise ConfigureError(str(exc)) from None
    cache_path = _cache_path(options)
    cache = _load_cache(cache_path)
    validation = _validation_mac(_cache_key(keys), options)
    cluster, data = load_template_data(options, validated=validation is not None and cache.get("validated") == validation)
    try:
        secret_re = re.compile(options.secret_pattern)
    except re.error as exc:
        raise ConfigureError(f"secret_pattern {options.secret_pattern!r} is not a valid regular expression ({exc})") from None
    bytecode = cache_path.parent / "bytecode" if cache_path else None
    if cache_path is not None:
        with contextlib.suppress(OSError):
            private_dir(cache_path.parent)
    try:
        result = render_tree(layout.settings, data, root, bytecode_dir=bytecode)
    except RenderError as exc:
        raise RenderError([locate_plugin_problem(problem, cluster) for problem in exc.problems]) from None
    if options.builtin_templates and wants_builtin_infrastructure(cluster, root, [*result.files, *result.kept]):
        builtin = render_tree(builtin_settings(root, options.exclude_patterns), with_defaults(cluster.data, load_schema()),
                              root, bytecode_dir=bytecode)
        for path, content in builtin.files.items():
            if path not in result.files and path not in result.kept:  # the repository's own file wins
                result.files[path] = content
                if path in builtin.modes:
                    result.modes[path] = builtin.modes[path]
    if result.undefined and options.undefined == "strict":
        raise ConfigureError(undefined_message(result.undefined, strict=True))
    problems = check_targets(root, [*result.files, SOPS_CONFIG_NAME])
    if problems:
        raise ConfigureError(format_findings(problems, "rendered files"))
    planned = _plan_rendered(options, cluster, result, secret_re, cache_path, cache, keys)
    planned.warnings[:0] = layout.warnings + readable_vars_warnings(layout.vars_files, cache, secret_values(cluster.data))
    planned.stale_temps = stale_temp_files(root / f.path for f in planned.files)
    if planned.stale_temps:
        names = ", ".join(str(p.relative_to(root)) for p in planned.stale_temps)
        planned.warnings.append(f"{len(planned.stale_temps)} temporary file(s) left by an interrupted run "
                                f"(configure removes them when it writes, as nothing else uses them): {names}")
    planned.cache_data["vars_modes"] = {str(p): _mode(p) for p in layout.vars_files if _mode(p) is not None}
    planned.undefined, planned.kept = result.undefined, result.kept
    if result.undefined:
        planned.warnings.append(undefined_message(result.undefined, strict=False))
    if result.kept:
        planned.warnings.append(f"{len(result.kept)} existing file(s) left as they are because makejinja.toml does not set "
                                "force = true (makejinja would not overwrite them either)")
    planned.cache_data["validated"] = validation
    return planned


_PLUGIN_FINDING = re.compile(r"^(?P<head>.*?): (?P<loc>[A-Za-z_][\w-]*(?:(?:\.|\[)[\w-]+\]?)*): (?P<message>.+)$")


def locate_plugin_problem(problem: TemplateProblem, cluster: ClusterVars) -> TemplateProblem:
    """A plugin's validation error that names a key path (``nodes.0.mac_addr: ...``) is shown at that key's file and line."""
    if not problem.template.startswith("plugin "):
        return problem
    match = _PLUGIN_FINDING.match(problem.message)
    if match is not None:
        file, line = _locate_dotted(match["loc"], cluster)
        if line is not None:
            return TemplateProblem(str(file), line, f"{match['loc']}: {match['message']} (found by the repository's {problem.template})")
    # Else the first key path the message names, e.g. "address ... is used by both gateways.internal and nodes[0].address".
    head, _sep, message = problem.message.partition(": ")
    for candidate in _KEY_PATH.findall(message if _sep else head):
        file, line = _locate_dotted(candidate, cluster)
        if line is not None:
            return TemplateProblem(str(file), line, f"{message or head} (found by the repository's {problem.template})")
    return problem


_KEY_PATH = re.compile(r"\b[A-Za-z_]\w*(?:\.\w+|\[\d+\])+(?:\.\w+)*")


def _locate_dotted(dotted: str, cluster: ClusterVars) -> tuple[str | None, int | None]:
    path = tuple(int(part) if part.isdigit() else part for part in re.split(r"[.\[\]]+", dotted) if part)
    if not path or path[0] not in cluster.data:
        return None, None
    return cluster.locate(path)


def check_targets(root: Path, paths: Iterable[str]) -> list[Finding]:
    """Every path configure will write must be a regular file or free; a folder, link, pipe or device in the way
    stops the run before anything is written (never halfway through the renames)."""
    findings = []
    for rel in sorted(set(paths)):
        target = root / rel
        for parent in reversed(target.relative_to(root).parents):
            folder = root / parent
            if folder != root and (folder.is_symlink() or (folder.exists() and not folder.is_dir())):
                findings.append(Finding((), f"{parent} is in the way: it is not a folder", rel, None,
                                        "move it aside so the rendered file can be written"))
                break
        else:
            if target.is_symlink() or (target.exists() and not target.is_file()):
                kind = "a symbolic link" if target.is_symlink() else "a folder" if target.is_dir() else "not a regular file"
                findings.append(Finding((), f"the path to write is {kind}", rel, None,
                                        "move it aside so the rendered file can be written; configure writes no file through a link"))
    return findings


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


def readable_vars_warnings(vars_files: Iterable[Path], cache: Mapping[str, Any], secrets: Iterable[str]) -> list[str]:
    """Cluster vars files that hold secrets and that others may read: said once (not again while the mode stays)."""
    seen = cache.get("vars_modes", {}) if isinstance(cache.get("vars_modes"), dict) else {}
    values = [v for v in secrets if len(v) >= LEAK_MIN_LENGTH]
    warnings = []
    for path in vars_files:
        mode = _mode(path)
        if mode is None or not mode & 0o077 or seen.get(str(path)) == mode or not path.is_file():
            continue
        text = path.read_bytes()[: 4 * 1024 * 1024].decode("utf-8", errors="replace")
        if any(value in text for value in values):
            warnings.append(f"{path.name} holds secrets but is readable by {'others' if mode & 0o007 else 'its group'} "
                            f"(mode {mode:04o}): run `chmod 600 {path}`")
    return warnings


def undefined_message(uses: list[UndefinedUse], strict: bool) -> str:
    """One message listing every undefined value printed into a file (names and places, never values)."""
    unique = list(dict.fromkeys(use.render() for use in uses))
    head = (f"{len(unique)} undefined value(s) were printed into rendered files as empty text"
            if not strict else f"{len(unique)} undefined value(s) would be printed into rendered files")
    tail = ("set them in the cluster vars, or give the template a default; configure_undefined=strict makes this an error"
            if not strict else "set them in the cluster vars or give the templates a default (configure_undefined=strict is set)")
    return f"{head}: " + "; ".join(unique) + f". Hint: {tail}."


def _validation_mac(key: bytes | None, options: ConfigureOptions) -> str | None:
    """A keyed fingerprint of everything validation depends on: the vars files, known_keys, the schema and the rules.

    When it matches the one saved by the last successful run, the input is known to be valid and the
    (comparatively slow) JSON Schema validation is skipped. Keyed like the plaintext cache, it reveals nothing.
    """
    if key is None:
        return None
    digest = hmac.new(key, b"cluster.secrets validation v2", hashlib.sha256)
    cue_schemas = sorted((options.root / CUE_SCHEMA_DIR).glob("*.cue"))
    for path in (*options.vars_files, *cue_schemas, SCHEMA_PATH, Path(_cluster_vars_module.__file__)):
        try:
            # Only a regular file is read here: a FIFO or a device in its place is refused by the loader.
            content = Path(path).read_bytes() if Path(path).is_file() else b"(not a regular file)"
        except OSError:
            content = b"(absent)"
        digest.update(hashlib.sha256(content).digest())
    digest.update(json.dumps([sorted(options.known_keys), options.layout().makejinja]).encode())
    return digest.hexdigest()


def _plan_rendered(options: ConfigureOptions, cluster: ClusterVars, result: RenderResult, secret_re: re.Pattern[str],
                   cache_path: Path | None, cache: dict[str, Any], keys: AgeKeys) -> Plan:
    root = options.root
    rendered = result.files
    problems = check_rendered_yaml(rendered, secret_re)
    leaks, ignored_plaintext = check_plaintext_leaks(rendered, secret_re, cluster, root)
    problems += [finding for finding in leaks if finding.severity == "error"]
    if problems:
        raise ConfigureError(format_findings(problems, "rendered files"))
    short_leaks = [finding.render() for finding in leaks if finding.severity != "error"]

    secret_paths = sorted(p for p in rendered if is_secret_file(p, secret_re))
    files: list[PlannedFile] = []
    warnings: list[str] = list(short_leaks)

    sops_config_path = root / SOPS_CONFIG_NAME
    if SOPS_CONFIG_NAME in rendered:
        sops_config_text = rendered[SOPS_CONFIG_NAME]
    elif sops_config_path.exists():
        sops_config_text = sops_config_path.read_bytes()
    elif secret_paths:
        if not keys.recipients:
            raise ConfigureError(
                f"no age key found (looked in: {keys.where()}) and no {SOPS_CONFIG_NAME} to encrypt for. "
                "Run `ansible-playbook cluster.secrets.init` to create age.key and .sops.yaml, or set SOPS_AGE_KEY_FILE."
            )
        sops_config_text = default_sops_config([keys.recipients[0]]).encode()
        rendered[SOPS_CONFIG_NAME] = sops_config_text
    else:
        sops_config_text = b""

    cache_entries: dict[str, Any] = dict(cache.get("files", {}))
    mac_key = _cache_key(keys)
    new_mode = _new_file_mode()

    for path in sorted(rendered):
        if path in secret_paths:
            continue
        content = rendered[path]
        target = root / path
        before = target.read_bytes() if target.is_file() else None
        mode = 0o600 if path in ignored_plaintext else result.modes.get(path)
        current_mode = target.stat().st_mode & 0o7777 if before is not None else None
        mode_differs = mode is not None and current_mode is not None and mode != current_mode
        state = "created" if before is None else ("unchanged" if before == content and not mode_differs else "changed")
        files.append(PlannedFile(path, False, state, content if state != "unchanged" else None, before,
                                 mode=mode if mode is not None else (new_mode if before is None else None),
                                 plaintext_ignored=path in ignored_plaintext))

    if secret_paths:
        files += _plan_secrets(options, rendered, secret_paths, sops_config_text, keys, cache_entries, mac_key, warnings,
                               cluster.data)
        for item in files:
            if item.secret:
                item.mode = result.modes.get(item.path) or (new_mode if item.state == "created" else None)

    return Plan(options, cluster, sorted(files, key=lambda f: f.path), warnings, cache_path,
                {"version": 1, "files": cache_entries})


def _plan_secrets(options: ConfigureOptions, rendered: Mapping[str, bytes], secret_paths: list[str],
                  sops_config_text: bytes, keys: AgeKeys, cache_entries: dict[str, Any], mac_key: bytes | None,
                  warnings: list[str], cluster_data: Mapping[str, Any]) -> list[PlannedFile]:
    root = options.root
    try:
        rules = load_sops_config_text(sops_config_text)
        binary = find_sops_binary(options.sops_binary)
    except SopsToolError as exc:
        raise ConfigureError(str(exc)) from None
    config_file = root / SOPS_CONFIG_NAME
    planned: dict[str, PlannedFile] = {}
    to_decrypt: list[tuple[str, bytes]] = []
    fingerprints: dict[str, str] = {}
    own = set(keys.recipients)
    problems: list[str] = []

    for path in secret_paths:
        rule = rule_for(path, rules)
        if rule is None:
            problems.append(f"{path}: no creation rule in {SOPS_CONFIG_NAME} matches this path; add a path_regex for it")
            continue
        fingerprint = fingerprints[path] = rule_fingerprint(rule)
        plaintext = rendered[path]
        target = root / path
        if not target.is_file():
            planned[path] = PlannedFile(path, True, "created")
            continue
        existing = target.read_bytes()
        entry = cache_entries.get(path)
        # A cache hit proves these exact bytes were checked (or written) for this plaintext and this rule's
        # recipients, so neither the metadata nor the content needs to be read again.
        if (mac_key is not None and isinstance(entry, dict) and entry.get("enc") == hashlib.sha256(existing).hexdigest()
                and hmac.compare_digest(str(entry.get("mac", "")), _mac(mac_key, plaintext, fingerprint))):
            planned[path] = PlannedFile(path, True, "unchanged")
            continue
        meta = encrypted_metadata(existing, sops_format(path))
        damage = damaged_secret_file(existing, sops_format(path)) if meta is None else None
        if damage:
            problems.append(f"{path}: {damage}: restore it from git (`git checkout -- {path}`) or delete it so configure "
                            "writes it anew")
            continue
        if meta is None:
            # A secret committed in plaintext: it is replaced by its encrypted form, and the guard compares
            # its values like those of any other existing secret.
            warnings.append(f"{path} exists unencrypted in the repository; it will be replaced by its encrypted form")
            fmt = sops_format(path)
            previous, new = parse_plaintext_safe(existing, path), parse_plaintext_safe(plaintext, path)
            planned[path] = PlannedFile(path, True, "changed", previous=previous, rendered=new,
                                        changed_keys=["(was not encrypted)", *changed_key_paths(previous, new, fmt)])
            continue
        recipients = file_recipients(meta)
        if own and not own & recipients:
            problems.append(
                f"{path}: cannot decrypt it: it is encrypted for {', '.join(sorted(recipients)) or 'no age recipient'}, "
                f"but the age keys found ({keys.where()}) are {', '.join(sorted(own))}"
            )
            continue
        if not own:
            problems.append(
                f"{path}: cannot compare it with the new content: no age key found (looked in: {keys.where()}); "
                f"the file expects {', '.join(sorted(recipients)) or 'no age recipient'}"
            )
            continue
        to_decrypt.append((path, existing))
        planned[path] = PlannedFile(path, True, "pending")
    if problems:
        raise ConfigureError("secret files: " + str(len(problems)) + " problem(s)\n" + "\n".join(f"  - {p}" for p in problems))

    tool = SopsTool(root, binary, keys.sops_env(), config_file if config_file.exists() else None)

    def decrypt(item: tuple[str, bytes]) -> tuple[str, bytes | SopsToolError]:
        path, existing = item
        try:
            return path, tool.decrypt(path, content=existing)
        except SopsToolError as exc:
            return path, exc

    for path, result in parallel_map(decrypt, to_decrypt):
        if isinstance(result, SopsToolError):
            problems.append(str(result))
            continue
        fmt = sops_format(path)
        try:
            old = parse_plaintext(result, fmt)
            new = parse_plaintext(rendered[path], fmt)
        except (ValueError, yaml.YAMLError, configparser.Error):
            old, new = result, rendered[path]
        meta = encrypted_metadata((root / path).read_bytes(), fmt) or {}
        rule = rule_for(path, rules)
        same_recipients = file_recipients(meta) == rule_recipients(rule or {})
        if old == new and same_recipients:
            planned[path].state = "unchanged"
            if mac_key is not None:
                cache_entries[path] = {"enc": hashlib.sha256((root / path).read_bytes()).hexdigest(),
                                       "mac": _mac(mac_key, rendered[path], fingerprints[path])}
        else:
            planned[path].state = "changed"
            planned[path].changed_keys = changed_key_paths(old, new, fmt)
            planned[path].previous, planned[path].rendered = old, new
    if problems:
        raise ConfigureError("secret files: " + str(len(problems)) + " problem(s)\n" + "\n".join(f"  - {p}" for p in problems))

    overwrites = check_secret_overwrites(list(planned.values()), cluster_data, options.allow_secret_overwrite)
    if overwrites:
        raise ConfigureError(overwrites)

    pending = [p for p in planned.values() if p.state in ("created", "changed")]
    # sops reads the creation rules from disk; a .sops.yaml that is only planned goes through a private temp.
    config_on_disk = config_file.is_file() and config_file.read_bytes() == sops_config_text
    encrypt_tool = tool if config_on_disk else None

    def encrypt(item: PlannedFile) -> tuple[PlannedFile, bytes | SopsToolError]:
        try:
            return item, _encrypt_with(encrypt_tool, root, binary, keys, sops_config_text, rendered[item.path], item.path)
        except SopsToolError as exc:
            return item, exc

    for item, ciphertext in parallel_map(encrypt, pending):
        if isinstance(ciphertext, SopsToolError):
            problems.append(str(ciphertext))
            continue
        item.content = ciphertext
        if item.state == "created":
            item.changed_keys = changed_key_paths(None, parse_plaintext_safe(rendered[item.path], item.path), sops_format(item.path))
        if mac_key is not None:
            item.cache_entry = {"enc": hashlib.sha256(ciphertext).hexdigest(),
                                "mac": _mac(mac_key, rendered[item.path], fingerprints[item.path])}
    if problems:
        raise ConfigureError("secret files: " + str(len(problems)) + " problem(s)\n" + "\n".join(f"  - {p}" for p in problems))
    return list(planned.values())


def damaged_secret_file(content: bytes, fmt: str) -> str | None:
    """Why an existing *.sops.* file without valid sops metadata is not simply a plaintext secret, if it is not."""
    if b"ENC[AES256_GCM," in content or re.search(rb"(?m)^sops:|\"sops\"\s*:|^sops_", content):
        return "looks like a damaged encrypted file (it has encrypted values or a sops section, but no complete sops metadata)"
    if fmt in ("yaml", "json"):
        try:
            parse_plaintext(content, fmt)
        except (ValueError, yaml.YAMLError):
            return f"is neither an encrypted sops file nor readable {fmt.upper()}"
    return None


def parse_plaintext_safe(content: bytes, path: str) -> Any:
    try:
        return parse_plaintext(content, sops_format(path))
    except (ValueError, yaml.YAMLError, configparser.Error):
        return content


def load_sops_config_text(text: bytes) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.context_mark if exc.context_mark is not None and "end of stream" in str(exc.problem) else exc.problem_mark
        where = f"{SOPS_CONFIG_NAME}:{mark.line + 1}" if mark is not None else SOPS_CONFIG_NAME
        raise SopsToolError(f"{where}: invalid YAML ({exc.problem or exc.__class__.__name__}); fix the syntax") from None
    except yaml.YAMLError as exc:
        raise SopsToolError(f"{SOPS_CONFIG_NAME}: invalid YAML ({exc.__class__.__name__})") from None
    rules = data.get("creation_rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        raise SopsToolError(f"{SOPS_CONFIG_NAME}: no creation_rules list; fix it, or delete it to let configure generate one")
    rules = [rule for rule in rules if isinstance(rule, dict)]
    check_rule_patterns(rules)
    return rules


def _encrypt_with(tool: SopsTool | None, root: Path, binary: str, keys: AgeKeys, config_text: bytes,
                  plaintext: bytes, path: str) -> bytes:
    """Encrypt with the repository's .sops.yaml; a config that is only planned (not yet on disk) is
    handed to sops through a private temporary file holding just the public configuration."""
    if tool is not None:
        return tool.encrypt(plaintext, path)
    with private_tempfile(config_text, suffix=".yaml") as config:
        return SopsTool(root, binary, keys.sops_env(), config).encrypt(plaintext, path)


# ---------------------------------------------------------------------------- applying


def apply(plan_: Plan) -> None:
    """Write every planned change atomically (.sops.yaml first) and refresh the cache."""
    root = plan_.options.root
    ordered = sorted(plan_.files, key=lambda f: (f.path != SOPS_CONFIG_NAME, f.path))
    writes = [item for item in ordered if item.state != "unchanged" and item.content is not None]
    for stale in plan_.stale_temps:
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    atomic_write_many([(root / item.path, item.content, item.mode) for item in writes if item.content is not None])
    for item in writes:
        if item.cache_entry is not None:
            plan_.cache_data["files"][item.path] = item.cache_entry
    save_cache(plan_)


def save_cache(plan_: Plan) -> None:
    if plan_.cache_path is None:
        return
    known = {f.path for f in plan_.files if f.secret}
    plan_.cache_data["files"] = {k: v for k, v in plan_.cache_data["files"].items() if k in known}
    try:
        private_dir(plan_.cache_path.parent)
        atomic_write(plan_.cache_path, json.dumps(plan_.cache_data, sort_keys=True, indent=1).encode(), mode=0o600)
    except OSError:
        pass  # the cache only saves time; configure stays correct without it


def secrets_summary_lines(plan_: Plan, check_mode: bool) -> Iterable[str]:
    verb = "would be" if check_mode else "were"
    summary = plan_.summary()
    yield (f"{len(summary['created'])} file(s) {verb} created, {len(summary['updated'])} updated, "
           f"{summary['unchanged']} unchanged ({len(summary['secrets_created']) + len(summary['secrets_updated'])} "
           f"secret file(s) {verb} encrypted, {summary['secrets_unchanged']} left as they were)")
    if summary["plaintext_gitignored"]:
        yield (f"{len(summary['plaintext_gitignored'])} file(s) hold secret values in plaintext because git ignores them "
               "(written 0600, never committed): " + ", ".join(summary["plaintext_gitignored"]))
