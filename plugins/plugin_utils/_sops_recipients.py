# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adding and removing age recipients in a ``.sops.yaml`` people wrote by hand, keeping its comments and style.

Pure: text in, text out (``_yaml_edit`` keeps comments, quoting and indentation). A key rotation
adds the new recipient to every rule that holds an old one, then drops the old ones.

Note that this plugin util is **PRIVATE** to the collection. It can have breaking
changes at any time. Do not use it from other collections or roles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ansible_collections.cluster.secrets.plugins.plugin_utils._sops_files import SOPS_CONFIG_NAME
from ansible_collections.cluster.secrets.plugins.plugin_utils._yaml_edit import YamlDocument


def _edit_age_value(value: Any, add: str | None, remove: set[str], when: set[str]) -> tuple[Any, bool]:
    """A new ``age`` value (comma string or list) with ``add`` appended (where one of ``when`` is) and ``remove`` dropped."""
    is_list = isinstance(value, list)
    items = [str(v).strip() for v in value] if is_list else [p.strip() for p in str(value or "").split(",") if p.strip()]
    new = list(items)
    if add and add not in new and (not when or set(new) & when):
        new.append(add)
    if remove and add in new:
        new = [r for r in new if r not in remove]
    if new == items:
        return value, False
    if is_list:
        value[:] = new
        return value, True
    return ",".join(new), True


def edit_recipients(text: str, add: str | None = None, remove: Iterable[str] = (), when: Iterable[str] = ()) -> str | None:
    """``.sops.yaml`` text with ``add`` joining every rule (and key group) that holds one of ``when`` (every rule when
    ``when`` is empty), and ``remove`` leaving the rules that hold ``add``. None when nothing changes.

    A recipient is never removed from a rule that does not list ``add``: that rule's files would have no key left.
    Raises ``YamlEditError`` when the text cannot be edited safely."""
    document = YamlDocument(text, SOPS_CONFIG_NAME)
    removing, trigger, changed = set(remove), set(when), False
    for rule in (document.data or {}).get("creation_rules") or []:
        if not isinstance(rule, dict):
            continue
        if "age" in rule:
            rule["age"], edited = _edit_age_value(rule["age"], add, removing, trigger)
            changed |= edited
        for group in rule.get("key_groups") or []:
            if isinstance(group, dict) and "age" in group:
                group["age"], edited = _edit_age_value(group["age"], add, removing, trigger)
                changed |= edited
    return document.dump() if changed else None
