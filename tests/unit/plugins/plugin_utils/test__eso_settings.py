# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/_eso_settings.py: options over cluster.yaml's external_secrets mapping, every problem at once."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars
from ansible_collections.cluster.secrets.plugins.plugin_utils._eso_settings import (
    ExternalSecretsError,
    external_secrets_section,
    resolve_settings,
)
from tests.integration.eso_support import SYNC


def test_options_win_over_cluster_yaml_which_wins_over_defaults():
    resolved = resolve_settings({"mode": "apply", "namespace": None}, {"mode": "gitops", "namespace": "vault-less", "store_name": "s"})
    assert (resolved.mode, resolved.namespace, resolved.store_name, resolved.provider) == ("apply", "vault-less", "s", "kubernetes")
    assert resolve_settings({}, None).store_name == "main-store"


def test_cluster_keys_map_to_option_names():
    resolved = resolve_settings({}, {"sops_files": "secrets/*.sops.yaml", "enabled": True, "sync": copy.deepcopy(SYNC)})
    assert (resolved.master_glob, resolved.enabled) == ("secrets/*.sops.yaml", True)
    assert [item.target for item in resolved.sync] == ["db-credentials", "auth-env"]
    assert [item.refresh_interval for item in resolved.sync] == ["1h", "15m"]


def test_every_problem_is_reported_at_once_without_values():
    with pytest.raises(ExternalSecretsError) as info:
        resolve_settings({"mode": "live", "provider": "vault", "namespace": "Secrets"},
                         {"sync": [{"name": "a", "namespace": "b", "data": [{"key": "X"}]}, "oops"]})
    text = str(info.value)
    for expected in ("mode: 'live'", "namespace: 'Secrets'", "vault.server", "sync[0].data[0]", "sync[1]"):
        assert expected in text
    assert "6 problem(s)" in text


@pytest.mark.parametrize(("options", "expected"), [
    ({"store_namespaces": ["Not_A_Name"]}, r"store_namespaces\[0\]"),
    ({"gitops_path": "../elsewhere"}, "gitops_path: '../elsewhere' must be a relative path"),
    ({"refresh_interval": "soon"}, "refresh_interval: 'soon' is not a duration"),
    ({"sync": [{"name": "a", "namespace": "b", "find": ["("]}]}, r"sync\[0\]\.find\[0\]"),
    ({"sync": [{"name": "a", "namespace": "b", "extract": ["x"]}, {"name": "a", "namespace": "b", "extract": ["y"]}]},
     "b/a is listed twice"),
])
def test_each_setting_is_checked(options, expected):
    with pytest.raises(ExternalSecretsError, match=expected):
        resolve_settings(options, None)


def test_the_section_comes_from_loaded_vars_or_their_data():
    section = {"enabled": True, "mode": "apply"}
    assert external_secrets_section(ClusterVars(data={"external_secrets": section})) is section
    assert external_secrets_section({"external_secrets": section}) is section
    assert external_secrets_section({"cluster_name": "x"}) is None
    assert external_secrets_section(None) is None
