# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The configure engine: validate, render, encrypt, and write only what changed.

``plan()`` does all the work that can fail (validation, rendering, checks of what was rendered,
age key and .sops.yaml checks, decryption of existing secrets, encryption of new ones) without
touching the repository, and returns a ``Plan``: a change set (``_changes``) plus what a person
is told. ``apply()`` then writes the planned files atomically. So bad input stops before any file
is written, and check mode is simply ``plan()`` without ``apply()``. Secret files are planned by
the one planner (``_secret_plan``) through the one door to sops (``_sops.Sops``), opened once
per run and kept on the plan for the steps after configure (OpenTofu, ESO).

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils import _cluster_vars as _cluster_vars_module
from ansible_collections.cluster.secrets.plugins.plugin_utils import (
    _data_files,
    _findings,
    _secrecy,
    _vars_hints,
    _vars_network,
    _vars_schema,
    _vars_validation,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._changes import ChangeSet, FileChange, new_file_mode, plan_plain_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars, ClusterVarsError, load_cluster_vars
from ansible_collections.cluster.secrets.plugins.plugin_utils._cue import SCHEMA_DIR as CUE_SCHEMA_DIR
from ansible_collections.cluster.secrets.plugins.plugin_utils._cue import run_cue
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import permission_bits, private_dir, stale_temp_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._findings import format_findings
from ansible_collections.cluster.secrets.plugins.plugin_utils._guard import check_secret_overwrites
from ansible_collections.cluster.secrets.plugins.plugin_utils._makejinja import RepositoryLayout, builtin_settings, repository_layout
from ansible_collections.cluster.secrets.plugins.plugin_utils._render import RenderResult, render_tree
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_problems import RenderError, UndefinedUse
from ansible_collections.cluster.secrets.plugins.plugin_utils._rendered_checks import (
    check_plaintext_leaks,
    check_rendered_yaml,
    check_targets,
    is_secret_file,
    locate_plugin_problem,
    readable_vars_warnings,
    undefined_message,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import secret_values
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_plan import PlaintextCache, parse_plaintext_safe, plan_secret_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops, SopsToolError
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import (
    SECRET_FILE_PATTERN,
    SOPS_CONFIG_NAME,
    default_sops_config,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import SCHEMA_PATH, load_schema, with_defaults
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_validation import load_and_validate


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


@dataclass(kw_only=True)
class Plan(ChangeSet):
    """What configure would write (the change set), and what it tells a person about it."""

    options: ConfigureOptions
    cluster: ClusterVars
    sops: Sops
    warnings: list[str] = field(default_factory=list)
    cache: PlaintextCache | None = None
    cache_extra: dict[str, Any] = field(default_factory=dict)
    # Undefined values printed into files (template:line, name), and outputs left alone (force = false).
    undefined: list[UndefinedUse] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    # The rendered plaintext of every secret file, in memory only, for the steps after configure (OpenTofu, ESO).
    plaintexts: dict[str, bytes] = field(default_factory=dict, repr=False)

    def secret_data(self, path: str) -> Any:
        """The parsed plaintext of a secret file this run rendered, or None when it rendered no such file."""
        content = self.plaintexts.get(path)
        return None if content is None else _single(parse_plaintext_safe(content, path))

    def summary(self) -> dict[str, Any]:
        summary = super().summary()
        summary.pop("removed")  # configure never removes a file
        summary["undefined_printed"] = [use.render() for use in self.undefined]
        summary["kept"] = list(self.kept)
        return summary

    def diff(self, secrets: Iterable[str] | None = None) -> list[dict[str, str]]:
        # A plain file holds no secret (configure checked); masking short values too costs nothing.
        return super().diff(secret_values(self.cluster.data) if secrets is None else secrets)


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


def plan(options: ConfigureOptions, sops: Sops | None = None) -> Plan:
    """Everything configure would write, computed in memory; raises before any write when something is wrong."""
    root = options.root
    if not root.is_dir():
        raise ConfigureError(f"cluster_root {root} is not a directory")
    layout = options.layout()
    try:
        sops = sops or Sops.open(root, options.age_key_file, options.sops_binary, options.environ)
    except SopsToolError as exc:
        raise ConfigureError(str(exc)) from None
    cache_path = PlaintextCache.location(root, options.cache_dir, options.environ) if options.cache else None
    cache = PlaintextCache(cache_path, sops.keys)
    validation = _validation_mac(cache.key, options)
    cluster, data = load_template_data(options, validated=validation is not None and cache.data.get("validated") == validation)
    try:
        secret_re = re.compile(options.secret_pattern)
    except re.error as exc:
        raise ConfigureError(f"secret_pattern {options.secret_pattern!r} is not a valid regular expression ({exc})") from None
    result = _render(options, layout, cluster, data, cache_path)
    if result.undefined and options.undefined == "strict":
        raise ConfigureError(undefined_message(result.undefined, strict=True))
    problems = check_targets(root, [*result.files, SOPS_CONFIG_NAME])
    if problems:
        raise ConfigureError(format_findings(problems, "rendered files"))
    planned = _plan_rendered(options, cluster, result, secret_re, sops, cache)
    vars_modes = {str(p): mode for p in layout.vars_files if (mode := permission_bits(p)) is not None}
    planned.warnings[:0] = layout.warnings + readable_vars_warnings(layout.vars_files, cache.data, secret_values(cluster.data),
                                                                    vars_modes)
    planned.stale_temps = stale_temp_files(root / f.path for f in planned.files)
    if planned.stale_temps:
        names = ", ".join(str(p.relative_to(root)) for p in planned.stale_temps)
        planned.warnings.append(f"{len(planned.stale_temps)} temporary file(s) left by an interrupted run "
                                f"(configure removes them when it writes, as nothing else uses them): {names}")
    planned.undefined, planned.kept = result.undefined, result.kept
    if result.undefined:
        planned.warnings.append(undefined_message(result.undefined, strict=False))
    if result.kept:
        planned.warnings.append(f"{len(result.kept)} existing file(s) left as they are because makejinja.toml does not set "
                                "force = true (makejinja would not overwrite them either)")
    planned.cache_extra = {"validated": validation, "vars_modes": vars_modes}
    return planned


def _render(options: ConfigureOptions, layout: RepositoryLayout, cluster: ClusterVars, data: dict[str, Any],
            cache_path: Path | None) -> RenderResult:
    """The repository's templates, then the built-in infrastructure layer where it belongs (the repository's files win)."""
    root = options.root
    bytecode = cache_path.parent / "bytecode" if cache_path else None
    if cache_path is not None:
        with contextlib.suppress(OSError):
            private_dir(cache_path.parent)
    try:
        result = render_tree(layout.settings, data, root, bytecode_dir=bytecode)
    except RenderError as exc:
        raise RenderError([locate_plugin_problem(problem, cluster) for problem in exc.problems]) from None
    if options.builtin_templates and wants_builtin_infrastructure(cluster, root, [*result.files, *result.kept]):
        builtin_data = data if not layout.makejinja else with_defaults(cluster.data, load_schema())
        builtin = render_tree(builtin_settings(root, options.exclude_patterns), builtin_data, root, bytecode_dir=bytecode)
        for path, content in builtin.files.items():
            if path not in result.files and path not in result.kept:
                result.files[path] = content
                if path in builtin.modes:
                    result.modes[path] = builtin.modes[path]
    return result


# The code validation runs: a change to any of it invalidates the remembered validation.
_VALIDATION_CODE = (_cluster_vars_module, _data_files, _findings, _secrecy, _vars_hints, _vars_network, _vars_schema,
                    _vars_validation)


def _validation_mac(key: bytes | None, options: ConfigureOptions) -> str | None:
    """A keyed fingerprint of everything validation depends on: the vars files, known_keys, the schema and the rules.

    When it matches the one saved by the last successful run, the input is known to be valid and the
    (comparatively slow) JSON Schema validation is skipped. Keyed like the plaintext cache, it reveals nothing.
    """
    if key is None:
        return None
    digest = hmac.new(key, b"cluster.secrets validation v2", hashlib.sha256)
    cue_schemas = sorted((options.root / CUE_SCHEMA_DIR).glob("*.cue"))
    code = [Path(module.__file__ or "") for module in _VALIDATION_CODE]
    for path in (*options.vars_files, *cue_schemas, SCHEMA_PATH, *code):
        try:
            # Only a regular file is read here: a FIFO or a device in its place is refused by the loader.
            content = Path(path).read_bytes() if Path(path).is_file() else b"(not a regular file)"
        except OSError:
            content = b"(absent)"
        digest.update(hashlib.sha256(content).digest())
    digest.update(json.dumps([sorted(options.known_keys), options.layout().makejinja]).encode())
    return digest.hexdigest()


def _plan_rendered(options: ConfigureOptions, cluster: ClusterVars, result: RenderResult, secret_re: re.Pattern[str],
                   sops: Sops, cache: PlaintextCache) -> Plan:
    root = options.root
    rendered = result.files
    problems = check_rendered_yaml(rendered, secret_re)
    leaks, ignored_plaintext = check_plaintext_leaks(rendered, secret_re, cluster, root)
    problems += [finding for finding in leaks if finding.severity == "error"]
    if problems:
        raise ConfigureError(format_findings(problems, "rendered files"))
    warnings = [finding.render() for finding in leaks if finding.severity != "error"]
    secret_paths = sorted(p for p in rendered if is_secret_file(p, secret_re))

    if SOPS_CONFIG_NAME not in rendered and not sops.config_path.exists() and secret_paths:
        if not sops.keys.recipients:
            raise ConfigureError(
                f"no age key found (looked in: {sops.keys.where()}) and no {SOPS_CONFIG_NAME} to encrypt for. "
                "Run `ansible-playbook cluster.secrets.init` to create age.key and .sops.yaml, or set SOPS_AGE_KEY_FILE."
            )
        rendered[SOPS_CONFIG_NAME] = default_sops_config([sops.keys.recipients[0]]).encode()
    if SOPS_CONFIG_NAME in rendered:
        sops.use_config(rendered[SOPS_CONFIG_NAME])

    new_mode = new_file_mode()
    files = [plan_plain_file(root, path, rendered[path], 0o600 if path in ignored_plaintext else result.modes.get(path),
                             new_mode, plaintext_ignored=path in ignored_plaintext)
             for path in sorted(rendered) if path not in secret_paths]
    if secret_paths:
        def guard(changes: list[FileChange]) -> str | None:
            return check_secret_overwrites(changes, cluster.data, options.allow_secret_overwrite) or None

        secrets = plan_secret_files(sops, {path: rendered[path] for path in secret_paths}, cache, guard=guard,
                                    error=ConfigureError, warnings=warnings)
        for item in secrets:
            item.mode = result.modes.get(item.path) or (new_mode if item.state == "created" else None)
        files += secrets
    return Plan(root, sorted(files, key=lambda f: f.path), options=options, cluster=cluster, sops=sops, warnings=warnings,
                cache=cache if options.cache else None, plaintexts={path: rendered[path] for path in secret_paths})


def _single(value: Any) -> Any:
    """A YAML stream of one document as that document."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def apply(plan_: Plan) -> None:
    """Write every planned change atomically (.sops.yaml first) and refresh the cache."""
    written = plan_.apply()
    for item in written:
        plan_.sops.forget(item.path)
    if plan_.cache is not None:
        for item in written:
            if item.cache_entry is not None:
                plan_.cache.files[item.path] = item.cache_entry
        plan_.cache.save({f.path for f in plan_.files if f.secret}, **plan_.cache_extra)


def secrets_summary_lines(plan_: Plan, check_mode: bool) -> Iterable[str]:
    verb = "would be" if check_mode else "were"
    summary = plan_.summary()
    yield (f"{len(summary['created'])} file(s) {verb} created, {len(summary['updated'])} updated, "
           f"{summary['unchanged']} unchanged ({len(summary['secrets_created']) + len(summary['secrets_updated'])} "
           f"secret file(s) {verb} encrypted, {summary['secrets_unchanged']} left as they were)")
    if summary["plaintext_gitignored"]:
        yield (f"{len(summary['plaintext_gitignored'])} file(s) hold secret values in plaintext because git ignores them "
               "(written 0600, never committed): " + ", ".join(summary["plaintext_gitignored"]))
