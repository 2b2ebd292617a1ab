# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a rotation tells: what it did (or would do) and what to do next, or why it stopped.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import PUBLIC_KEY_FILE_NAME
from ansible_collections.cluster.secrets.plugins.plugin_utils._credential_dates import DATES_FILE

MODES = ("age_key", "data_keys")
# A file that holds the age private key itself (the Flux `sops-age` Secret, bootstrap/sops-age.sops.yaml in
# cluster-template) is re-encrypted by the rotation but still holds the old key: only configure re-renders it.
STALE_KEY_NOTE = ("still holds the OLD age private key (rotation re-encrypted it, it cannot rewrite its content): "
                  "configure must re-render it with the new key")
RERUN_CONFIGURE = ("run `ansible-playbook cluster.secrets.configure` now: it re-renders the files that hold the age key "
                   "(the Flux sops-age Secret) with the new key; then apply that Secret to the cluster "
                   "(sops -d bootstrap/sops-age.sops.yaml | kubectl apply -f -) before you push, or Flux cannot decrypt "
                   "files encrypted for the new key")

# Called after each file of a phase is re-encrypted and verified ("add", "remove", "data_keys"; the count so far),
# and with "<phase>:write" and the number of files just before the phase's files are written.
StepHook = Callable[[str, int], None]


class RotateError(Exception):
    """Anything that stops a rotation; the message names files and public keys, never secrets."""


@dataclass
class RotateResult:
    mode: str
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    new_recipient: str | None = None
    removed_recipients: list[str] = field(default_factory=list)
    key_file: str | None = None
    key_backup: str | None = None
    resumed: bool = False
    changed: bool = False
    warnings: list[str] = field(default_factory=list)
    stale_key_files: list[str] = field(default_factory=list)
    # .age-public-key names (or, in check mode, would name) the new public key.
    public_key_file_updated: bool = False
    # .credential-dates.yaml followed the rewritten files (same dates, new content hashes or fingerprints).
    credential_dates_updated: bool = False

    def lines(self, check_mode: bool) -> list[str]:
        verb = "would be" if check_mode else "were"
        if self.mode == "data_keys":
            lines = [f"{len(self.files)} file(s) {verb} given a new data key (same recipients)"]
        else:
            lines = [f"{len(self.files)} file(s) {verb} re-encrypted for a new age key"
                     + (" (an interrupted rotation was resumed)" if self.resumed else "")]
            if self.new_recipient:
                lines.append(f"new public key: {self.new_recipient}")
            if self.removed_recipients:
                lines.append(f"old public key(s) {'to remove' if check_mode else 'removed'}: {', '.join(self.removed_recipients)}")
            if self.key_file:
                lines.append(f"key file: {self.key_file} ({'would hold' if check_mode else 'holds'} the new key)")
            if self.public_key_file_updated:
                lines.append(f"{PUBLIC_KEY_FILE_NAME} {'would name' if check_mode else 'names'} the new public key: commit it")
            if self.key_backup:
                lines.append(f"old key kept in {self.key_backup} (mode 0600): store it safely, then delete it")
        if self.credential_dates_updated:
            lines.append(f"{DATES_FILE} follows the rotation (every date kept): commit it with the files")
        lines += [f"rotated: {f}" for f in self.files]
        lines += [f"skipped: {f}" for f in self.skipped]
        if self.mode == "age_key" and (self.files or self.stale_key_files):
            lines += [f"{f}: {STALE_KEY_NOTE}" for f in self.stale_key_files]
            lines.append(("after the rotation, " if check_mode else "next: ") + RERUN_CONFIGURE
                         + ("" if check_mode or self.stale_key_files else
                            " (no file here held the old key; rerun it anyway if one renders the key)"))
        return lines
