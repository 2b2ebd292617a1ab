# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64
import json

from ansible_collections.cluster.secrets.plugins.plugin_utils._secrecy import scrub, secret_values, without_secrets
from ansible_collections.cluster.secrets.plugins.plugin_utils._vars_schema import load_schema


def test_secret_values_and_scrub():
    data = {"cloudflare_token": "abc-token-1", "my_api_key": "k-123456", "public": "visible", "tfstate_password": "CHANGE-ME"}
    values = secret_values(data)
    assert set(values) == {"abc-token-1", "k-123456"}
    assert scrub("x abc-token-1 y k-123456 visible", values) == "x ******** y ******** visible"


def test_scrub_catches_escaped_and_encoded_forms():
    value = 'q"uote\\back ${x}'
    text = f'raw {value} json {json.dumps(value)} hcl {json.dumps(value)[1:-1].replace("${", "$${")} b64 {base64.b64encode(value.encode()).decode()}'
    cleaned = scrub(text, [value])
    assert "uote" not in cleaned and base64.b64encode(value.encode()).decode() not in cleaned


def test_nested_secrets_are_left_out():
    data = {"my_app": {"db_password": "x", "host": "h"}, "cloudflare_token": "t", "items": [{"api_key": "k", "n": 1}]}
    assert without_secrets(data, load_schema()) == {"my_app": {"host": "h"}, "items": [{"n": 1}]}
