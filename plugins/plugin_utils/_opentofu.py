# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""OpenTofu (or Terraform) on a cluster repository, with secrets that never touch disk.

``run_opentofu`` is the whole operation behind the opentofu action: init when needed, then plan,
apply or destroy. The infrastructure secrets (``_opentofu_secrets``) reach the binary in the
child's environment only: ``TF_HTTP_USERNAME`` / ``TF_HTTP_PASSWORD`` for the HTTP state backend
and every value as ``TF_VAR_<key>``. Output, streamed progress and error messages are scrubbed of
every secret value before they leave this module. ``init`` is skipped when nothing changed since
the last successful init (``_opentofu_marker``); failures are named by their cause
(``_opentofu_causes``).

A caller that already holds the decrypted secrets (configure, right after rendering) hands them
over, with its ``Sops``: then nothing is decrypted again.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._fileio import atomic_write
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_causes import (
    CAUSE_LABELS,
    Run,
    failure_message,
    missing_binary_message,
    state_address,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_marker import (
    clear_data_dir,
    config_fingerprint,
    data_dir_is_fresh,
    init_reasons,
    remember_warning,
    remembered_warning,
    warning_key,
    write_marker,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import (
    BACKEND_FILE,
    CONFIRMED_COMMANDS,
    EXAMPLE_FILE,
    OpenTofuError,
    TofuOptions,
    remote_backend,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_secrets import InfraSecrets, load_secrets
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_tfvars import tfvars_example
from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import scrub
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops

NOT_CONFIGURED = ("infrastructure secrets are not configured; add `tfstate_password` to `cluster.yaml` to enable "
                  "OpenTofu init (then run configure again)")
# Variables of the caller's environment that must not reach the binary: ours replace them, logging
# could write requests to a file, and the age key has no business in a provider's environment.
# Other TF_HTTP_* settings (retries, mTLS client certificates) pass through.
LOCAL_STATE_WARNING = ("{dir} has no remote state backend: the state is kept in {dir}/terraform.tfstate, which holds "
                       "every variable and resource attribute, secrets included, in plaintext (opentofu_allow_local_state "
                       "is true). Keep it out of git and off shared disks, or add a backend block.")
DROPPED_ENV_PREFIXES = ("TF_VAR_", "TF_HTTP_USERNAME", "TF_HTTP_PASSWORD", "TF_LOG", "SOPS_AGE_KEY")


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
    reasons = init_reasons(options, binary, secrets, local_state=not remote_backend(options.workdir))
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
    fresh = data_dir_is_fresh(options)
    run = run_binary(options, binary, args, secrets, options.progress)
    if run.rc != 0:
        outcome.changed = False
        if fresh and options.data_dir.is_dir():
            # A failed first init leaves the folder as it was (the binary writes the backend settings before it fails).
            clear_data_dir(options)
        raise failure_message(options, run, "init")
    write_marker(options, binary, secrets)
    outcome.initialised = True
    return True


def run_opentofu(options: TofuOptions, check_mode: bool = False, diff: bool = False, *, sops: Sops | None = None,
                 secrets: Mapping[str, Any] | None = None, tfvars: Mapping[str, Mapping[str, Any]] | None = None) -> Outcome:
    """The whole operation behind the opentofu action: init (idempotent), and plan, apply or destroy.

    ``sops``: the repository's door to sops, when the caller has it open (else it is opened here, if needed).
    ``secrets``: the decrypted mapping of ``options.secrets_file``, when the caller holds it (configure, right after
    rendering): then that file is neither read nor decrypted. ``tfvars``: decrypted ``*.tfvars.sops.*`` files the
    caller holds, by path relative to the repository; any other one on disk is decrypted through ``sops``.
    """
    outcome = Outcome(options.command, address=state_address(options.workdir))
    try:
        try:
            return _run(options, outcome, check_mode, diff, lambda: load_secrets(options, sops, secrets, tfvars))
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


def _write_example(options: TofuOptions, outcome: Outcome, check_mode: bool, diff: bool) -> Outcome:
    """``terraform.tfvars.example`` beside the configuration: names and descriptions only, written when it differs."""
    if not options.workdir.is_dir():
        raise OpenTofuError(f"{options.tofu_dir} does not exist: nothing declares variables yet (run configure first, or set "
                            "opentofu_dir)", "usage")
    content = tfvars_example(options.workdir, options.tofu_dir)
    target = options.workdir / EXAMPLE_FILE
    before = target.read_bytes() if target.is_file() else None
    outcome.changed = before != content
    verb = ("would be" if check_mode else "was") + (" written" if before is None else " updated")
    outcome.msg = (f"{options.tofu_dir}/{EXAMPLE_FILE} {verb}" if outcome.changed
                   else f"{options.tofu_dir}/{EXAMPLE_FILE} is up to date")
    if outcome.changed and not check_mode:
        atomic_write(target, content, mode=0o644)
    if diff and outcome.changed:
        outcome.diff = {"before_header": f"{options.tofu_dir}/{EXAMPLE_FILE}", "after_header": f"{options.tofu_dir}/{EXAMPLE_FILE}",
                        "before": (before or b"").decode("utf-8", "replace"), "after": content.decode()}
    return outcome


def _run(options: TofuOptions, outcome: Outcome, check_mode: bool, diff: bool,
         read_secrets: Callable[[], InfraSecrets | None]) -> Outcome:
    command = options.command
    if command == "example":
        return _write_example(options, outcome, check_mode, diff)
    if command in CONFIRMED_COMMANDS and not check_mode and options.confirm != command:
        raise OpenTofuError(f"opentofu_command={command} changes real infrastructure; confirm it with "
                            f"-e opentofu_confirm={command} (or run with --check to see the plan first)", "usage")
    local_state = not remote_backend(options.workdir)
    if local_state and not options.allow_local_state:
        if command == "init":
            outcome.skipped = True
            missing = (f"{options.tofu_dir}/{BACKEND_FILE} does not exist" if not (options.workdir / BACKEND_FILE).is_file()
                       else f"no .tf file in {options.tofu_dir} declares a backend block")
            outcome.msg = f"OpenTofu init skipped: {missing}, so there is no state backend to initialise."
            return outcome
        raise OpenTofuError(f"{options.tofu_dir} has no remote state backend (no backend block in its .tf files, and no "
                            f"{BACKEND_FILE}), so the state would be a local terraform.tfstate holding every secret in "
                            "plaintext. Run configure with tfstate_password set (it renders backend.tf), or add a backend "
                            "block; or accept a local plaintext state with -e opentofu_allow_local_state=true", "config")
    secrets = read_secrets()
    # The backend credentials are required only where the secrets file is (the built-in layer's contract); a
    # tfvars-only project (no secrets file) runs without them.
    if secrets is None or (secrets.has_secrets_file and not secrets.configured):
        if command == "init":
            outcome.skipped = True
            outcome.msg = f"OpenTofu init skipped: {NOT_CONFIGURED}."
            return outcome
        raise OpenTofuError(NOT_CONFIGURED, "secrets")
    if local_state:
        outcome.warnings.append(LOCAL_STATE_WARNING.format(dir=options.tofu_dir))
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
