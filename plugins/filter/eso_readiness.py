# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The eso_readiness filter (documentation in eso_readiness.yml)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_manifests import readiness_problems


def eso_readiness(resources: Any, expected: Any) -> list[str]:
    if not isinstance(resources, list) or not all(isinstance(r, Mapping) for r in resources):
        raise AnsibleFilterError("eso_readiness: the input must be a list of Kubernetes objects (k8s_info's resources)")
    if isinstance(expected, str):
        expected = [expected]
    if not isinstance(expected, list) or not all(isinstance(e, str) for e in expected):
        raise AnsibleFilterError("eso_readiness: expected must be a list of Kind/namespace/name strings")
    return readiness_problems(resources, expected)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"eso_readiness": eso_readiness}
