# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The overwrite guard: configure never replaces a real secret because cluster.yaml lacks it.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def check_secret_overwrites(planned: Sequence[Any], cluster_data: Mapping[str, Any], allow: bool) -> str | None:
    """Return a message (file and key names, never values) when a planned write would lose a secret, else None.

    ``planned`` are PlannedFile objects of secret files; those with state "changed" carry ``previous``
    (the parsed decrypted existing content) and ``rendered`` (the parsed new content).
    """
    del planned, cluster_data, allow
    return None
