# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The configure engine: validate, render, encrypt, and write only what changed.

``plan()`` does all the work that can fail (validation, rendering, checks of what was rendered,
age key and .sops.yaml checks, decryption of existing secrets, encryption of new ones) without
touching the repository, and returns a ``Plan``: a change set (``_changes``) plus what a person
is told. ``apply()`` then writes the planned files atomically. So bad input stops before any file
is written, and check mode is simply ``plan()`` without ``apply()``. Secret files are planned by
the one planner (``_secret_plan``) through the one door to sops (``_sops.Sops``), opened once
per run and kept on the plan for the steps after configure (OpenTofu, ESO). ``plan_dates`` adds
``.credential-dates.yaml`` (when each secret value last changed; ``_credential_dates_plan``) to the
change set, from what the run holds.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._changes import ChangeSet, FileChange, new_file_mode, plan_plain_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars
from ansible_collections.cluster.secrets.plugins.plugin_utils._credential_dates import DATES_FILE
from ansible_collections.cluster.secrets.plugins.plugin_utils._credential_dates_plan import plan_credential_dates
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import permission_bits, private_dir, stale_temp_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._findings import format_findings
from ansible_collections.cluster.secrets.plugins.plugin_utils._gitignore import ignored_paths
from ansible_collections.cluster.secrets.plugins.plugin_utils._guard import check_secret_overwrites
from ansible_collections.cluster.secrets.plugins.plugin_utils._makejinja import RepositoryLayout, builtin_settings, repository_layout
from ansible_collections.cluster.secrets.plugins.plugin_utils._render import RenderResult, render_tree
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_memo import VERSION as MEMO_VERSION
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_memo import (
    Snapshot,
    inputs_digest,
    output_state,
    remembered,
    take_snapshot,
)
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
from ansible_collections.cluster.secrets.plugins.plugin_utils._template_data import (
    load_template_data,
    validation_fingerprint,
    wants_builtin_infrastructure,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import load_schema, with_defaults


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
    # The day .credential-dates.yaml dates a changed value (UTC today when None; tests set it).
    today: datetime.date | None = None
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
    # What the render memo needs once the files are written: the tree as read, the environment entries read.
    memo_inputs: tuple[Snapshot, set[str], str, set[str]] | None = field(default=None, repr=False)
    # The plan is the last run's, remembered: nothing was rendered, nothing is to write.
    remembered: bool = False
    # The warnings a rerun with the same input gives again (what was rendered says them), for the render memo.
    lasting_warnings: list[str] = field(default_factory=list)
    # "file: key path" of the secret values new or changed since .credential-dates.yaml was last written (no value).
    credentials_changed: list[str] = field(default_factory=list)

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


def plan(options: ConfigureOptions, sops: Sops | None = None, credential_dates: bool = True) -> Plan:
    """Everything configure would write, computed in memory; raises before any write when something is wrong.

    With ``credential_dates`` the plan updates .credential-dates.yaml for the repository as this run leaves it; a
    caller that plans more secret files in the same run (the External Secrets GitOps tree) passes False and calls
    ``plan_dates`` with them."""
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
    validation = validation_fingerprint(cache.key, layout, root, options.known_keys)
    cluster, data = load_template_data(layout, root, options.known_keys, options.environ,
                                       validated=validation is not None and cache.data.get("validated") == validation)
    try:
        secret_re = re.compile(options.secret_pattern)
    except re.error as exc:
        raise ConfigureError(f"secret_pattern {options.secret_pattern!r} is not a valid regular expression ({exc})") from None
    vars_modes = {str(p): mode for p in layout.vars_files if (mode := permission_bits(p)) is not None}
    memo_key = cache.key if options.cache and validation is not None else None
    fingerprint = _memo_fingerprint(options, validation)
    # What this run may read, taken once before anything is rendered: compared with the last run's, or remembered.
    snapshot = take_snapshot(root, layout.settings, options.extra_inputs) if memo_key is not None else None
    memo = remembered(cache.data.get("render"), memo_key, root, snapshot, fingerprint) if memo_key is not None and snapshot is not None else None
    if memo is not None and _still_ignored(root, memo):
        return _remembered_plan(options, cluster, sops, memo, [*layout.warnings, *readable_vars_warnings(
            layout.vars_files, cache.data, secret_values(cluster.data), vars_modes)])
    result = _render(options, layout, cluster, data, cache_path)
    if result.undefined and options.undefined == "strict":
        raise ConfigureError(undefined_message(result.undefined, strict=True))
    problems = check_targets(root, [*result.files, SOPS_CONFIG_NAME])
    if problems:
        raise ConfigureError(format_findings(problems, "rendered files"))
    planned = _plan_rendered(options, cluster, result, secret_re, sops, cache)
    planned.warnings[:0] = layout.warnings + readable_vars_warnings(layout.vars_files, cache.data, secret_values(cluster.data),
                                                                    vars_modes)
    planned.stale_temps = stale_temp_files(root / f.path for f in planned.files)
    if planned.stale_temps:
        names = ", ".join(str(p.relative_to(root)) for p in planned.stale_temps)
        planned.warnings.append(f"{len(planned.stale_temps)} temporary file(s) left by an interrupted run "
                                f"(configure removes them when it writes, as nothing else uses them): {names}")
    planned.undefined, planned.kept = result.undefined, result.kept
    rendering = [undefined_message(result.undefined, strict=False)] if result.undefined else []
    if result.kept:
        rendering.append(f"{len(result.kept)} existing file(s) left as they are because makejinja.toml does not set "
                         "force = true (makejinja would not overwrite them either)")
    planned.warnings += rendering
    planned.lasting_warnings += rendering
    planned.cache_extra = {"validated": validation, "vars_modes": vars_modes}
    if snapshot is not None and snapshot.unsure is None:
        planned.memo_inputs = (snapshot, result.env_used, fingerprint, result.plugin_files)
    if credential_dates:
        plan_dates(planned)
    return planned


def plan_dates(plan_: Plan, more: Iterable[FileChange] = (), plaintexts: Mapping[str, bytes] | None = None) -> None:
    """Add .credential-dates.yaml to the plan: when each secret value last changed (``_credential_dates``).

    The secret files the plan renders are dated from the plaintext and ciphertext it holds; ``more`` (with their
    ``plaintexts``) are other secret files this run writes. A remembered plan changes nothing, so it dates nothing."""
    if plan_.remembered:
        return
    if any(f.path == DATES_FILE for f in plan_.files):
        plan_.warnings.append(f"{DATES_FILE} is rendered by a template: configure does not record credential dates there")
        return
    held = {**plan_.plaintexts, **(plaintexts or {})}
    changes = [*(f for f in plan_.files if f.secret), *more]
    rendered = {f.path: (f, held[f.path]) for f in changes if f.path in held and f.state != "removed"}
    dates = plan_credential_dates(plan_.sops, plan_.options.secret_pattern, rendered, plan_.options.today,
                                  removed=[f.path for f in changes if f.state == "removed"])
    plan_.warnings += dates.warnings
    plan_.lasting_warnings += dates.lasting
    plan_.credentials_changed = dates.changed
    if dates.change is not None:
        plan_.files = sorted([*plan_.files, dates.change], key=lambda f: f.path)
        plan_.stale_temps = sorted({*plan_.stale_temps, *stale_temp_files([plan_.root / DATES_FILE])})


def _still_ignored(root: Path, memo: dict[str, Any]) -> bool:
    """Plaintext outputs are allowed only where git ignores them: git's rules may have changed since."""
    paths = [path for path, _secret, ignored in memo.get("files", []) if ignored]
    return not paths or ignored_paths(root, paths) == set(paths)


def _memo_fingerprint(options: ConfigureOptions, validation: str | None) -> str:
    """What of the run's options and validated input decides what is rendered (the files are stat'ed besides)."""
    return json.dumps([validation, options.secret_pattern, options.builtin_templates, sorted(options.exclude_patterns),
                       [str(p) for p in options.extra_inputs], options.undefined, str(options.cluster_file),
                       str(options.nodes_file)])


def _remembered_plan(options: ConfigureOptions, cluster: ClusterVars, sops: Sops, memo: dict[str, Any],
                     warnings: list[str]) -> Plan:
    """The last run's plan, every file unchanged: nothing it depends on changed since it was written."""
    files = [FileChange(path, bool(secret), "unchanged", plaintext_ignored=bool(ignored))
             for path, secret, ignored in memo.get("files", [])]
    return Plan(options.root, files, options=options, cluster=cluster, sops=sops, warnings=[*warnings, *memo.get("warnings", [])],
                undefined=[UndefinedUse(*use) for use in memo.get("undefined", [])], kept=list(memo.get("kept", [])),
                remembered=True)


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
    # What rendering says again on every run with the same input (not what this run's writing will settle).
    lasting = list(warnings)
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
                cache=cache if options.cache else None, plaintexts={path: rendered[path] for path in secret_paths},
                lasting_warnings=lasting)


def _single(value: Any) -> Any:
    """A YAML stream of one document as that document."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def apply(plan_: Plan) -> None:
    """Write every planned change atomically (.sops.yaml first) and refresh the cache and the render memo."""
    if plan_.remembered:
        return
    written = plan_.apply()
    for item in written:
        plan_.sops.forget(item.path)
    if plan_.cache is not None:
        for item in written:
            if item.cache_entry is not None:
                plan_.cache.files[item.path] = item.cache_entry
        plan_.cache.save({f.path for f in plan_.files if f.secret}, **plan_.cache_extra, render=_memo(plan_))


def _memo(plan_: Plan) -> dict[str, Any] | None:
    """What the next run needs to know that nothing changed (names, states and keyed fingerprints; no value)."""
    if plan_.memo_inputs is None or plan_.cache is None or plan_.cache.key is None:
        return None
    snapshot, env_used, fingerprint, plugin_files = plan_.memo_inputs
    outputs = sorted({*(f.path for f in plan_.files), *plan_.kept})
    return {
        "version": MEMO_VERSION, "env_keys": sorted(env_used), "outputs": output_state(plan_.root, outputs),
        "plugin_files": sorted(plugin_files),
        "inputs": inputs_digest(plan_.cache.key, snapshot, outputs, fingerprint, env_used, plugin_files),
        "files": [[f.path, f.secret, f.plaintext_ignored] for f in plan_.files],
        "warnings": plan_.lasting_warnings,
        "undefined": [[use.template, use.line, use.name] for use in plan_.undefined], "kept": list(plan_.kept),
    }


def secrets_summary_lines(plan_: Plan, check_mode: bool) -> Iterable[str]:
    verb = "would be" if check_mode else "were"
    summary = plan_.summary()
    yield (f"{len(summary['created'])} file(s) {verb} created, {len(summary['updated'])} updated, "
           f"{summary['unchanged']} unchanged ({len(summary['secrets_created']) + len(summary['secrets_updated'])} "
           f"secret file(s) {verb} encrypted, {summary['secrets_unchanged']} left as they were)")
    if summary["plaintext_gitignored"]:
        yield (f"{len(summary['plaintext_gitignored'])} file(s) hold secret values in plaintext because git ignores them "
               "(written 0600, never committed): " + ", ".join(summary["plaintext_gitignored"]))
