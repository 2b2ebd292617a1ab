# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/_external_secrets.py: the entry points take what a caller holds in memory and load only the rest."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils import _external_secrets
from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars, ClusterVarsError
from ansible_collections.cluster.secrets.plugins.plugin_utils._external_secrets import (
    eso_settings,
    load_cluster_section,
    plan_external_secrets,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._sops import Sops
from tests.conftest import DEMO
from tests.integration.eso_support import SYNC, open_sops, write_master_secrets

SECTION = {"enabled": True, "mode": "gitops", "namespace": "vault-less", "sync": SYNC}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(DEMO, root)
    with (root / "cluster.yaml").open("a", encoding="utf-8") as handle:
        handle.write(yaml.safe_dump({"external_secrets": copy.deepcopy(SECTION)}, sort_keys=False))
    return root


def refuse_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args, **_kwargs):
        pytest.fail("the cluster vars were given: nothing may load them again")
    monkeypatch.setattr(_external_secrets, "load_and_validate", fail)
    monkeypatch.setattr(_external_secrets, "repository_layout", fail)


def test_vars_given_in_memory_are_used_as_they_are(monkeypatch: pytest.MonkeyPatch, repo: Path):
    refuse_to_load(monkeypatch)
    loaded = ClusterVars(data={"external_secrets": {"namespace": "from-memory"}})
    assert eso_settings({}, cluster=loaded, root=repo).namespace == "from-memory"
    assert eso_settings({"namespace": "option"}, cluster=loaded.data).namespace == "option"
    assert eso_settings({}, cluster={}, root=repo).namespace == "secrets"


def test_without_vars_they_are_loaded_from_the_repository(repo: Path):
    assert eso_settings({}, root=repo).namespace == "vault-less"
    assert eso_settings({"mode": "apply"}, root=repo).mode == "apply"
    assert eso_settings({}).namespace == "secrets"  # no repository: options and defaults alone


def test_loading_validates_and_a_missing_vars_file_means_no_section(repo: Path, tmp_path: Path):
    assert load_cluster_section(tmp_path / "empty") is None
    (repo / "cluster.yaml").write_text((repo / "cluster.yaml").read_text().replace("mode: gitops", "mode: live"))
    with pytest.raises(ClusterVarsError, match=r"external_secrets\.mode"):
        load_cluster_section(repo)


def test_configure_hands_over_its_vars_and_its_sops(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    generate_key_file(tmp_path / "age.key")
    sops = open_sops(tmp_path, tmp_path / "age.key")
    write_master_secrets(sops)
    refuse_to_load(monkeypatch)
    monkeypatch.setattr(Sops, "open", lambda *_a, **_k: pytest.fail("the Sops was given: nothing may open another"))
    section = {"enabled": True, "mode": "gitops", "sync": copy.deepcopy(SYNC)}
    changes = plan_external_secrets(sops, ClusterVars(data={"external_secrets": section}))
    assert changes is not None and changes.sops is sops
    assert len(changes.summary()["created"]) == 15
    assert plan_external_secrets(sops, {"external_secrets": {**section, "enabled": False}}) is None
    assert plan_external_secrets(sops, {"external_secrets": {**section, "mode": "apply"}}) is None
    assert plan_external_secrets(sops, {}) is None
