# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet: the clusters (inventory hosts) one play worked on, each in its own repository with its own age key.

Three answers once every cluster is done: one summary line per cluster; the secret values two
clusters share (a production password reused in staging), by cluster, file and key path, never
the value; and, after doctor, one table of the credentials older than the policy, oldest first.

Values are compared by fingerprint: an HMAC-SHA256 whose key is derived from the age identity of
every cluster compared (``_secret_values.combined_key``), so the fingerprints mean nothing to
anyone without all of those identities; they live in memory for the comparison and are never
returned, written or shown.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._secret_values import (
    combined_key,
    fingerprint,
    identity_key,
    repository_identity,
    secret_values,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops, decrypt_each
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import SECRET_FILE_PATTERN, SopsToolError, rules_recipients
from ansible_collections.cluster.secrets.plugins.plugin_utils._tree import secret_files

KEY_PURPOSE = "fleet reuse"


@dataclass
class FleetMember:
    """One cluster of the play: its inventory name, what its role resolved (``repository``), and its task result."""

    name: str
    repository: Mapping[str, Any] = field(default_factory=dict)
    result: Mapping[str, Any] | None = None
    # False for a host of another batch of the play (``serial``): no result is not a failure then.
    in_batch: bool = True

    @property
    def root(self) -> str:
        return str(self.repository.get("root") or "")

    @property
    def succeeded(self) -> bool:
        return bool(self.root) and self.result is not None and not self.result.get("failed") \
            and not self.result.get("skipped")


@dataclass(frozen=True)
class Location:
    cluster: str
    file: str
    key: str

    def __str__(self) -> str:
        return f"{self.cluster} {self.file} {self.key}"


@dataclass
class ReuseReport:
    shared: list[list[Location]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    same_key: list[list[str]] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        if len(self.compared) < 2:
            return [f"secret values across clusters: not compared ({len(self.compared)} cluster(s) could be read)",
                    *(f"  {note}" for note in self.notes)]
        lines = [f"secret values shared across clusters: {len(self.shared)} "
                 f"(compared {len(self.compared)} clusters: {', '.join(self.compared)})"]
        for group in self.shared:
            clusters = sorted({location.cluster for location in group})
            lines.append(f"  one value in {' and '.join(clusters)}: " + " = ".join(str(location) for location in group))
        for names in self.same_key:
            lines.append(f"  {' and '.join(names)} use the same age key: give each environment its own")
        lines += [f"  {note}" for note in self.notes]
        return lines

    def as_dicts(self) -> list[dict[str, Any]]:
        return [{"clusters": sorted({loc.cluster for loc in group}),
                 "locations": [{"cluster": loc.cluster, "file": loc.file, "key": loc.key} for loc in group]}
                for group in self.shared]


# ---------------------------------------------------------------------------- summary


def _status(member: FleetMember) -> str:
    result = member.result
    if result is None:
        return "not run" if member.in_batch else "pending"
    if result.get("failed"):
        return "failed"
    if result.get("skipped"):
        return "skipped"
    if isinstance(result.get("errors"), int) and result["errors"] > 0:
        return "error"  # doctor's findings
    return "changed" if result.get("changed") else "ok"


def _first_line(member: FleetMember) -> str:
    result = member.result
    if not result:
        return "stopped before this step (see the errors above)" if member.in_batch else "in another batch of the play"
    for key in ("msg", "summary", "lines", "skip_reason"):
        value = result.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().splitlines()[0]
        if isinstance(value, Sequence) and not isinstance(value, str) and value:
            return str(value[0]).strip().splitlines()[0] if str(value[0]).strip() else ""
    return ""


def summary_lines(step: str, members: Sequence[FleetMember]) -> list[str]:
    """One line per cluster, in inventory order: name, outcome, repository, what the step said."""
    width = max([len(m.name) for m in members] + [7])
    root_width = max([len(m.root or "-") for m in members] + [1])
    counts: dict[str, int] = {}
    lines = []
    for member in members:
        status = _status(member)
        counts[status] = counts.get(status, 0) + 1
        lines.append(f"{member.name:<{width}}  {status:<7}  {member.root or '-':<{root_width}}  {_first_line(member)}".rstrip())
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return [f"{step} on {len(members)} cluster(s): {tally}", *lines]


# ---------------------------------------------------------------------------- reuse across clusters


def _ignored(location: Location, ignore: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(location.key, pattern) or fnmatch.fnmatchcase(f"{location.file}:{location.key}", pattern)
               for pattern in ignore)


def _cluster_values(member: FleetMember, environ: Mapping[str, str] | None) -> tuple[Sops, list[tuple[str, dict[str, str]]], list[str]]:
    """The cluster's door, and the secret values of each of its files (kept only until fingerprinted)."""
    repository = member.repository
    root = Path(member.root)
    sops = Sops.open(root, repository.get("age_key_file") or None, repository.get("sops_binary") or None, environ)
    notes: list[str] = []
    own = set(sops.keys.recipients)
    readable = []
    for relpath in secret_files(root, str(repository.get("secret_pattern") or SECRET_FILE_PATTERN)):
        status = sops.status(relpath)
        if status.encrypted and own & status.recipients:
            readable.append(relpath)
        elif status.encrypted:
            notes.append(f"{member.name}: {relpath} not compared: none of the age keys found decrypts it")

    values = []
    for relpath, plaintext in decrypt_each(sops, readable):
        if isinstance(plaintext, SopsToolError):
            notes.append(f"{member.name}: {relpath} not compared: {plaintext}")
        else:
            values.append((relpath, secret_values(sops.status(relpath).content or b"", plaintext, relpath)))
    return sops, values, notes


def find_shared_values(members: Sequence[FleetMember], ignore: Sequence[str] = (),
                       environ: Mapping[str, str] | None = None) -> ReuseReport:
    """Every secret value present in two clusters or more, by location. Only clusters whose step succeeded count."""
    report = ReuseReport()
    keys: dict[str, bytes] = {}
    gathered: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for member in members:
        if not member.succeeded:
            continue
        try:
            sops, files, notes = _cluster_values(member, environ)
            rules = sops.rules
        except (SopsToolError, OSError) as exc:
            report.notes.append(f"{member.name}: not compared: {exc}")
            continue
        report.notes += notes
        identity = repository_identity(sops.keys, rules_recipients(rules))
        if identity is None:
            report.notes.append(f"{member.name}: not compared: no age key found for the recipients of its .sops.yaml")
            continue
        keys[member.name] = identity_key(identity, KEY_PURPOSE)
        gathered[member.name] = files
    report.compared = list(keys)
    by_key: dict[bytes, list[str]] = {}
    for name, key in keys.items():
        by_key.setdefault(key, []).append(name)
    report.same_key = [names for names in by_key.values() if len(names) > 1]
    if len(keys) < 2:
        return report
    fleet_key = combined_key(keys.values(), KEY_PURPOSE)
    seen: dict[str, list[Location]] = {}
    for name, files in gathered.items():
        for relpath, values in files:
            for key_path, value in values.items():
                location = Location(name, relpath, key_path)
                if not _ignored(location, ignore):
                    seen.setdefault(fingerprint(fleet_key, value), []).append(location)
        files.clear()  # the values are not needed any more
    report.shared = sorted((group for group in seen.values() if len({loc.cluster for loc in group}) > 1),
                           key=lambda group: [str(loc) for loc in group])
    return report


# ---------------------------------------------------------------------------- credential age across clusters


def credential_table(members: Sequence[FleetMember], max_age_days: int | None = None) -> list[str]:
    """doctor's over-age credentials of every cluster in one table, oldest first (no values: names and dates)."""
    rows = []
    for member in members:
        for item in (member.result or {}).get("credentials") or []:
            if isinstance(item, Mapping):
                rows.append((int(item.get("days") or 0), member.name, str(item.get("changed") or "?"),
                             str(item.get("file") or ""), str(item.get("key") or ""), str(item.get("source") or "")))
    if not rows:
        return []
    rows.sort(key=lambda row: (-row[0], row[1], row[3], row[4]))
    policy = f" (policy: {max_age_days} days)" if max_age_days else ""
    width = max(len(name) for name in ["CLUSTER", *(row[1] for row in rows)])
    lines = [f"credentials to change, oldest first{policy}: {len(rows)}",
             f"  {'DAYS':>5}  {'SINCE':<10}  {'CLUSTER':<{width}}  FILE KEY"]
    for days, name, changed, file, key, source in rows:
        note = f"  ({source})" if source and source != "recorded" else ""
        lines.append(f"  {days:>5}  {changed:<10}  {name:<{width}}  {file} {key}{note}")
    return lines
