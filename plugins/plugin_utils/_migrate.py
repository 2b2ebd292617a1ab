# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration: copy the values of hand-edited secret files into cluster.yaml.

Before cluster.yaml held the infrastructure secrets, users edited
``infrastructure/secrets.sops.yaml`` by hand (``sops edit``). ``plan_migration`` decrypts
such files (plaintext stays in memory), maps their keys to cluster.yaml keys and computes
the new cluster.yaml text with a ruamel.yaml round trip, so comments, key order, quoting
and blank lines survive. A key that cluster.yaml already sets to another real value is a
conflict and is left alone unless ``overwrite`` is set. Placeholders and empty values are
never migrated. Secret files are read and decrypted through one ``_sops.Sops`` for the run,
which configure's check then uses too. ``apply_migration`` writes a 0600 backup of cluster.yaml
and the new file as one change set (``_changes``): the backup first, each file atomically.

Reports name files and keys, never values.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import configparser
import dataclasses
import datetime
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString
except ImportError:  # pragma: no cover - depends on the environment
    CommentedMap = dict

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError
from ansible_collections.cluster.secrets.plugins.plugin_utils._backup import backup_dir, next_backup_path
from ansible_collections.cluster.secrets.plugins.plugin_utils._changes import ChangeSet, FileChange
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVarsError
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import private_tempfile, stale_temp_files
from ansible_collections.cluster.secrets.plugins.plugin_utils._guard import (
    OVERRIDE_VARIABLE,
    Loss,
    find_losses,
    flatten_document,
    is_real,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_problems import RenderError
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureError, ConfigureOptions, plan
from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_plan import parse_plaintext
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import SopsToolError
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import load_schema
from ansible_collections.cluster.secrets.plugins.plugin_utils._yaml_edit import YamlDocument, YamlEditError

# Which secret files are migrated, and how their keys map to cluster.yaml keys.
# An empty mapping means: every top-level key of the file, under the same name.
DEFAULT_SOURCES: dict[str, dict[str, str]] = {"infrastructure/secrets.sops.yaml": {}}
CLUSTER_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MISSING = object()


class MigrateError(Exception):
    """Anything that stops the migration before it writes; the message never holds a value."""


@dataclass
class MigrationItem:
    file: str
    key: str
    cluster_key: str
    status: str  # added | replaced | unchanged | skipped | conflict
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "key": self.key, "cluster_key": self.cluster_key, "status": self.status, "reason": self.reason}

    def line(self) -> str:
        where = f"{self.file}: {self.key}" + (f" -> {self.cluster_key}" if self.cluster_key and self.cluster_key != self.key else "")
        return f"{self.status}: {where}" + (f" ({self.reason})" if self.reason else "")


@dataclass
class MigrationPlan:
    cluster_file: Path
    items: list[MigrationItem]
    before: bytes
    after: bytes
    values: list[str] = field(default_factory=list, repr=False)
    warnings: list[str] = field(default_factory=list)
    expected: dict[str, Any] = field(default_factory=dict, repr=False)
    # The run's door to sops: configure's check (verify_configure) goes through it too.
    sops: Sops | None = field(default=None, repr=False)

    @property
    def changed(self) -> bool:
        return self.after != self.before

    def by_status(self, *statuses: str) -> list[MigrationItem]:
        return [item for item in self.items if item.status in statuses]

    def summary_lines(self, check_mode: bool) -> list[str]:
        verb = "would be" if check_mode else "were"
        added, replaced = self.by_status("added"), self.by_status("replaced")
        conflicts, skipped = self.by_status("conflict"), self.by_status("skipped", "unchanged")
        lines = [f"{len(added)} key(s) {verb} added to {self.cluster_file.name}, {len(replaced)} replaced, "
                 f"{len(conflicts)} in conflict, {len(skipped)} skipped"]
        lines += [item.line() for item in self.items]
        return lines

    def diff(self) -> dict[str, str]:
        """Key names only: the values are secrets."""
        touched = self.by_status("added", "replaced")
        return {
            "before_header": f"{self.cluster_file.name} (secret values not shown)",
            "after_header": f"{self.cluster_file.name} (secret values not shown)",
            "before": "".join(f"{i.cluster_key}: (previous value)\n" for i in touched if i.status == "replaced"),
            "after": "".join(f"{i.cluster_key}: (value from {i.file})\n" for i in touched),
        }


def normalise_sources(sources: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """Validate the file -> {secret key path: cluster.yaml key} mapping."""
    result: dict[str, dict[str, str]] = {}
    for file, mapping in (sources if sources is not None else DEFAULT_SOURCES).items():
        if Path(str(file)).is_absolute() or ".." in Path(str(file)).parts:
            raise MigrateError(f"migrate sources: {file}: give a path relative to the repository")
        mapping = {} if mapping in (None, "") else mapping  # noqa: PLW2901 - an empty value means "every top-level key"
        if not isinstance(mapping, Mapping):
            raise MigrateError(f"migrate sources: {file}: the value must be a mapping of secret key paths to cluster.yaml keys")
        for key, cluster_key in mapping.items():
            if not isinstance(cluster_key, str) or not CLUSTER_KEY_RE.match(cluster_key):
                raise MigrateError(f"migrate sources: {file}: {key}: the cluster.yaml key must be a top-level key name")
        result[str(file)] = {str(k): str(v) for k, v in mapping.items()}
    return result


_LITERAL_SAFE_RE = re.compile(r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]*$")


def _yaml_value(value: Any) -> Any:
    """A literal block keeps multi-line secrets readable; anything YAML would normalise in a block
    (CR, NEL and other line breaks, control characters, trailing spaces) is double-quoted instead."""
    if isinstance(value, str):
        literal = "\n" in value and _LITERAL_SAFE_RE.match(value) and not any(line.endswith(" ") for line in value.split("\n"))
        return LiteralScalarString(value) if literal else DoubleQuotedScalarString(value)
    return value


def read_secret_file(sops: Sops, relpath: str) -> Any:
    """The parsed plaintext of a secret file (decrypted through pipes when it is encrypted)."""
    status = sops.status(relpath)
    content = status.content or b""
    if status.encrypted:
        if not sops.keys.identities:
            raise MigrateError(f"{relpath}: it is encrypted but no age key was found to decrypt it")
        content = sops.decrypt(relpath)
    try:
        return parse_plaintext(content, status.fmt)
    except (ValueError, yaml.YAMLError, configparser.Error) as exc:
        raise MigrateError(f"{relpath}: cannot parse its decrypted content ({exc.__class__.__name__})") from None


def plan_migration(root: Path, cluster_file: Path | None = None, sources: Mapping[str, Any] | None = None,
                   overwrite: bool = False, age_key_file: str | None = None, sops_binary: str | None = None,
                   environ: Mapping[str, str] | None = None) -> MigrationPlan:
    root = Path(root).resolve()
    cluster_file = Path(cluster_file) if cluster_file else root / "cluster.yaml"
    mapping = normalise_sources(sources)
    if not cluster_file.is_file():
        raise MigrateError(f"{cluster_file} not found: run `ansible-playbook cluster.secrets.init` first, or set cluster_file")
    before = cluster_file.read_bytes()
    try:
        document = YamlDocument(before.decode("utf-8"), cluster_file.name)
    except UnicodeDecodeError:
        raise MigrateError(f"{cluster_file.name}: it is not UTF-8 text") from None
    except YamlEditError as exc:
        raise MigrateError(str(exc)) from None
    data = document.data
    if data is None:
        data = document.data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise MigrateError(f"{cluster_file.name}: the top level must be a mapping of keys to values")

    try:
        sops = Sops.open(root, age_key_file, sops_binary, environ)
    except SopsToolError as exc:
        raise MigrateError(str(exc)) from None
    items: list[MigrationItem] = []
    values: list[str] = []
    expected: dict[str, Any] = {}
    first_added: dict[str, str] = {}
    for relpath, keymap in mapping.items():
        if not (root / relpath).is_file():
            items.append(MigrationItem(relpath, "(file)", "", "skipped", "file not found"))
            continue
        try:
            flat = flatten_document(read_secret_file(sops, relpath))
        except SopsToolError as exc:
            raise MigrateError(str(exc)) from None
        pairs = list(keymap.items())
        if not keymap:
            nested = sorted({re.split(r"[.\[]", k, maxsplit=1)[0] for k in flat if not CLUSTER_KEY_RE.match(k)})
            items += [MigrationItem(relpath, k, "", "skipped", "not a single value; map its parts in sources") for k in nested]
            pairs = [(k, k) for k in flat if CLUSTER_KEY_RE.match(k)]
        for key, cluster_key in pairs:
            value = flat.get(key, _MISSING)
            if value is _MISSING:
                items.append(MigrationItem(relpath, key, cluster_key, "skipped", "not in the file"))
                continue
            if not is_real(value):
                items.append(MigrationItem(relpath, key, cluster_key, "skipped", "empty or a placeholder"))
                continue
            if isinstance(value, (Mapping, list, bytes)):
                items.append(MigrationItem(relpath, key, cluster_key, "skipped", "not a single value; map its parts"))
                continue
            if isinstance(value, str):
                values.append(value)
            current = data.get(cluster_key, _MISSING)
            if current is not _MISSING and is_real(current):
                if current == value:
                    items.append(MigrationItem(relpath, key, cluster_key, "unchanged", "cluster.yaml already has this value"))
                elif overwrite:
                    data[cluster_key] = _yaml_value(value)
                    expected[cluster_key] = value
                    items.append(MigrationItem(relpath, key, cluster_key, "replaced", "cluster.yaml had another value"))
                else:
                    items.append(MigrationItem(relpath, key, cluster_key, "conflict",
                                               "cluster.yaml has another value; kept it (set overwrite to take the file's)"))
                continue
            data[cluster_key] = _yaml_value(value)
            expected[cluster_key] = value
            first_added.setdefault(relpath, cluster_key)
            reason = "replaced an empty or placeholder value" if current is not _MISSING else ""
            items.append(MigrationItem(relpath, key, cluster_key, "added", reason))

    today = datetime.date.today().isoformat()
    for relpath, cluster_key in first_added.items():
        keys = list(data)
        if keys.index(cluster_key) > 0:
            data.yaml_set_comment_before_after_key(
                cluster_key, before=f"\nMigrated from {relpath} by cluster.secrets.migrate ({today})", indent=0)
    after = document.dump().encode("utf-8") if first_added or any(i.status == "replaced" for i in items) else before
    plan_ = MigrationPlan(cluster_file, items, before, after, values, expected=expected, sops=sops)
    _check_round_trip(plan_)
    if plan_.by_status("conflict"):
        plan_.warnings.append(
            f"{len(plan_.by_status('conflict'))} key(s) differ between cluster.yaml and the secret files; cluster.yaml wins "
            "and configure will write its values. Check them, or rerun with overwrite to take the files' values."
        )
    return plan_


def _check_round_trip(plan_: MigrationPlan) -> None:
    """The new text must parse to the old data plus exactly the migrated keys."""
    if not plan_.changed:
        return
    old = yaml.safe_load(plan_.before) or {}
    new = yaml.safe_load(plan_.after) or {}
    touched = {i.cluster_key for i in plan_.by_status("added", "replaced")}
    if {k: v for k, v in new.items() if k not in touched} != {k: v for k, v in old.items() if k not in touched} \
            or not touched <= set(new) or any(new[k] != v for k, v in plan_.expected.items()):
        raise MigrateError(f"{plan_.cluster_file.name}: the edited file would not read back as expected; nothing was written")


def verify_configure(plan_: MigrationPlan, options: ConfigureOptions) -> str | None:
    """Run configure's planning (nothing written) against the migrated cluster.yaml; return why it would stop, or None.

    configure's overwrite guard is evaluated here (not inside configure's plan) so that a key the migrated
    cluster.yaml holds but the templates no longer render is told apart: migrating again cannot help there, and
    saying "run migrate" would send the user round in a loop (configure -> migrate -> configure ...).

    The migrated cluster.yaml holds secrets, so it goes through a private 0600 temporary file that is always removed.
    """
    options = dataclasses.replace(options, allow_secret_overwrite=True)  # the caller's options keep the real cluster.yaml
    with private_tempfile(plan_.after, suffix=".yaml") as temp:
        options.cluster_file = temp
        if options.nodes_file is None or options.nodes_file == temp:
            options.nodes_file = plan_.cluster_file.parent / "nodes.yaml"
        try:
            planned = plan(options, plan_.sops, credential_dates=False)  # only what would change; no bookkeeping
        except (ConfigureError, ClusterVarsError, RenderError, AgeKeyError, SopsToolError) as exc:
            return str(exc).replace(str(temp), plan_.cluster_file.name).replace(temp.name, plan_.cluster_file.name)
        except Exception as exc:  # any other failure only means the check could not run
            return f"configure could not be checked ({exc.__class__.__name__}); run it in check mode (--check) to see"
        known = list(load_schema().get("properties", {}))
        losses: list[Loss] = []
        for item in planned.files:
            if item.secret and item.state == "changed" and item.previous is not None:
                losses += find_losses(item.path, item.previous, item.rendered, planned.cluster.data, known)
    return describe_losses(losses, plan_) if losses else None


def describe_losses(losses: list[Loss], plan_: MigrationPlan) -> str:
    """Why configure would still stop after the migration, and what to do: never "run migrate" again."""
    held = {(i.file, i.key) for i in plan_.by_status("added", "replaced", "unchanged")}
    unrendered = [loss for loss in losses if (loss.file, loss.key) in held and loss.reason == "would be removed"]
    others = [loss for loss in losses if loss not in unrendered]
    name = plan_.cluster_file.name
    parts = []
    if unrendered:
        parts.append(
            f"{len(unrendered)} key(s) that {name} now holds are no longer rendered by the templates (a template "
            f"changed, or it renders them only when other settings are set), so configure would remove them "
            f"from the file:\n" + _loss_lines(unrendered)
            + f"\nMigrating again cannot change this: the values are already in {name}. Either make the templates "
            f"render them again (set in {name} what they depend on), or, if they are no longer needed, run configure "
            f"with -e {OVERRIDE_VARIABLE}=true (the values stay in {name})."
        )
    if others:
        parts.append(
            f"{len(others)} secret value(s) are not in {name} after the migration and would be lost:\n"
            + _loss_lines(others)
            + f"\nAdd them to {name} by hand, or map their key paths to {name} keys in the migrate sources "
            f"(migrate_sources); to replace them on purpose, run configure with -e {OVERRIDE_VARIABLE}=true."
        )
    return "\n".join(parts)


def _loss_lines(losses: list[Loss]) -> str:
    lines = []
    for file in sorted({loss.file for loss in losses}):
        lines.append(f"  - {file}:")
        lines += [f"      {loss.key}: {loss.reason}" for loss in losses if loss.file == file]
    return "\n".join(lines)


def apply_migration(plan_: MigrationPlan, root: Path, backup: str | Path | None = None) -> Path | None:
    """Write a 0600 backup of cluster.yaml and the migrated text as one change set, the backup first; return its path."""
    if not plan_.changed:
        return None
    target = next_backup_path(backup_dir(root, backup), plan_.cluster_file.name).resolve()
    cluster_file = plan_.cluster_file.resolve()
    mode = (cluster_file.stat().st_mode & 0o700) or 0o600  # it holds secrets now: nobody else may read it
    base = Path(os.path.commonpath([target.parent, cluster_file.parent]))
    backup_path, cluster_path = target.relative_to(base).as_posix(), cluster_file.relative_to(base).as_posix()
    ChangeSet(base, [
        FileChange(backup_path, False, "created", content=plan_.before, mode=0o600),
        FileChange(cluster_path, False, "changed", content=plan_.after, before=plan_.before, mode=mode),
    ], stale_temps=stale_temp_files([cluster_file]), first=(backup_path,)).apply()
    return target
