# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest
import yaml

from ansible_collections.cluster.secrets.plugins.plugin_utils._quoting import hcl_quote, yaml_quote

HOSTILE = [
    "", "plain", "yes", "no", "on", "null", "~", "true", "0x10", "010", "1e3", ".inf", "1_000",
    "*alias", "&anchor", "!tag", "- item", "? key", "a: b", "a #b", "#c", "'", '"', "\\", "\\n literally",
    "line1\nline2", "trailing\n", "\ttab", "cr\rlf", "{{ lookup('pipe', 'id') }}", "p{%w0rd", "#{ x }#", "${var}",
    "%{ if x }", "ünïcødé ✓ 🔐", "nel\u0085x", "ls\u2028ps\u2029", "bom\ufeff", "del\x7f", "nul\x00", "bell\x07",
    "  leading and trailing  ", "---", "...", "[flow]", "{flow: map}", "@at", "`tick`", "|", ">",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_yaml_quote_round_trips(value):
    assert yaml.safe_load(f"key: {yaml_quote(value)}\n") == {"key": value}


@pytest.mark.parametrize("value", [None, True, False, 0, 42, -7, 1.5, [1, "a: b"], {"k": "yes", "n": [None]}])
def test_yaml_quote_keeps_types(value):
    assert yaml.safe_load(f"key: {yaml_quote(value)}\n") == {"key": value}


def test_yaml_quote_rejects_lone_surrogates():
    with pytest.raises(ValueError, match="surrogate"):
        yaml_quote("\ud800")


@pytest.mark.parametrize(("value", "expected"), [
    ("plain", '"plain"'),
    ('q"uote', '"q\\"uote"'),
    ("back\\slash", '"back\\\\slash"'),
    ("new\nline", '"new\\nline"'),
    ("${interp}", '"$${interp}"'),
    ("%{directive}", '"%%{directive}"'),
    ("$ and % alone", '"$ and % alone"'),
    ("ctl\x01", '"ctl\\u0001"'),
    (True, "true"),
    (None, "null"),
    (8, "8"),
    (["a", 1], '["a", 1]'),
])
def test_hcl_quote(value, expected):
    assert hcl_quote(value) == expected
