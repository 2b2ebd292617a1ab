# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenTofu (or Terraform) on a cluster repository, with secrets that never touch disk.

``infrastructure/secrets.sops.yaml`` and any ``*.tfvars.sops.*`` next to the configuration are
decrypted in memory; the HTTP state backend credentials reach the binary as ``TF_HTTP_USERNAME`` /
``TF_HTTP_PASSWORD`` and every value as ``TF_VAR_<key>``, in the child's environment only. Output
and error messages are scrubbed of every secret value before they leave this module.

``init`` is skipped when nothing changed since the last successful init by this module: a marker
in the data directory (``.terraform/cluster.secrets.json``) records a SHA-256 of the configuration
files, a SHA-256 of what init wrote (``.terraform/terraform.tfstate``, which holds the backend
settings but no credentials), the binary's name, and an HMAC of the backend credentials keyed by a
hash of the age identities. It holds no secret; anyone without the age key learns nothing from it.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError, find_age_keys
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import (
    SECRET_NAME_RE,
    is_placeholder,
    load_schema,
    scrub,
    secret_values,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import (
    SOPS_CONFIG_NAME,
    SopsTool,
    SopsToolError,
    find_sops_binary,
    sops_format,
)

TOFU_DIR = "infrastructure/tofu"
SECRETS_FILE = "infrastructure/secrets.sops.yaml"
BACKEND_FILE = "backend.tf"
MARKER_NAME = "cluster.secrets.json"
COMMANDS = ("init", "plan", "apply", "destroy")
CONFIRMED_COMMANDS = ("apply", "destroy")
TFVARS_SOPS_GLOB = "*.tfvars.sops.*"
NOT_CONFIGURED = ("infrastructure secrets are not configured; add `tfstate_password` to `cluster.yaml` to enable "
                  "OpenTofu init (then run configure again)")
TF_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
# Variables of the caller's environment that must not reach the binary: ours replace them, logging
# could write requests to a file, and the age key has no business in a provider's environment.
# Other TF_HTTP_* settings (retries, mTLS client certificates) pass through.
DROPPED_ENV_PREFIXES = ("TF_VAR_", "TF_HTTP_USERNAME", "TF_HTTP_PASSWORD", "TF_LOG", "SOPS_AGE_KEY")
TFVARS_MIN_SECRET_LENGTH = 8

CAUSE_LABELS = {
    "credentials": "credentials rejected", "unreachable": "backend unreachable", "locked": "lock held",
    "registry": "provider registry unreachable",
    "binary": "binary missing", "config": "configuration invalid", "secrets": "secrets unreadable", "failed": "init failed",
}
_CAUSE_PATTERNS = (
    ("credentials", re.compile(r"requires auth|invalid auth|status(?: code)?:? 40[13]\b|unauthori[sz]ed|forbidden", re.IGNORECASE)),
    ("locked", re.compile(r"state lock|already locked|\b423\b|lock(ed)? by", re.IGNORECASE)),
    # Before "unreachable": a registry that does not answer also prints "dial tcp" or "no such host", but the
    # backend answered (init reaches the providers only after the backend is set up).
    ("registry", re.compile(
        r"failed\s+to\s+query\s+available\s+provider\s+packages|could\s+not\s+connect\s+to\s+registry|"
        r"could\s+not\s+query\s+provider\s+registry|failed\s+to\s+request\s+discovery\s+document|"
        r"error\s+accessing\s+remote\s+module\s+registry", re.IGNORECASE)),
    ("unreachable", re.compile(
        r"giving up after|connection refused|no such host|dial tcp|i/o timeout|tls handshake|x509|certificate|"
        r"network is unreachable|context deadline exceeded|failed to get state|server misbehaving|no route to host|"
        r"could not connect", re.IGNORECASE)),
    ("config", re.compile(
        r"problems with the configuration|problems during initiali[sz]ation|unsupported (argument|block)|"
        r"argument or block definition required|missing required argument|unclosed configuration block|"
        r"missing name for|invalid (block|expression|value|reference|character)|reference to undeclared|"
        r"no value for required variable|backend configuration changed|backend initiali[sz]ation required|"
        r"duplicate .* (configuration|declaration)|unsupported .* version", re.IGNORECASE)),
)


class OpenTofuError(Exception):
    """A failure with a cause the user can act on; the message never holds a secret value."""

    def __init__(self, message: str, cause: str = "failed") -> None:
        super().__init__(message)
        self.cause = cause


@dataclass
class TofuOptions:
    root: Path
    command: str = "init"
    binary: str | None = None
    tofu_dir: str = TOFU_DIR
    secrets_file: str = SECRETS_FILE
    age_key_file: str | None = None
    sops_binary: str | None = None
    arguments: list[str] = field(default_factory=list)
    confirm: str = ""
    init_required: bool = False
    timeout: int | None = None
    environ: Mapping[str, str] | None = None
    # Called with every scrubbed output line of plan/apply/destroy while the binary runs (None: output is only returned).
    progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if self.command not in COMMANDS:
            raise OpenTofuError(f"unknown OpenTofu command {self.command!r}; use one of: {', '.join(COMMANDS)}", "usage")

    @property
    def workdir(self) -> Path:
        return self.root / self.tofu_dir

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ

    @property
    def data_dir(self) -> Path:
        return self.workdir / self.env.get("TF_DATA_DIR", ".terraform")


@dataclass
class InfraSecrets:
    """Decrypted infrastructure secrets, held in memory only."""

    values: dict[str, Any] = field(default_factory=dict, repr=False)
    tfvars: dict[str, Any] = field(default_factory=dict, repr=False)
    sources: list[str] = field(default_factory=list)
    mac_key: bytes | None = field(default=None, repr=False)
    skipped_names: list[str] = field(default_factory=list)

    @property
    def username(self) -> str:
        value = self.values.get("tfstate_username")
        return str(value) if value not in (None, "") else "terraform"

    @property
    def password(self) -> str:
        value = self.values.get("tfstate_password")
        return "" if value is None else str(value)

    @property
    def configured(self) -> bool:
        """True when the state backend password is set and not a CHANGE-ME placeholder."""
        return bool(self.password.strip()) and not is_placeholder(self.password)

    def scrub_values(self) -> list[str]:
        """Every value to mask in output: secret-named or writeOnly keys, and whatever tfvars files hold."""
        found = set(secret_values(self.values, load_schema()))
        if self.password:
            found.add(self.password)
        for key, value in _flat_strings(self.tfvars):
            if len(value) >= TFVARS_MIN_SECRET_LENGTH or SECRET_NAME_RE.search(key):
                found.add(value)
        return sorted((v for v in found if v), key=len, reverse=True)

    def http_env(self) -> dict[str, str]:
        return {"TF_HTTP_USERNAME": self.username, "TF_HTTP_PASSWORD": self.password}

    def var_env(self) -> dict[str, str]:
        merged = dict(self.values)
        merged.update(self.tfvars)
        env = {}
        for key, value in merged.items():
            if value is None:
                continue
            if not isinstance(key, str) or not TF_VAR_NAME_RE.match(key):
                self.skipped_names.append(str(key))
                continue
            env[f"TF_VAR_{key}"] = tf_var_value(value)
        return env

    def credentials_mac(self) -> str | None:
        if self.mac_key is None:
            return None
        material = f"{self.username}\0{self.password}".encode()
        return hmac.new(self.mac_key, material, hashlib.sha256).hexdigest()


def _flat_strings(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return [pair for key, item in value.items() for pair in _flat_strings(item, f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(value, list):
        return [pair for item in value for pair in _flat_strings(item, prefix)]
    return [(prefix, value)] if isinstance(value, str) else []


def tf_var_value(value: Any) -> str:
    """How a value is written in a TF_VAR_* variable: strings as they are, the rest as HCL/JSON literals."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, default=str)


# ---------------------------------------------------------------------------- binary and secrets


def find_tofu_binary(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``explicit`` (a path or a name on PATH), else ``tofu``, else ``terraform``."""
    path = (environ if environ is not None else os.environ).get("PATH")
    if explicit:
        found = shutil.which(explicit, path=path) if os.sep not in explicit else (explicit if os.access(explicit, os.X_OK) else None)
        if found is None:
            raise OpenTofuError(f"the OpenTofu binary {explicit} (opentofu_binary) was not found or is not executable", "binary")
        return found
    for name in ("tofu", "terraform"):
        found = shutil.which(name, path=path)
        if found:
            return found
    raise OpenTofuError("neither tofu nor terraform was found on PATH", "binary")


def load_secrets(options: TofuOptions) -> InfraSecrets | None:
    """Decrypt the infrastructure secrets and tfvars files in memory; None when the secrets file is absent."""
    secrets_path = options.root / options.secrets_file
    if not secrets_path.is_file():
        return None
    try:
        keys = find_age_keys(options.root, options.age_key_file, options.environ)
        binary = find_sops_binary(options.sops_binary)
    except (AgeKeyError, SopsToolError) as exc:
        raise OpenTofuError(str(exc), "secrets") from None
    if not keys.identities:
        raise OpenTofuError(f"{options.secrets_file}: no age key to decrypt it (looked in: {keys.where()})", "secrets")
    config = options.root / SOPS_CONFIG_NAME
    tool = SopsTool(options.root, binary, keys.sops_env(), config if config.is_file() else None)
    material = "\n".join(sorted(i.secret for i in keys.identities)).encode()
    secrets = InfraSecrets(mac_key=hashlib.sha256(b"cluster.secrets opentofu credentials v1\0" + material).digest())
    secrets.values = _decrypt_mapping(tool, options.secrets_file)
    secrets.sources.append(options.secrets_file)
    if options.workdir.is_dir():
        for path in sorted(options.workdir.glob(TFVARS_SOPS_GLOB)):
            relpath = path.relative_to(options.root).as_posix()
            secrets.tfvars.update(_decrypt_mapping(tool, relpath))
            secrets.sources.append(relpath)
    return secrets


def _decrypt_mapping(tool: SopsTool, relpath: str) -> dict[str, Any]:
    fmt = sops_format(relpath)
    if fmt not in ("yaml", "json", "dotenv"):
        raise OpenTofuError(f"{relpath}: only YAML, JSON or dotenv files can be turned into TF_VAR_* variables; "
                            "rename it to *.tfvars.sops.yaml or *.tfvars.sops.json", "secrets")
    try:
        plaintext = tool.decrypt(relpath)
    except SopsToolError as exc:
        raise OpenTofuError(str(exc), "secrets") from None
    try:
        if fmt == "dotenv":
            data: Any = {}
            for line in plaintext.decode("utf-8").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    key, _sep, value = line.partition("=")
                    data[key.strip()] = value
        else:
            data = yaml.safe_load(plaintext) if fmt == "yaml" else json.loads(plaintext)
    except (ValueError, yaml.YAMLError):
        raise OpenTofuError(f"{relpath}: the decrypted content does not parse as {fmt}", "secrets") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OpenTofuError(f"{relpath}: the decrypted content must be a mapping of variable names to values", "secrets")
    return data


# ---------------------------------------------------------------------------- init bookkeeping


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


def init_reasons(options: TofuOptions, binary: str, secrets: InfraSecrets) -> list[str]:
    """Why init must run (empty: the directory is initialised for this configuration and these credentials)."""
    backend_state = _file_sha256(options.data_dir / "terraform.tfstate")
    if backend_state is None:
        return ["not initialised yet"]
    marker = read_marker(options)
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


def _data_dir_is_fresh(options: TofuOptions) -> bool:
    """No init has left anything in the data directory (a remembered warning aside)."""
    try:
        return all(entry.name == MARKER_NAME for entry in options.data_dir.iterdir())
    except FileNotFoundError:
        return True


def _clear_data_dir(options: TofuOptions) -> None:
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


def state_address(workdir: Path) -> str | None:
    """The state URL from backend.tf, for messages (an address never holds the credentials here)."""
    try:
        text = (workdir / BACKEND_FILE).read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r'^\s*address\s*=\s*"([^"]*)"', text, re.MULTILINE)
    return match.group(1) if match else None


BUILTIN_BACKEND_MARK = "# Rendered by cluster.secrets from tfstate_url"


def address_fix(options: TofuOptions) -> str:
    """Where the state address comes from, so a message sends the user to the right place to fix it."""
    try:
        text = (options.workdir / BACKEND_FILE).read_text(encoding="utf-8")
    except OSError:
        text = ""
    if BUILTIN_BACKEND_MARK in text:
        return "fix tfstate_url / cloudflare_domain in the cluster vars"
    return (f"the address is set by the repository's own {options.tofu_dir}/{BACKEND_FILE} (or the template it is "
            "rendered from): fix it there")


# ---------------------------------------------------------------------------- running the binary


def child_env(options: TofuOptions, secrets: InfraSecrets) -> dict[str, str]:
    """The binary's environment: the caller's, minus what must not leak, plus the secrets."""
    env = {k: v for k, v in options.env.items() if not k.startswith(DROPPED_ENV_PREFIXES)}
    env.update({"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"})
    if options.command == "init" and not options.init_required:
        # configure only tries: one request to the backend, no retries with back-off, unless the caller says otherwise.
        env.setdefault("TF_HTTP_RETRY_MAX", "0")
    env.update(secrets.var_env())
    env.update(secrets.http_env())
    return env


@dataclass
class Run:
    binary: str
    args: list[str]
    rc: int
    stdout: str
    stderr: str


def run_binary(options: TofuOptions, binary: str, args: list[str], secrets: InfraSecrets,
               progress: Callable[[str], None] | None = None) -> Run:
    """Run the binary with the secrets in its environment; with ``progress``, pass it every output line as it comes,
    scrubbed. What is returned is scrubbed too."""
    values = secrets.scrub_values()
    try:
        if progress is None:
            proc = subprocess.run([binary, *args], cwd=options.workdir, env=child_env(options, secrets), capture_output=True,
                                  text=True, timeout=options.timeout or None, check=False, stdin=subprocess.DEVNULL)
            rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        else:
            rc, stdout, stderr = _stream(options, [binary, *args], child_env(options, secrets), values, progress)
    except FileNotFoundError:
        raise OpenTofuError(f"the OpenTofu binary {binary} disappeared or cannot be run", "binary") from None
    except subprocess.TimeoutExpired:
        raise OpenTofuError(f"`{Path(binary).name} {args[0]}` did not finish within {options.timeout} seconds", "failed") from None
    return Run(Path(binary).name, args, rc, scrub(stdout, values), scrub(stderr, values))


def _stream(options: TofuOptions, argv: list[str], env: dict[str, str], values: list[str],
            progress: Callable[[str], None]) -> tuple[int, str, str]:
    """Run ``argv``, handing each line of stdout and stderr (scrubbed) to ``progress`` as it arrives."""
    proc = subprocess.Popen(argv, cwd=options.workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    captured: dict[str, list[str]] = {"stdout": [], "stderr": []}
    lock = threading.Lock()

    def pump(name: str, stream: Any) -> None:
        for line in stream:
            captured[name].append(line)
            text = scrub(line.rstrip("\n"), values)
            if text.strip():
                with lock:
                    progress(text)
        stream.close()

    readers = [threading.Thread(target=pump, args=(name, getattr(proc, name)), daemon=True) for name in ("stdout", "stderr")]
    for reader in readers:
        reader.start()
    try:
        rc = proc.wait(timeout=options.timeout or None)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        for reader in readers:
            reader.join(timeout=10)
    return rc, "".join(captured["stdout"]), "".join(captured["stderr"])


def error_lines(run: Run, limit: int = 3) -> str:
    """The first few ``Error:`` lines of a run (already scrubbed), or its last lines."""
    lines = [line.strip(" │╷╵").strip() for line in (run.stderr + "\n" + run.stdout).splitlines()]
    picked: list[str] = []
    for index, line in enumerate(lines):
        if line.startswith("Error") and line not in picked:
            detail = line
            following = next((x for x in lines[index + 1:index + 3] if x and not x.startswith("Error")), "")
            if following and len(detail) < 60:
                detail += " " + following
            picked.append(detail)
    if not picked:
        picked = [line for line in lines if line and not line.startswith("20")][-limit:]
    return "; ".join(picked[:limit])[:600] or f"exit status {run.rc}"


def classify(text: str) -> str:
    for cause, pattern in _CAUSE_PATTERNS:
        if pattern.search(text):
            return cause
    return "failed"


def lock_holder(text: str) -> str:
    """The ID of the lock that is in the way (the binary also prints its own lock request, which is not it)."""
    match = re.search(r"already locked: ID=(\S+)", text) or re.search(r"Lock Info:\s*ID:\s*(\S+)", text)
    return f" (lock ID {match.group(1)})" if match else ""


def registry_host(text: str) -> str:
    """The registry named in a provider or module download failure, for messages."""
    match = re.search(r"(?:could not connect to|registry for|https://)\s*(registry\.[A-Za-z0-9.-]+)", text)
    return match.group(1) if match else "the provider registry"


def failure_message(options: TofuOptions, run: Run, command: str) -> OpenTofuError:
    """Name the cause, the detail and what to do next."""
    # Errors go to stderr; stdout may hold a plan whose resource names would mislead the classification.
    text = run.stderr if run.stderr.strip() else run.stdout
    cause = classify(text)
    address = state_address(options.workdir) or "the state backend"
    detail = error_lines(run)
    infra = f"ansible-playbook cluster.secrets.infra -e cluster_root={options.root} -e opentofu_command={command}"
    where = f"`{run.binary} {command}` in {options.tofu_dir}"
    if cause == "credentials":
        message = (f"{where} failed: credentials rejected by {address} ({detail}). Make tfstate_username and "
                   "tfstate_password in cluster.yaml match the state server's (for the tfstate-worker: its USERNAME and "
                   f"PASSWORD secrets), run configure, then `{infra}`.")
    elif cause == "locked":
        message = (f"{where} failed: the state is locked{lock_holder(text)} ({detail}). Wait for the other run to finish, "
                   f"or release a stale lock with `tofu force-unlock <ID>` in {options.tofu_dir}, then `{infra}`.")
    elif cause == "registry":
        registry = registry_host(text)
        message = (f"{where} failed: provider registry unreachable: {registry} did not answer ({detail}). The state "
                   "backend is not the cause. Let the controller reach the registry over HTTPS (DNS, firewall, HTTPS_PROXY), "
                   "or install providers from a mirror (provider_installation in the CLI configuration, "
                   f"TF_CLI_CONFIG_FILE), then run `{infra}`.")
    elif cause == "unreachable":
        message = (f"{where} failed: backend unreachable: {address} did not answer ({detail}). Deploy the state backend "
                   f"(see docs/opentofu.md) or {address_fix(options)}, then run `{infra}`.")
    elif cause == "config":
        message = (f"{where} failed: configuration invalid ({detail}). Fix the .tf files (their templates or cluster.yaml), "
                   f"run configure, then `{infra}`.")
    else:
        message = f"{where} failed with exit status {run.rc} ({detail}). Fix the cause, then run `{infra}`."
    return OpenTofuError(message, cause)


def missing_binary_message(options: TofuOptions, exc: OpenTofuError) -> OpenTofuError:
    return OpenTofuError(
        f"OpenTofu init in {options.tofu_dir} not run: binary missing: {exc}. Install OpenTofu "
        "(https://opentofu.org/docs/intro/install/) or Terraform, or set opentofu_binary; then deploy the state backend "
        f"and run `ansible-playbook cluster.secrets.infra -e cluster_root={options.root} -e opentofu_command=init`.",
        "binary",
    )


# ---------------------------------------------------------------------------- the operations


@dataclass
class Outcome:
    """What happened, without a single secret value."""

    command: str
    changed: bool = False
    failed: bool = False
    skipped: bool = False
    msg: str = ""
    cause: str | None = None
    binary: str | None = None
    address: str | None = None
    initialised: bool = False
    init_reasons: list[str] = field(default_factory=list)
    stdout: str = ""
    rc: int | None = None
    changes_pending: bool | None = None
    variables: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    diff: dict[str, str] | None = None
    # init from configure: what stopped it (also when the warning is not repeated), and whether it was already shown
    problem: str | None = None
    repeated: bool = False
    # what the attempt depended on (binary, configuration, credentials HMAC): identifies a warning across runs
    inputs: list[str] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "changed": self.changed, "msg": self.msg, "command": self.command, "binary": self.binary,
            "state_address": self.address, "initialised": self.initialised, "init_reasons": self.init_reasons,
            "variables": self.variables, "secret_sources": self.sources,
        }
        if self.failed:
            out["failed"] = True
        if self.skipped:
            out["skipped_reason"] = self.msg
        if self.cause:
            out["cause"] = self.cause
        if self.rc is not None:
            out["exit_code"] = self.rc
        if self.changes_pending is not None:
            out["changes_pending"] = self.changes_pending
        if self.stdout:
            out["stdout"] = self.stdout
            out["stdout_lines"] = self.stdout.splitlines()
        if self.warnings:
            out["warnings"] = self.warnings
        if self.problem:
            out["init_problem"] = self.problem
            out["init_problem_repeated"] = self.repeated
        return out


def _init_diff(options: TofuOptions, address: str | None, reasons: list[str]) -> dict[str, str]:
    header = f"{options.tofu_dir}/{options.data_dir.name} (OpenTofu backend)"
    before = "initialised: " + ("no" if reasons and reasons[0].startswith("not initialised") else "yes") + "\n"
    after = f"initialised: yes\nbackend: http {address or '(see backend.tf)'}\n" + "".join(f"because: {r}\n" for r in reasons)
    return {"before_header": header, "after_header": header, "before": before, "after": after}


def ensure_init(options: TofuOptions, binary: str, secrets: InfraSecrets, outcome: Outcome, check_mode: bool,
                diff: bool) -> bool:
    """Run init when needed; True when the directory is (or, in check mode, would be) ready."""
    reasons = init_reasons(options, binary, secrets)
    explicit = options.command == "init" and options.arguments
    if explicit and not reasons:
        reasons = ["extra init arguments were given"]
    outcome.init_reasons = reasons
    if not reasons:
        outcome.initialised = True
        return True
    outcome.changed = True
    if diff:
        outcome.diff = _init_diff(options, outcome.address, reasons)
    if check_mode:
        return False
    args = ["init", "-input=false", "-no-color", *(options.arguments if options.command == "init" else [])]
    fresh = _data_dir_is_fresh(options)
    run = run_binary(options, binary, args, secrets, options.progress)
    if run.rc != 0:
        outcome.changed = False
        if fresh and options.data_dir.is_dir():
            # A failed first init leaves the folder as it was (the binary writes the backend settings before it fails).
            _clear_data_dir(options)
        raise failure_message(options, run, "init")
    write_marker(options, binary, secrets)
    outcome.initialised = True
    return True


def run_opentofu(options: TofuOptions, check_mode: bool = False, diff: bool = False) -> Outcome:
    """The whole operation behind the opentofu action: init (idempotent), and plan, apply or destroy."""
    outcome = Outcome(options.command, address=state_address(options.workdir))
    try:
        try:
            return _run(options, outcome, check_mode, diff)
        except OSError as exc:
            raise OpenTofuError(f"{exc.strerror or exc.__class__.__name__}: {exc.filename}", "failed") from None
    except OpenTofuError as exc:
        # init from configure: a problem here warns and lets configure finish, unless init is required.
        if options.command == "init" and not options.init_required and exc.cause != "usage":
            label = CAUSE_LABELS.get(exc.cause, "init failed")
            key = warning_key(exc.cause, str(exc), outcome.inputs)
            outcome.changed = False
            outcome.cause = exc.cause
            outcome.problem = str(exc)
            outcome.repeated = remembered_warning(options) == key
            if outcome.repeated:
                # The same warning with the same inputs as the last run: say it in one line, not again in full.
                outcome.msg = (f"OpenTofu init still not done: {label}, as on the last run (which warned and said what to do; "
                               "-v shows it again).")
            else:
                outcome.warnings.append(str(exc))
                outcome.msg = f"OpenTofu init did not complete: {label}; configure carries on (the warning says what to do)."
                if not check_mode:
                    remember_warning(options, key)
            return outcome
        outcome.changed = False
        outcome.failed = True
        outcome.cause = exc.cause
        outcome.msg = str(exc)
        return outcome


def _run(options: TofuOptions, outcome: Outcome, check_mode: bool, diff: bool) -> Outcome:
    command = options.command
    if command in CONFIRMED_COMMANDS and not check_mode and options.confirm != command:
        raise OpenTofuError(f"opentofu_command={command} changes real infrastructure; confirm it with "
                            f"-e opentofu_confirm={command} (or run with --check to see the plan first)", "usage")
    if not (options.workdir / BACKEND_FILE).is_file():
        if command == "init":
            outcome.skipped = True
            outcome.msg = f"OpenTofu init skipped: {options.tofu_dir}/{BACKEND_FILE} does not exist, so there is no state backend to initialise."
            return outcome
        raise OpenTofuError(f"{options.tofu_dir}/{BACKEND_FILE} does not exist; run configure first so the state lives "
                            "on the HTTP backend and never in a local plaintext file", "config")
    secrets = load_secrets(options)
    if secrets is None or not secrets.configured:
        if command == "init":
            outcome.skipped = True
            outcome.msg = f"OpenTofu init skipped: {NOT_CONFIGURED}."
            return outcome
        raise OpenTofuError(NOT_CONFIGURED, "secrets")
    outcome.sources = secrets.sources
    outcome.inputs = [config_fingerprint(options.workdir), secrets.credentials_mac() or ""]
    try:
        binary = find_tofu_binary(options.binary, options.env)
    except OpenTofuError as exc:
        raise missing_binary_message(options, exc) from None
    outcome.binary = binary
    outcome.inputs.append(binary)
    ready = ensure_init(options, binary, secrets, outcome, check_mode, diff)
    outcome.variables = sorted(k[len("TF_VAR_"):] for k in secrets.var_env())
    if secrets.skipped_names:
        outcome.warnings.append("not passed as TF_VAR_* (not a valid variable name): " + ", ".join(sorted(set(secrets.skipped_names))))
    if command == "init":
        if outcome.changed:
            outcome.msg = (f"OpenTofu init {'would run' if check_mode else 'ran'} in {options.tofu_dir} "
                           f"(backend {outcome.address or 'http'}; {'; '.join(outcome.init_reasons)}).")
        else:
            outcome.msg = f"OpenTofu is initialised in {options.tofu_dir} (backend {outcome.address or 'http'}); nothing to do."
        return outcome
    if not ready:
        outcome.msg = f"{options.tofu_dir} needs init first ({'; '.join(outcome.init_reasons)}); check mode runs neither init nor {command}."
        return outcome
    init_changed = outcome.changed
    plan_args = ["plan", "-input=false", "-no-color", "-detailed-exitcode", *(["-destroy"] if command == "destroy" else []),
                 *options.arguments]
    plan = run_binary(options, binary, plan_args, secrets, options.progress)
    if plan.rc not in (0, 2):
        raise failure_message(options, plan, command)
    outcome.changes_pending = plan.rc == 2
    if command == "plan" or check_mode or plan.rc == 0:
        outcome.stdout = plan.stdout
        outcome.rc = plan.rc
        outcome.changed = init_changed or (command != "plan" and plan.rc == 2)
        if command == "plan":
            outcome.msg = "OpenTofu plan: " + ("changes pending; review them, then run with opentofu_command=apply."
                                               if plan.rc == 2 else "no changes; the infrastructure matches the configuration.")
        elif plan.rc == 2:
            outcome.msg = f"OpenTofu {command} would change the infrastructure (check mode: nothing applied)."
        else:
            outcome.msg = f"OpenTofu {command}: no changes; nothing to do."
        return outcome
    run = run_binary(options, binary, [command, "-input=false", "-no-color", "-auto-approve", *options.arguments], secrets,
                     options.progress)
    if run.rc != 0:
        raise failure_message(options, run, command)
    outcome.stdout = run.stdout
    outcome.rc = run.rc
    outcome.changed = True
    outcome.msg = f"OpenTofu {command} complete in {options.tofu_dir}."
    return outcome


def opentofu_argument_spec() -> dict[str, Any]:
    """Options of the opentofu action; kept in sync with plugins/modules/opentofu.py."""
    return {
        "cluster_root": {"type": "path", "required": True},
        "age_key_file": {"type": "path", "no_log": False},
        "sops_binary": {"type": "path"},
        "command": {"type": "str", "default": "init", "choices": list(COMMANDS)},
        "confirm": {"type": "str", "default": ""},
        "init_required": {"type": "bool", "default": False},
        "binary": {"type": "str"},
        "tofu_dir": {"type": "str", "default": TOFU_DIR},
        "secrets_file": {"type": "str", "default": SECRETS_FILE, "no_log": False},
        "arguments": {"type": "list", "elements": "str", "default": []},
        "timeout": {"type": "int", "default": 1800},
        "progress": {"type": "bool", "default": True},
    }
