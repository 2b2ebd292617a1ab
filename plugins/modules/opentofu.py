#!/usr/bin/python
# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: opentofu
short_description: Run OpenTofu init, plan, apply or destroy with SOPS-encrypted secrets passed in memory
version_added: 0.1.0
description:
  - Decrypts C(infrastructure/secrets.sops.yaml), every C(*.tfvars.sops.*) file and every C(*.tfvars.enc) file
    (such as C(terraform.tfvars.enc), an HCL tfvars file encrypted whole by sops) in the OpenTofu folder in memory
    and runs C(tofu) (else C(terraform)) with the HTTP state backend credentials as E(TF_HTTP_USERNAME) and
    E(TF_HTTP_PASSWORD), and every decrypted value as E(TF_VAR_<key>), in the child process environment only.
    No plaintext tfvars file, plan file or log is written.
  - The secrets file is optional when tfvars files exist; such a tfvars-only project needs no C(tfstate_password),
    and no state backend credentials are passed.
  - Reading C(*.tfvars.enc) needs the Python package C(python-hcl2) on the controller.
  - C(init) runs only when a C(.tf) file declares a remote state backend (or O(allow_local_state=true)) and, when the
    secrets file exists, C(tfstate_password) is set and not a C(CHANGE-ME) placeholder; otherwise it is skipped with
    a one-line reason. It is also skipped when nothing changed since the last
    successful init (configuration files, backend settings, binary and credentials), so a rerun reports no change.
  - An C(init) failure becomes a warning that names the cause (credentials rejected, backend unreachable, provider
    registry unreachable, lock held, binary missing, configuration invalid) and the next step, unless
    O(init_required=true). The warning is shown once; a rerun that fails the same way with the same binary,
    configuration and credentials says so in RV(msg) without repeating it (the marker in the data directory remembers
    it; RV(init_problem) always holds the whole text).
  - C(plan), C(apply) and C(destroy) initialise first when needed; their output is returned with every secret value
    masked. C(apply) and C(destroy) need O(confirm) set to the command's name.
  - With O(progress=true), the output of C(plan), C(apply) and C(destroy) (and of C(init) when O(init_required=true))
    is also shown line by line while the binary runs, masked the same way, on standard error.
  - Runs on the controller.
extends_documentation_fragment:
  - cluster.secrets.repository
  - cluster.secrets.sops
  - cluster.secrets.attributes
options:
  command:
    description:
      - What to run. C(init) alone never changes infrastructure.
      - C(apply) runs C(plan -detailed-exitcode) first and applies only when it reports changes.
      - C(example) writes C(terraform.tfvars.example) in O(tofu_dir), every variable the C(.tf) files declare with its
        description and no value (for a C(terraform.tfvars.enc) to be made from), and needs neither the binary nor
        any secret.
    type: str
    choices: [init, plan, apply, destroy, example]
    default: init
  confirm:
    description:
      - Must equal O(command) for C(apply) and C(destroy) (not needed in check mode).
    type: str
    default: ""
  init_required:
    description:
      - Make a failed or impossible C(init) fail the task instead of warning.
      - Only affects O(command=init); the other commands always fail on error.
    type: bool
    default: false
  binary:
    description:
      - The binary to run, a path or a name on E(PATH). Defaults to C(tofu), else C(terraform).
    type: str
  tofu_dir:
    description:
      - The OpenTofu configuration folder, relative to O(cluster_root).
    type: str
    default: infrastructure/tofu
  secrets_file:
    description:
      - The SOPS-encrypted YAML file with C(tfstate_username), C(tfstate_password) and the provider secrets,
        relative to O(cluster_root).
    type: str
    default: infrastructure/secrets.sops.yaml
  arguments:
    description:
      - Extra arguments for the command (for example C(-target=...), or C(-reconfigure) with O(command=init)).
      - Do not put secrets here; they belong in the encrypted files.
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds each run of the binary may take; C(0) means no limit.
    type: int
    default: 1800
  progress:
    description:
      - Show the binary's output while it runs (every secret value masked), on standard error so that a
        machine-read standard output stays valid.
      - Applies to C(plan), C(apply), C(destroy), and to C(init) when O(init_required=true).
    type: bool
    default: true
  allow_local_state:
    description:
      - Run even when no C(.tf) file in O(tofu_dir) declares a remote state backend (a C(backend) block other than
        C(local), or C(cloud)). The state is then a local C(terraform.tfstate) in O(tofu_dir), which holds every
        variable and resource attribute, secrets included, in plaintext; the task warns about it.
      - When false, C(plan), C(apply) and C(destroy) refuse such a configuration and C(init) is skipped.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Reports whether init would run without running it; C(plan) runs (it changes nothing); C(apply) and
      C(destroy) only plan and report whether they would change anything.
  diff_mode:
    support: partial
    details: For init, shows the backend address and why init runs; never a credential.
  action_group:
    membership:
      - cluster.secrets.cluster_secrets
      - cluster.secrets.sops
notes:
  - The task takes no secret as an argument and returns none, so it needs no C(no_log); output is scrubbed of
    every decrypted secret value before it is returned.
  - Inherited E(TF_LOG*), E(TF_VAR_*), E(TF_HTTP_*) and E(SOPS_AGE_KEY*) variables are not passed to the binary.
author:
  - cluster.secrets contributors (@cluster-secrets)
"""

EXAMPLES = r"""
- name: Initialise the HTTP state backend when its credentials are configured
  cluster.secrets.opentofu:
    cluster_root: /srv/home-ops

- name: Show the plan
  cluster.secrets.opentofu:
    cluster_root: /srv/home-ops
    command: plan
  register: plan

- name: Apply, explicitly confirmed
  cluster.secrets.opentofu:
    cluster_root: /srv/home-ops
    command: apply
    confirm: apply
"""

RETURN = r"""
msg:
  description: One-line summary, or the reason init was skipped or failed.
  returned: always
  type: str
command:
  description: The command that was asked for.
  returned: always
  type: str
binary:
  description: Path of the binary that ran.
  returned: when one was found
  type: str
state_address:
  description: The HTTP backend's state URL, read from C(backend.tf).
  returned: always
  type: str
initialised:
  description: Whether the folder is initialised for the current backend settings and credentials.
  returned: always
  type: bool
init_reasons:
  description: Why init ran (or would run); empty when it was not needed.
  returned: always
  type: list
  elements: str
cause:
  description: >-
    On failure or a warning: C(credentials), C(unreachable), C(registry), C(locked), C(binary), C(config),
    C(secrets), C(usage) or C(failed).
  returned: when something went wrong
  type: str
init_problem:
  description: What stopped init when it only warns (configure), in full, scrubbed of secret values.
  returned: when init did not complete and O(init_required=false)
  type: str
init_problem_repeated:
  description: Whether RV(init_problem) is the same as on the last run, with the same inputs, so no warning was shown.
  returned: when init did not complete and O(init_required=false)
  type: bool
skipped_reason:
  description: Why init did not run (no C(backend.tf), or no C(tfstate_password)); the task is not reported as skipped.
  returned: when there was nothing to initialise
  type: str
variables:
  description: Names (never values) of the variables passed as E(TF_VAR_*).
  returned: always
  type: list
  elements: str
secret_sources:
  description: The encrypted files the values came from.
  returned: always
  type: list
  elements: str
changes_pending:
  description: Whether the plan had changes (C(plan -detailed-exitcode) returned 2).
  returned: for plan, apply and destroy
  type: bool
stdout:
  description: Output of plan, apply or destroy, with every secret value masked.
  returned: for plan, apply and destroy
  type: str
stdout_lines:
  description: RV(stdout) split into lines.
  returned: for plan, apply and destroy
  type: list
  elements: str
exit_code:
  description: Exit status of the last run of the binary (a plan with changes exits with 2; that is not a failure).
  returned: for plan, apply and destroy
  type: int
"""
