# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typo hints for the cluster vars: an unknown key that is likely a misspelling of a known one ("did you mean").

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars


def _osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (edits, with adjacent swaps counted once)."""
    rows = [[0] * (len(b) + 1) for _row in range(len(a) + 1)]
    for i in range(len(a) + 1):
        rows[i][0] = i
    for j in range(len(b) + 1):
        rows[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[len(a)][len(b)]


def likely_misspelling(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` likely misspells (same but for case, or one or two edits away), or None."""
    lowered = name.lower()
    best: tuple[int, str] | None = None
    for candidate in known:
        if candidate == name:
            return None
        if candidate.lower() == lowered:
            return candidate
        limit = 1 if len(candidate) < 6 else 2
        if abs(len(candidate) - len(name)) > limit:
            continue
        distance = _osa_distance(lowered, candidate.lower())
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def check_misspellings(cluster: ClusterVars, schema: Mapping[str, Any], known_keys: Iterable[str]) -> None:
    """Add a finding to ``cluster`` for every top-level or node key that is likely a misspelling of a schema key."""
    allowed = set(known_keys)
    known = list(schema.get("properties", {}))
    for key in cluster.data:
        if not isinstance(key, str) or key in known or key in allowed:
            continue
        guess = likely_misspelling(key, known)
        if guess:
            cluster.add((key,), f"unknown key, likely a misspelling of '{guess}'",
                        f"rename it to {guess}; if it is your own key, add it to known_keys")
    node_known = list(schema.get("properties", {}).get("nodes", {}).get("items", {}).get("properties", {}))
    for index, node in enumerate(cluster.data.get("nodes") or []):
        if not isinstance(node, dict):
            continue
        for key in node:
            if isinstance(key, str) and key not in node_known and key not in allowed:
                guess = likely_misspelling(key, node_known)
                if guess:
                    cluster.add(("nodes", index, key), f"unknown key, likely a misspelling of '{guess}'", f"rename it to {guess}")
