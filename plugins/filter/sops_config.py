# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import RECIPIENT_RE
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import default_sops_config


def sops_config(recipients: Any) -> str:
    """The cluster-template style .sops.yaml for one or more age recipients."""
    if isinstance(recipients, str):
        recipients = [recipients]
    if not isinstance(recipients, (list, tuple)) or not recipients:
        raise AnsibleFilterError("sops_config expects an age recipient (age1...) or a non-empty list of them")
    for recipient in recipients:
        if not isinstance(recipient, str) or not RECIPIENT_RE.match(recipient):
            raise AnsibleFilterError("sops_config: every recipient must be an age public key starting with age1")
    return default_sops_config(recipients)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sops_config": sops_config}
