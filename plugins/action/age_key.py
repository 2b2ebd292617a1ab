# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.age_key (documentation in plugins/modules/age_key.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction
from ansible_collections.cluster.secrets.plugins.plugin_utils._age import (
    PUBLIC_KEY_FILE_NAME,
    AgeKeyError,
    ensure_public_key_file,
    find_age_keys,
    generate_key_file,
    read_public_key_file,
    repository_recipient,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import AGE_KEY_SPEC
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import SOPS_CONFIG_NAME


class ActionModule(ClusterSecretsAction):
    ARGUMENT_SPEC = AGE_KEY_SPEC

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        root = Path(args["cluster_root"])
        explicit = args["age_key_file"] if args["age_key_file"] and Path(args["age_key_file"]).exists() else None
        keys = find_age_keys(root, explicit)
        result["looked"] = keys.looked
        if keys.primary is not None:
            result.update(changed=False, path=keys.primary.source, recipient=keys.primary.recipient,
                          recipients=keys.recipients, msg=f"age key found in {keys.primary.source}")
            return self.publish(root, keys.recipients, result)
        target = Path(args["age_key_file"]) if args["age_key_file"] else root / "age.key"
        if not args["generate"]:
            result.update(failed=True, msg=f"no age key found (looked in: {keys.where()})")
            return result
        result.update(changed=True, path=str(target))
        if self.check_mode:
            result["msg"] = f"a new age key would be written to {target}"
            if not read_public_key_file(root).exists:
                result.update(public_key_file=str(root / PUBLIC_KEY_FILE_NAME),
                              msg=result["msg"] + f", and its public key to {PUBLIC_KEY_FILE_NAME}")
            return result
        try:
            recipient = generate_key_file(target)
        except (AgeKeyError, OSError) as exc:
            result.update(failed=True, msg=f"cannot create {target}: {exc}")
            return result
        result.update(recipient=recipient, recipients=[recipient],
                      msg=f"generated a new age key in {target} (mode 0600); back it up: it is the only way to decrypt")
        return self.publish(root, [recipient], result)

    def publish(self, root: Path, recipients: list[str], result: dict[str, Any]) -> dict[str, Any]:
        """Write the repository's public key to .age-public-key when it is absent (check mode: say so)."""
        recipient = repository_recipient(root, recipients)
        if recipient is None:
            why = (f"none of the age keys found is a recipient of {SOPS_CONFIG_NAME} (run doctor)" if recipients else
                   "the public key of the age key cannot be derived here (install age-keygen)")
            result.setdefault("warnings", []).append(f"{PUBLIC_KEY_FILE_NAME} was not written: {why}")
            return result
        outcome = ensure_public_key_file(root, recipient, check_mode=self.check_mode)
        result["public_key_file"] = str(outcome.path)
        if outcome.changed:
            result.update(changed=True, msg=f"{result['msg']}; {outcome.message}")
        if outcome.warning:
            result.setdefault("warnings", []).append(outcome.warning)
        return result

    def error_message(self, exc: Exception, args: dict[str, Any]) -> str:
        # The key search names places and files, never a key: its message is shown as it is.
        return str(exc) if isinstance(exc, AgeKeyError) else super().error_message(exc, args)
