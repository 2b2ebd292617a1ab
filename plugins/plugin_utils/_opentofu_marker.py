# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenTofu init bookkeeping: whether init must run, and which warning was already shown.

A marker in the data directory (``.terraform/cluster.secrets.json``, mode 0600) records a SHA-256
of the configuration files, a SHA-256 of what init wrote (``.terraform/terraform.tfstate``, which
holds the backend settings but no credentials), the binary's name, and an HMAC of the backend
credentials keyed by the age identities (``InfraSecrets.credentials_mac``). It also remembers the
last warning shown, by a digest of its cause, text and inputs. It holds no secret; anyone without
the age key learns nothing from it.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import TofuOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_secrets import InfraSecrets

MARKER_NAME = "cluster.secrets.json"


def config_fingerprint(workdir: Path) -> str:
    """SHA-256 over the names and bytes of the configuration files init reads."""
    digest = hashlib.sha256(b"cluster.secrets opentofu config v1\0")
    for path in sorted(list(workdir.glob("*.tf")) + list(workdir.glob("*.tf.json")) + list(workdir.glob("*.tofu"))):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def expected_marker(options: TofuOptions, binary: str, secrets: InfraSecrets) -> dict[str, Any]:
    return {
        "version": 1,
        "binary": Path(binary).name,
        "config": config_fingerprint(options.workdir),
        "credentials": secrets.credentials_mac(),
    }


def read_marker(options: TofuOptions) -> dict[str, Any] | None:
    try:
        data = json.loads((options.data_dir / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == 1 else None


def init_reasons(options: TofuOptions, binary: str, secrets: InfraSecrets, local_state: bool = False) -> list[str]:
    """Why init must run (empty: the directory is initialised for this configuration and these credentials).

    ``local_state``: the configuration has no remote backend, so init writes no backend settings to compare."""
    backend_state = _file_sha256(options.data_dir / "terraform.tfstate")
    marker = read_marker(options)
    if backend_state is None and (not local_state or marker is None or "config" not in marker):
        return ["not initialised yet"]
    if marker is None:
        return ["not initialised by cluster.secrets yet"]
    expected = expected_marker(options, binary, secrets)
    reasons = []
    if marker.get("binary") != expected["binary"]:
        reasons.append(f"the binary changed ({marker.get('binary')} -> {expected['binary']})")
    if marker.get("config") != expected["config"]:
        reasons.append("the configuration changed")
    if marker.get("backend_state") != backend_state:
        reasons.append("the backend settings were changed outside cluster.secrets")
    if expected["credentials"] is None or not hmac.compare_digest(str(marker.get("credentials")), expected["credentials"]):
        reasons.append("the backend credentials changed")
    return reasons


def write_marker(options: TofuOptions, binary: str, secrets: InfraSecrets) -> None:
    """Record a successful init (and forget any warning remembered before it)."""
    marker = expected_marker(options, binary, secrets)
    marker["backend_state"] = _file_sha256(options.data_dir / "terraform.tfstate")
    _store_marker(options, marker)


def _store_marker(options: TofuOptions, marker: dict[str, Any]) -> None:
    atomic_write(options.data_dir / MARKER_NAME, (json.dumps(marker, indent=2, sort_keys=True) + "\n").encode(), mode=0o600)


def warning_key(cause: str, message: str, inputs: list[str]) -> str:
    """What identifies a warning across runs: its cause, its text without numbers (addresses, ports, timings
    vary), and the inputs of the attempt (binary, configuration, an HMAC of the credentials). Holds no secret."""
    digest = hashlib.sha256(b"cluster.secrets opentofu warning v1\0")
    for part in (cause, re.sub(r"\d+", "#", message), *inputs):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def remembered_warning(options: TofuOptions) -> str | None:
    marker = read_marker(options)
    return str(marker["warned"]) if marker and marker.get("warned") else None


def remember_warning(options: TofuOptions, key: str) -> None:
    """Note, in the marker, that this warning was shown, so an unchanged rerun does not show it again."""
    if not options.workdir.is_dir():
        return
    marker = read_marker(options) or {"version": 1}
    if marker.get("warned") == key:
        return
    marker["warned"] = key
    _store_marker(options, marker)


def data_dir_is_fresh(options: TofuOptions) -> bool:
    """No init has left anything in the data directory (a remembered warning aside)."""
    try:
        return all(entry.name == MARKER_NAME for entry in options.data_dir.iterdir())
    except FileNotFoundError:
        return True


def clear_data_dir(options: TofuOptions) -> None:
    """Remove what a failed first init left, keeping the marker (it holds the remembered warning)."""
    for entry in options.data_dir.iterdir():
        if entry.name == MARKER_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if not any(options.data_dir.iterdir()):
        options.data_dir.rmdir()
