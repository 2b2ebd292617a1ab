# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""doctor: diagnose a cluster repository and say how to fix each problem.

Every check adds findings (ok, info, warning, error) with the thing it looked at and a
fix. Nothing is written. Decrypted content is read into memory only to prove that a file
decrypts and to compare its values with the keyed fingerprints of ``.credential-dates.yaml``,
and dropped with the run; findings name files, keys and public keys, never values.

This module holds the report and runs the checks in order: those of keys, sops, the
committed public key (``.age-public-key``), secret files and the tools in ``_doctor_checks``, credential age in
``_doctor_credentials``, those of git in ``_doctor_git``. Every sops access goes through one ``_sops.Sops``
opened for the run.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor_checks import (
    check_age_key,
    check_cluster_vars_modes,
    check_files,
    check_leftovers,
    check_public_key_file,
    check_recovery,
    check_sops_config,
    check_stale_temps,
    check_tools,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor_credentials import check_credential_age
from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor_git import (
    check_git,
    check_git_history,
    check_tracked_contents,
    git_tracked,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import SECRET_FILE_PATTERN, rules_recipients
from ansible_collections.cluster.secrets.plugins.plugin_utils._tree import secret_files

SEVERITIES = ("error", "warning", "info", "ok")
DEFAULT_GITIGNORE = {"cluster.yaml": "error", "age.key": "error", "*.tfvars": "warning"}


@dataclass
class DoctorFinding:
    severity: str
    check: str
    subject: str
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class DoctorOptions:
    root: Path
    age_key_file: str | None = None
    sops_binary: str | None = None
    secret_pattern: str = SECRET_FILE_PATTERN
    max_age_days: int = 90
    recovery_key_file: str | None = None
    gitignore: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_GITIGNORE))
    environ: Mapping[str, str] | None = None
    now: datetime.datetime | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()


@dataclass
class DoctorReport:
    findings: list[DoctorFinding] = field(default_factory=list)
    # Credentials unchanged for longer than max_age_days, oldest first: {file, key, changed, days, source}, no value.
    credentials: list[dict[str, Any]] = field(default_factory=list)

    def add(self, severity: str, check: str, subject: str, message: str, fix: str = "") -> None:
        self.findings.append(DoctorFinding(severity, check, subject, message, fix))

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def errors(self) -> list[DoctorFinding]:
        return [f for f in self.findings if f.severity == "error"]

    def summary(self) -> str:
        return (f"doctor: {self.count('error')} error(s), {self.count('warning')} warning(s), "
                f"{self.count('info')} note(s), {self.count('ok')} check(s) passed")

    def table(self) -> list[str]:
        """Findings as aligned text lines, errors first; each problem is followed by its fix."""
        ordered = sorted(self.findings, key=lambda f: SEVERITIES.index(f.severity))
        width_check = max([len(f.check) for f in ordered] + [5])
        width_subject = min(max([len(f.subject) for f in ordered] + [7]), 48)
        lines = [self.summary(), f"{'STATUS':<8} {'CHECK':<{width_check}} {'SUBJECT':<{width_subject}} FINDING"]
        for item in ordered:
            lines.append(f"{item.severity.upper():<8} {item.check:<{width_check}} {item.subject:<{width_subject}} {item.message}")
            if item.fix and item.severity != "ok":
                lines.append(f"{'':<8} {'':<{width_check}} {'':<{width_subject}}   fix: {item.fix}")
        return lines


def diagnose(options: DoctorOptions) -> DoctorReport:
    report = DoctorReport()
    root = options.root
    if not root.is_dir():
        report.add("error", "repository", str(root), "not a directory", "set cluster_root")
        return report
    files = secret_files(root, options.secret_pattern)
    tracked = git_tracked(root)
    sops = check_age_key(options, report, bool(files))
    rules = check_sops_config(report, sops, bool(files))
    check_public_key_file(report, sops, rules, tracked, bool(files))
    has_sops = check_tools(options, report, sops)
    plaintexts: dict[str, bytes] = {}
    recipients = check_files(options, report, sops, files, rules, tracked, decrypt=has_sops, plaintexts=plaintexts)
    if not files:
        report.add("info", "secret file", ".", "no *.sops.* file found", "run configure to create them")
    report.credentials = [age.as_dict() for age in check_credential_age(options, report, sops, files, rules, tracked, plaintexts)]
    plaintexts.clear()
    check_git(options, report, tracked)
    holding_key = check_tracked_contents(options, report, tracked)
    in_use = set(sops.keys.recipients) | rules_recipients(rules)
    check_git_history(options, report, tracked, holding_key, in_use)
    check_stale_temps(options, report, tracked)
    check_cluster_vars_modes(options, report)
    check_recovery(options, report, sops, recipients, has_sops)
    check_leftovers(options, report)
    return report
