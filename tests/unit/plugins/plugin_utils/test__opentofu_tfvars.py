# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_opentofu_tfvars: a decrypted HCL tfvars file becomes plain values, and those become TF_VAR_* text; errors never
quote the content."""

from __future__ import annotations

import sys

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import OpenTofuError
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_secrets import InfraSecrets, tf_var_value
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_tfvars import parse_tfvars

SECRET = "s3cr3t-Value-that-must-never-show"
TFVARS = f"""\
# Contabo and DNS credentials
contabo_client_secret = "{SECRET}"
escaped      = "tab\\there \\"q\\" back\\\\slash $${{literal}} %%{{x}} caf\\u00e9"
port         = 8443
ratio        = 0.5
negative     = -3
enabled      = true
nothing      = null
ssh_keys     = ["ssh-ed25519 AAAA one", "ssh-ed25519 AAAA two"]
labels       = {{ env = "prod", "dotted.key" = "x", nested = {{ ports = [80, 443] }} }}
heredoc      = <<-EOT
  line one
  line two
EOT
"""
RELPATH = "infrastructure/tofu/terraform.tfvars.enc"


def test_hcl_values_become_plain_python_values():
    data = parse_tfvars(TFVARS.encode(), RELPATH)
    assert data == {
        "contabo_client_secret": SECRET,
        "escaped": 'tab\there "q" back\\slash ${literal} %{x} café',
        "port": 8443, "ratio": 0.5, "negative": -3, "enabled": True, "nothing": None,
        "ssh_keys": ["ssh-ed25519 AAAA one", "ssh-ed25519 AAAA two"],
        "labels": {"env": "prod", "dotted.key": "x", "nested": {"ports": [80, 443]}},
        "heredoc": "line one\nline two",
    }


def test_every_variable_becomes_a_tf_var_the_binary_reads():
    secrets = InfraSecrets(tfvars=parse_tfvars(TFVARS.encode(), RELPATH), has_secrets_file=False)
    env = secrets.var_env()
    assert env["TF_VAR_contabo_client_secret"] == SECRET  # strings as they are
    assert env["TF_VAR_escaped"] == 'tab\there "q" back\\slash ${literal} %{x} café'
    assert env["TF_VAR_port"] == "8443" and env["TF_VAR_ratio"] == "0.5" and env["TF_VAR_enabled"] == "true"
    assert env["TF_VAR_ssh_keys"] == '["ssh-ed25519 AAAA one", "ssh-ed25519 AAAA two"]'
    assert env["TF_VAR_labels"] == '{"env": "prod", "dotted.key": "x", "nested": {"ports": [80, 443]}}'
    assert "TF_VAR_nothing" not in env  # null: the variable's default applies
    assert secrets.http_env() == {}  # a tfvars-only project passes no backend credentials
    assert SECRET in secrets.scrub_values()


@pytest.mark.parametrize(("value", "text"), [
    (["a${b}", "c%{d}"], '["a$${b}", "c%%{d}"]'),  # a list or map TF_VAR is an HCL expression: templates escaped
    ({"k": "é"}, '{"k": "é"}'),
    ("a${b}", "a${b}"),  # a string TF_VAR is taken literally
])
def test_tf_var_values_keep_template_sequences_literal(value, text):
    assert tf_var_value(value) == text


@pytest.mark.parametrize(("text", "message"), [
    (f'password = "{SECRET}"\nbroken = \n', r"terraform.tfvars.enc:2:\d+: the decrypted content does not parse as HCL"),
    (f'password = "{SECRET}"\nother = var.password\n', "`other` is an expression, not a literal value"),
    (f'password = "{SECRET}"\nother = upper("x")\n', "`other` is an expression"),
    (f'password = "{SECRET}-${{var.x}}"\n', "`password` holds a template sequence"),
    (f'password = "{SECRET}"\nlocals {{\n  x = 1\n}}\n', "`locals` is a block"),
])
def test_unusable_content_is_named_without_a_value(text, message):
    with pytest.raises(OpenTofuError, match=message) as caught:
        parse_tfvars(text.encode(), RELPATH)
    assert caught.value.cause == "secrets" and RELPATH in str(caught.value)
    assert SECRET not in str(caught.value)


def test_binary_content_is_refused():
    with pytest.raises(OpenTofuError, match="not UTF-8 text"):
        parse_tfvars(b"\xff\xfe" + SECRET.encode(), RELPATH)


def test_a_missing_parser_names_the_pip_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "hcl2", None)  # as if python-hcl2 were not installed
    with pytest.raises(OpenTofuError, match="pip install python-hcl2") as caught:
        parse_tfvars(b'a = "b"\n', RELPATH)
    assert caught.value.cause == "secrets"


def test_the_example_lists_every_variable_without_values(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu import run_opentofu
    from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import TofuOptions

    folder = tmp_path / "infrastructure/tofu"
    folder.mkdir(parents=True)
    (folder / "variables.tf").write_text('variable "proxmox_token" {\n  description = "The API token"\n  type = string\n'
                                         '  sensitive = true\n}\nvariable "replicas" {\n  default = 3\n}\n')
    (folder / "main.tf").write_text('variable "zone" {}\nresource "terraform_data" "x" {}\n')
    options = TofuOptions(root=tmp_path, command="example", environ={"PATH": ""})  # no binary, no sops needed
    checked = run_opentofu(options, check_mode=True)
    assert checked.changed and "would be written" in checked.msg and not (folder / "terraform.tfvars.example").exists()
    done = run_opentofu(options)
    text = (folder / "terraform.tfvars.example").read_text()
    assert done.changed and not done.failed
    assert '# The API token\nproxmox_token = ""  # sensitive: required\n' in text
    assert '# replicas = ""  # optional (has a default)\n' in text and 'zone = ""  # required\n' in text
    assert text.index("zone") < text.index("proxmox_token")  # main.tf before variables.tf, each in its order
    again = run_opentofu(options)
    assert not again.changed and "is up to date" in again.msg
    (folder / "broken.tf").write_text('variable "x" {\n')
    failed = run_opentofu(options)
    assert failed.failed and "broken.tf does not parse as HCL" in failed.msg
