# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._render import RenderError, render_tree, settings_for


def tree(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_conventions_layers_and_suffix(tmp_path):
    tree(tmp_path, {
        "templates/a.yaml.j2": "#| gone #|\nv: #{ value }#\n#% if flag %#\nflag: yes\n#% endif %#\n",
        "templates/copied.txt": "#{ not rendered }#\n",
        "templates/empty.yaml.j2": "#% if false %#x#% endif %#\n",
        "templates/skip.partial.yaml.j2": "x\n",
        "templates/infrastructure/tofu/backend.tf.j2": "# mine\n",
    })
    settings = settings_for(tmp_path, exclude_patterns=["*.partial.yaml.j2"])
    out = render_tree(settings, {"value": 1, "flag": True, "cloudflare_domain": "example.com",
                                 "infrastructure_enabled": False}, tmp_path)
    assert out["a.yaml"] == b"v: 1\nflag: yes\n"
    assert out["copied.txt"] == b"#{ not rendered }#\n"
    assert "empty.yaml" not in out and "skip.partial.yaml" not in out
    # the repository's file replaces the built-in one of the same name; other built-ins remain
    assert out["infrastructure/tofu/backend.tf"] == b"# mine\n"
    assert "infrastructure/secrets.sops.yaml" in out


def test_undefined_variable_names_template_and_line(tmp_path):
    tree(tmp_path, {"templates/x.yaml.j2": "a: 1\nb: 2\nc: #{ missing }#\n", "templates/y.yaml.j2": "#% if %#\n"})
    with pytest.raises(RenderError) as info:
        render_tree(settings_for(tmp_path, builtin=False), {}, tmp_path)
    text = str(info.value)
    assert "templates/x.yaml.j2:3: undefined variable: 'missing' is undefined" in text
    assert "templates/y.yaml.j2:1: syntax error" in text


def test_defined_and_default_work_on_missing_values(tmp_path):
    tree(tmp_path, {"templates/x.j2": "#{ a.b.c | default('d') }# #{ 'yes' if z is defined else 'no' }#\n"})
    out = render_tree(settings_for(tmp_path, builtin=False), {}, tmp_path)
    assert out["x"] == b"d no\n"


def test_makejinja_toml_delimiters_and_plugin(tmp_path):
    tree(tmp_path, {
        "makejinja.toml": '[makejinja]\ninputs = ["./in"]\noutput = "./"\njinja_suffix = ".jinja"\n'
                          'import_paths = ["./scripts"]\nloaders = ["helpers:Plugin"]\n'
                          '[makejinja.delimiter]\nvariable_start = "<<"\nvariable_end = ">>"\n',
        "in/x.txt.jinja": "<< name | twice >> << answer() >> << extra >>\n",
        "scripts/helpers.py": "import makejinja\n\ndef twice(v):\n    return v * 2\n\ndef answer():\n    return 42\n\n"
                              "class Plugin(makejinja.plugin.Plugin):\n    def __init__(self, data):\n        self.d = data\n"
                              "    def filters(self):\n        return [twice]\n    def functions(self):\n        return [answer]\n"
                              "    def data(self):\n        return {'extra': len(self.d)}\n",
    })
    out = render_tree(settings_for(tmp_path, builtin=False), {"name": "ab"}, tmp_path)
    assert out["x.txt"] == b"abab 42 1\n"


def test_rendering_outside_the_repository_is_refused(tmp_path):
    tree(tmp_path, {"makejinja.toml": '[makejinja]\ninputs = ["./in"]\noutput = "../elsewhere"\njinja_suffix = ".j2"\n',
                    "in/x.j2": "x\n"})
    with pytest.raises(RenderError, match="outside the repository"):
        render_tree(settings_for(tmp_path, builtin=False), {}, tmp_path)
