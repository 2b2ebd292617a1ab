#!/usr/bin/python
# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: render
short_description: Render a cluster repository from cluster.yaml and SOPS-encrypt its secrets
version_added: 0.1.0
description:
  - Loads C(cluster.yaml) (and C(nodes.yaml)) as data, validates it against the collection's JSON Schema,
    and reports every problem at once with file, line and key path, never with a secret value.
  - "Renders the template tree with makejinja conventions (delimiters C(#{ }#), C(#% %#), comments C(#| #|),
    the C(.j2) suffix stripped). The repository's C(templates/) folder, or the inputs its C(makejinja.toml)
    names, layer over the collection's built-in templates."
  - Encrypts every rendered C(*.sops.*) file with sops according to C(.sops.yaml) (generated from the age
    public key when absent). Plaintext reaches sops on stdin only.
  - Writes atomically and only what changed. A secret file is rewritten only when its decrypted data
    differs from the rendered data or its recipients changed, so a rerun with unchanged input writes nothing.
  - Keeps C(.credential-dates.yaml) at the repository root (mode 0644, to commit), which records for every key path
    of every secret file of the repository the day its value last changed and a keyed fingerprint of the value
    (HMAC-SHA256 with a key derived from the repository's age identity), never the value. Secret files the task does
    not render are decrypted only when their bytes differ from the ones recorded. The file is part of the change set,
    so check mode writes nothing and diff mode shows it.
  - Runs on the controller.
extends_documentation_fragment:
  - cluster.secrets.repository
  - cluster.secrets.cluster_vars
  - cluster.secrets.sops
  - cluster.secrets.attributes
options:
  templates:
    description:
      - Extra template folders, placed before the repository's own (the first folder that has a file wins).
    type: list
    elements: path
    default: []
  builtin_templates:
    description:
      - Include the collection's built-in templates (infrastructure secrets and OpenTofu backend) as the last layer.
    type: bool
    default: true
  exclude_patterns:
    description:
      - Glob patterns (as in makejinja) of template files not to render, in addition to C(makejinja.toml)'s.
    type: list
    elements: str
    default: []
  secret_pattern:
    description:
      - Regular expression on the output path that marks a file as a secret to encrypt.
    type: str
    default: '\.sops\.[^/]+$'
  known_keys:
    description:
      - Keys of your own in C(cluster.yaml) that look like a misspelling of a known key but are intended.
    type: list
    elements: str
    default: []
  cache:
    description:
      - Remember, per secret file, a hash of the ciphertext and an HMAC of the plaintext (keyed by the age
        identities) so unchanged secrets need not be decrypted on the next run.
      - The cache holds no secret; without it (or when it does not match) files are decrypted and compared.
    type: bool
    default: true
  cache_dir:
    description:
      - Where the cache lives. Defaults to C($XDG_CACHE_HOME/cluster.secrets) or C(~/.cache/cluster.secrets).
    type: path
  allow_secret_overwrite:
    description:
      - Let configure replace an existing secret value with an empty or different one even when the new value only
        comes from a key missing in C(cluster.yaml). Without it such a run stops before writing anything and names the
        files and keys (see the migration playbook).
    type: bool
    default: false
  undefined:
    description:
      - What to do with an undefined value printed into a rendered file. makejinja prints it as empty text when
        C(makejinja.toml) sets C(undefined = "chainable") or C("default"), which is how a missing value silently
        renders an empty secret.
      - V(warn) lists every such value (template, line, variable name; never a value) in one warning.
      - V(strict) makes them an error before anything is written. Tests such as C(if node.secureboot) are not
        affected, they follow C(makejinja.toml)'s C(undefined) setting as in makejinja.
    type: str
    choices: [warn, strict]
    default: warn
  lock_timeout:
    description:
      - Seconds to wait while another run (configure, migrate, rotate) holds the repository; then the task fails
        and says who holds it. Two runs never write one repository at once.
    type: float
    default: 120.0
  opentofu:
    description:
      - Initialise the OpenTofu state backend after writing, in the same task, as M(cluster.secrets.opentofu) with
        O(cluster.secrets.opentofu#module:command=init) does. The infrastructure secrets come from what this task
        rendered, in memory; nothing is decrypted again.
      - Omitted, no OpenTofu step runs. The C(cluster.secrets.configure) playbook sets it.
      - A problem warns and lets configure finish, unless O(opentofu.init_required) is set.
    type: dict
    suboptions:
      init_required:
        description: Fail instead of warning when init cannot run or fails.
        type: bool
        default: false
      binary:
        description: C(tofu) or C(terraform), a path or a name on C(PATH); omitted means C(tofu), else C(terraform).
        type: str
      tofu_dir:
        description: The OpenTofu folder, relative to O(cluster_root).
        type: str
        default: infrastructure/tofu
      secrets_file:
        description: The encrypted infrastructure secrets, relative to O(cluster_root).
        type: str
        default: infrastructure/secrets.sops.yaml
      timeout:
        description: Seconds the binary may take (0 is no limit).
        type: int
        default: 1800
  external_secrets:
    description:
      - Write the External Secrets Operator's GitOps tree after rendering, in the same task, when the cluster vars set
        C(external_secrets.enabled) and the mode is C(gitops), as M(cluster.secrets.eso_manifests) does with the
        settings from the cluster vars. The cluster vars and the sops setup of this task are used; nothing is loaded
        again.
      - Omitted, no External Secrets step runs here (the apply mode always needs the C(external_secrets) role).
    type: dict
    suboptions:
      prune:
        description: Delete files of the tree that are no longer managed (else they are kept and named in a warning).
        type: bool
        default: false
attributes:
  check_mode:
    support: full
    details: Computes what would change and writes no file.
  diff_mode:
    support: full
    details: Ordinary files show a text diff; secret files show only the names of the keys that changed.
  action_group:
    membership:
      - cluster.secrets.cluster_secrets
      - cluster.secrets.cluster_vars
      - cluster.secrets.sops
author:
  - cluster.secrets contributors (@cluster-secrets)
"""

EXAMPLES = r"""
- name: Render and encrypt the repository in the current directory
  cluster.secrets.render:
    cluster_root: "{{ playbook_dir }}"

- name: Use an explicit age key and an extra template folder
  cluster.secrets.render:
    cluster_root: /srv/home-ops
    age_key_file: /srv/keys/age.key
    templates:
      - /srv/home-ops/templates/overrides
"""

RETURN = r"""
external_secrets:
  description:
    - What writing the External Secrets GitOps tree changed (created, updated, unchanged, removed, stale, msg).
  returned: when O(external_secrets) is set and the cluster vars enable the GitOps mode
  type: dict
external_secrets_written:
  description: The GitOps tree was handled by this task, so the C(external_secrets) role has nothing left to do.
  returned: when O(external_secrets) is set and the cluster vars enable the GitOps mode
  type: bool
opentofu:
  description:
    - What the OpenTofu init did, as M(cluster.secrets.opentofu) returns it (never a secret value).
  returned: when O(opentofu) is set
  type: dict
created:
  description: Files that were (or in check mode would be) created, relative to O(cluster_root).
  returned: success
  type: list
  elements: str
updated:
  description: Files that were (or would be) rewritten because their content changed.
  returned: success
  type: list
  elements: str
unchanged:
  description: Number of rendered files left as they were.
  returned: success
  type: int
secrets_created:
  description: Secret files encrypted for the first time.
  returned: success
  type: list
  elements: str
secrets_updated:
  description: Secret files re-encrypted because their data or recipients changed.
  returned: success
  type: list
  elements: str
secrets_unchanged:
  description: Number of secret files left byte-for-byte as they were.
  returned: success
  type: int
plaintext_gitignored:
  description:
    - Plain (not C(*.sops.*)) files that hold a secret value from the cluster vars and that git ignores, so they stay
      on this machine; they are written with mode 0600.
  returned: success
  type: list
  elements: str
undefined_printed:
  description: Undefined values printed into rendered files, each as C(template:line) and the variable name; never a value.
  returned: success
  type: list
  elements: str
kept:
  description: Existing files left alone because C(makejinja.toml) does not set C(force = true).
  returned: success
  type: list
  elements: str
msg:
  description: The counts of files created, updated, unchanged and encrypted, and the plaintext files git ignores; on
    failure, what is wrong, where, and what to do.
  returned: always
  type: str
credentials_changed:
  description:
    - Number of secret values (key paths of secret files) new or changed since C(.credential-dates.yaml) was last
      written, so dated anew in it. 0 for a run that found nothing to do.
  returned: success
  type: int
summary:
  description:
    - What a person reads after the run, one item per line, each said once, no secret value.
    - The counts first, then each file created or updated (up to 20 of each; RV(created) and RV(updated) list all),
      the plaintext files git ignores, and what needs attention.
  returned: success
  type: list
  elements: str
external_secrets_enabled:
  description: Whether the cluster vars set C(external_secrets.enabled), so the configure playbook wires the External
    Secrets Operator.
  returned: success
  type: bool
"""
