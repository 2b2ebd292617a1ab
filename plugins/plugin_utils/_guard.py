# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The overwrite guard: configure never replaces a real secret because cluster.yaml lacks it.

configure compares, for every secret file it is about to rewrite, the decrypted existing
content (``previous``) with the newly rendered one (``rendered``). A key path whose old value
is *real* (not empty, not a ``CHANGE-ME`` placeholder) is a loss when:

1. its new value is empty, a placeholder, or the key disappears: always, whatever cluster.yaml
   says (a real secret is never blanked without the override);
2. its new value differs and the key's name (the last part of the path, compared without case)
   is a known cluster.yaml key, from the schema or the file itself, that cluster.yaml does not
   set: the new value can then only come from a template default (``default('terraform')``).

A different value for a key that cluster.yaml does set is an ordinary, intended change. So is a
different value for a key that cannot be traced to a cluster.yaml key (a template of your own
that computes it): the guard only stops what it can attribute to a missing key.

Messages name files and key paths, never values.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import is_placeholder
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import load_schema

MIGRATE_COMMAND = "ansible-playbook cluster.secrets.migrate -e cluster_root=<repository>"
OVERRIDE_VARIABLE = "configure_allow_secret_overwrite"
_MISSING = object()


@dataclass(frozen=True)
class Loss:
    """One key path of one secret file whose real value configure would lose."""

    file: str
    key: str
    reason: str


def is_real(value: Any) -> bool:
    """A value worth protecting: not missing, not empty, not a CHANGE-ME placeholder."""
    if value is _MISSING or value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip()) and not is_placeholder(value)
    if isinstance(value, bytes):
        return bool(value.strip())
    if isinstance(value, (Mapping, list)):
        return bool(value)
    return True


def flatten_document(value: Any) -> dict[str, Any]:
    """Key paths (``a.b[0].c``) to leaf values of a parsed secret document."""
    if value is None:
        return {}
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (Mapping, type(None))):
        value = value[0] or {}
    if isinstance(value, (bytes, str)):
        return {"(file content)": value}
    out: dict[str, Any] = {}

    def walk(item: Any, prefix: str) -> None:
        if isinstance(item, Mapping):
            for key, child in item.items():
                walk(child, f"{prefix}.{key}" if prefix else str(key))
            if not item and prefix:
                out[prefix] = {}
        elif isinstance(item, list):
            for index, child in enumerate(item):
                walk(child, f"{prefix}[{index}]")
            if not item and prefix:
                out[prefix] = []
        else:
            out[prefix or "(document)"] = item

    walk(value, "")
    return out


def _leaf_name(path: str) -> str:
    return path.rsplit(".", 1)[-1].split("[", 1)[0]


def find_losses(path: str, previous: Any, rendered: Any, cluster_data: Mapping[str, Any],
                known_keys: Iterable[str]) -> list[Loss]:
    """Every key path of one file whose real value would be lost (see the module docstring for the rule)."""
    before, after = flatten_document(previous), flatten_document(rendered)
    lowered_known = {str(k).lower() for k in known_keys} | {str(k).lower() for k in cluster_data}
    present = {str(k).lower() for k, v in cluster_data.items() if v is not None}
    losses = []
    for key in sorted(before):
        old = before[key]
        if not is_real(old):
            continue
        new = after.get(key, _MISSING)
        if new is _MISSING:
            losses.append(Loss(path, key, "would be removed"))
        elif not is_real(new):
            if isinstance(new, str) and new and not new.strip():
                reason = "would become blank: the cluster vars hold only whitespace for it"
            else:
                reason = "would become empty" if not is_placeholder(new) else "would become a placeholder"
            losses.append(Loss(path, key, reason))
        elif new != old:
            name = _leaf_name(key).lower()
            if name in lowered_known and name not in present:
                losses.append(Loss(path, key, f"would change to a template default: cluster.yaml has no {_leaf_name(key)}"))
    return losses


def format_losses(losses: Sequence[Loss]) -> str:
    files: dict[str, list[Loss]] = {}
    for loss in losses:
        files.setdefault(loss.file, []).append(loss)
    lines = [
        f"configure stopped before writing anything: {len(losses)} secret value(s) in {len(files)} file(s) would be "
        "replaced by empty, blank or default values because the cluster vars do not provide real ones"
    ]
    for file, items in sorted(files.items()):
        lines.append(f"  - {file}:")
        lines += [f"      {item.key}: {item.reason}" for item in items]
    lines.append(
        f"Copy the existing values into cluster.yaml first with `{MIGRATE_COMMAND}`, then run configure again. "
        f"To replace them on purpose, run configure with -e {OVERRIDE_VARIABLE}=true."
    )
    return "\n".join(lines)


def check_secret_overwrites(planned: Sequence[Any], cluster_data: Mapping[str, Any], allow: bool) -> str | None:
    """Return a message (file and key names, never values) when a planned write would lose a secret, else None.

    ``planned`` are PlannedFile objects of secret files; those with state "changed" carry ``previous``
    (the parsed decrypted existing content) and ``rendered`` (the parsed new content).
    """
    if allow:
        return None
    known = list(load_schema().get("properties", {}))
    losses: list[Loss] = []
    for item in planned:
        if getattr(item, "state", None) != "changed" or getattr(item, "previous", None) is None:
            continue
        losses += find_losses(item.path, item.previous, item.rendered, cluster_data, known)
    return format_losses(losses) if losses else None
