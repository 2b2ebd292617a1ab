# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why an OpenTofu run failed, and what to tell the user: the causes recognised in the binary's (already
scrubbed) output, the state address and where it is set, and the messages that name the cause, the detail and
the next command.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import BACKEND_FILE, OpenTofuError, TofuOptions

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


@dataclass
class Run:
    """One run of the binary, its output already scrubbed of every secret value."""

    binary: str
    args: list[str]
    rc: int
    stdout: str
    stderr: str


BUILTIN_BACKEND_MARK = "# Rendered by cluster.secrets from tfstate_url"


def state_address(workdir: Path) -> str | None:
    """The state URL from backend.tf, for messages (an address never holds the credentials here)."""
    try:
        text = (workdir / BACKEND_FILE).read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r'^\s*address\s*=\s*"([^"]*)"', text, re.MULTILINE)
    return match.group(1) if match else None


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
    """The first cause whose pattern the output matches (the order matters), else ``failed``."""
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
