# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options in one place each: every action's spec (plugins/plugin_utils/_argspec.py), its module documentation with
the doc fragments it extends, and the module_defaults groups of meta/runtime.yml all agree."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.utils.plugin_docs import add_fragments

from ansible_collections.cluster.secrets.plugins.plugin_utils import _argspec

COLLECTION = Path(__file__).resolve().parents[4]
ACTIONS = sorted(p.stem for p in (COLLECTION / "plugins" / "action").glob("*.py") if not p.stem.startswith("_"))
# The options each module_defaults group is for.
GROUP_OPTIONS = {
    "cluster_secrets": _argspec.REPOSITORY_OPTIONS,
    "sops": _argspec.SOPS_OPTIONS,
    "cluster_vars": _argspec.CLUSTER_VARS_OPTIONS,
}


def spec_of(action: str) -> dict[str, dict[str, Any]]:
    return getattr(_argspec, f"{action.upper()}_SPEC")


class FragmentLoader:
    """Ansible's doc fragment loader, for this collection's fragments only."""

    def get(self, name: str) -> Any:
        short = name.removeprefix("cluster.secrets.")
        if short == name or "." in short:
            return None  # Ansible then tries the name without its last part, as a variable of the fragment
        try:
            module = importlib.import_module(f"ansible_collections.cluster.secrets.plugins.doc_fragments.{short}")
        except ImportError:
            return None
        fragment = module.ModuleDocFragment
        fragment.ansible_name = name
        return fragment


def documentation(action: str) -> dict[str, Any]:
    """The module's documentation as ansible-doc shows it: its fragments merged in."""
    path = COLLECTION / "plugins" / "modules" / f"{action}.py"
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            doc = yaml.safe_load(ast.literal_eval(node.value))
            add_fragments(doc, str(path), fragment_loader=FragmentLoader(), is_module=True)
            return doc
    raise AssertionError(f"{path} has no DOCUMENTATION")


def runtime_groups() -> dict[str, list[str]]:
    return yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text(encoding="utf-8"))["action_groups"]


def test_every_action_is_covered():
    assert ACTIONS and all(hasattr(_argspec, f"{a.upper()}_SPEC") for a in ACTIONS)


@pytest.mark.parametrize("action", ACTIONS)
def test_the_action_uses_its_spec(action):
    plugin = importlib.import_module(f"ansible_collections.cluster.secrets.plugins.action.{action}")
    assert plugin.ActionModule.ARGUMENT_SPEC is spec_of(action)


@pytest.mark.parametrize("action", ACTIONS)
def test_the_documentation_is_the_spec(action):
    options = documentation(action)["options"]
    spec = spec_of(action)
    assert sorted(options) == sorted(spec)
    for name, option in spec.items():
        doc = options[name]
        assert "not used" not in str(doc.get("description", "")).lower(), name
        assert doc.get("type", "str") == option.get("type", "str"), name
        assert bool(doc.get("required", False)) == bool(option.get("required", False)), name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert doc.get("elements") == option.get("elements"), name


def test_the_shared_pieces_are_the_fragments():
    for fragment, piece in (("repository", _argspec.REPOSITORY_OPTIONS), ("cluster_vars", _argspec.CLUSTER_VARS_OPTIONS),
                            ("sops", _argspec.SOPS_OPTIONS)):
        loaded = FragmentLoader().get(f"cluster.secrets.{fragment}")
        assert sorted(yaml.safe_load(loaded.DOCUMENTATION)["options"]) == sorted(piece)


def test_each_group_holds_exactly_the_actions_that_accept_its_options():
    groups = runtime_groups()
    assert sorted(groups) == sorted(GROUP_OPTIONS)
    # every action that works on one repository; fleet works on every cluster of the play and takes no cluster_root
    assert [a for a in ACTIONS if "cluster_root" not in spec_of(a)] == ["fleet"]
    assert sorted(groups["cluster_secrets"]) == [a for a in ACTIONS if "cluster_root" in spec_of(a)]
    for group, piece in GROUP_OPTIONS.items():
        accepting = [a for a in ACTIONS if all(spec_of(a).get(k) == v for k, v in piece.items())]
        assert sorted(groups[group]) == accepting, group


@pytest.mark.parametrize("action", ACTIONS)
def test_the_documentation_names_the_groups(action):
    attributes = documentation(action)["attributes"]
    membership = [f"cluster.secrets.{g}" for g, members in runtime_groups().items() if action in members]
    assert sorted(attributes["action_group"]["membership"]) == sorted(membership)
    assert attributes["platform"]["platforms"] == "posix" and attributes["check_mode"]["support"] == "full"
