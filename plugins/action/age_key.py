# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of cluster.secrets.age_key (documentation in plugins/modules/age_key.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction
from ansible_collections.cluster.secrets.plugins.plugin_utils._age import AgeKeyError, find_age_keys, generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import AGE_KEY_SPEC


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
            return result
        target = Path(args["age_key_file"]) if args["age_key_file"] else root / "age.key"
        if not args["generate"]:
            result.update(failed=True, msg=f"no age key found (looked in: {keys.where()})")
            return result
        result.update(changed=True, path=str(target))
        if self.check_mode:
            result["msg"] = f"a new age key would be written to {target}"
            return result
        try:
            recipient = generate_key_file(target)
        except (AgeKeyError, OSError) as exc:
            result.update(failed=True, msg=f"cannot create {target}: {exc}")
            return result
        result.update(recipient=recipient, recipients=[recipient],
                      msg=f"generated a new age key in {target} (mode 0600); back it up: it is the only way to decrypt")
        return result

    def error_message(self, exc: Exception, args: dict[str, Any]) -> str:
        # The key search names places and files, never a key: its message is shown as it is.
        return str(exc) if isinstance(exc, AgeKeyError) else super().error_message(exc, args)
