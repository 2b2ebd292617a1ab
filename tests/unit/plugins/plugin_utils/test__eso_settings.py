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


INFISICAL = {"project_slug": "home-ops", "environment_slug": "prod"}


def test_infisical_defaults_keep_the_credentials_in_a_secret_of_the_secrets_namespace():
    infisical = resolve_settings({"provider": "infisical", "namespace": "vault-less"}, {"infisical": dict(INFISICAL)}).infisical
    assert (infisical.project_slug, infisical.environment_slug) == ("home-ops", "prod")
    assert (infisical.path, infisical.host_api) == ("/", "https://app.infisical.com/api")
    assert (infisical.client_id.name, infisical.client_id.key, infisical.client_id.namespace) == (
        "infisical-universal-auth", "clientId", "vault-less")
    assert (infisical.client_secret.name, infisical.client_secret.key, infisical.client_secret.namespace) == (
        "infisical-universal-auth", "clientSecret", "vault-less")
    chosen = resolve_settings({}, {"provider": "infisical", "infisical": {
        **INFISICAL, "path": "/cluster", "host_api": "https://infisical.example.com/api",
        "universal_auth": {"name": "ua.credentials", "namespace": "external-secrets"}}}).infisical
    assert (chosen.path, chosen.host_api) == ("/cluster", "https://infisical.example.com/api")
    assert (chosen.client_secret.name, chosen.client_secret.key, chosen.client_secret.namespace) == (
        "ua.credentials", "clientSecret", "external-secrets")


def test_infisical_settings_wait_until_the_provider_is_switched():
    """One variable apart: incomplete infisical settings are no problem while another provider is in use."""
    assert resolve_settings({}, {"infisical": {"environment_slug": "prod"}}).provider == "kubernetes"
    with pytest.raises(ExternalSecretsError) as info:
        resolve_settings({"provider": "infisical"}, {"infisical": {"environment_slug": "prod"}})
    assert "1 problem(s)" in str(info.value)
    assert "infisical.project_slug: set the Infisical project slug" in str(info.value)


def test_every_infisical_problem_names_its_key_and_no_value():
    pasted = "st.0f1e2d3c4b5a-SENTINEL"
    with pytest.raises(ExternalSecretsError) as info:
        resolve_settings({"provider": "infisical"}, {"infisical": {
            "path": "cluster", "host_api": "app.infisical.com", "client_secret": pasted, "universal_auth": pasted}})
    text = str(info.value)
    for expected in ("infisical.project_slug: set", "infisical.environment_slug: set", "infisical.path: 'cluster'",
                     "infisical.host_api: not a URL", "infisical.client_secret: unknown setting",
                     "infisical.universal_auth: must name the Kubernetes Secret"):
        assert expected in text, text
    assert "6 problem(s)" in text
    assert pasted not in text
    with pytest.raises(ExternalSecretsError) as info:
        resolve_settings({"provider": "infisical", "infisical": {
            **INFISICAL, "universal_auth": {"name": "UA", "namespace": "x_y", "key": "k"}}}, None)
    for expected in ("infisical.universal_auth.key: unknown setting", "infisical.universal_auth.name: 'UA'",
                     "infisical.universal_auth.namespace: 'x_y'"):
        assert expected in str(info.value)
    with pytest.raises(ExternalSecretsError, match="infisical: must be a mapping"):
        resolve_settings({"infisical": "home-ops"}, None)


def test_no_infisical_setting_is_taken_for_a_secret_of_the_cluster_vars():
    """Any cluster.yaml key named like a secret has its value masked everywhere: the settings avoid such names."""
    from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import secret_values

    data = {"external_secrets": {"provider": "infisical", "infisical": {
        **INFISICAL, "path": "/cluster", "host_api": "https://app.infisical.com/api",
        "universal_auth": {"name": "infisical-universal-auth", "namespace": "secrets"}}}}
    assert secret_values(data) == []
