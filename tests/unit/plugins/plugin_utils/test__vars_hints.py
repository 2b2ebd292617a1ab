# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_hints import likely_misspelling


@pytest.mark.parametrize(("name", "guess"), [
    ("cloudflare_tokn", "cloudflare_token"), ("Node_CIDR", "node_cidr"), ("tfstate_pasword", "tfstate_password"),
    ("my_own_setting", None), ("echo_greeting", None), ("cluster_api_adr", "cluster_api_addr"),
])
def test_likely_misspelling(name, guess):
    known = ["cloudflare_token", "node_cidr", "tfstate_password", "cluster_api_addr", "cluster_gateway_addr"]
    assert likely_misspelling(name, known) == guess
