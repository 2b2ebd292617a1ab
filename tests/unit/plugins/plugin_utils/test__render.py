# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._makejinja import builtin_settings, repository_layout
from ansible_collections.cluster.secrets.plugins.plugin_utils._render import render_tree
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_plugins import plugin_problems
from ansible_collections.cluster.secrets.plugins.plugin_utils._render_problems import RenderError

CT_DELIMITERS = ('[makejinja.delimiter]\nblock_start = "#%"\nblock_end = "%#"\ncomment_start = "#|"\ncomment_end = "#|"\n'
                 'variable_start = "#{"\nvariable_end = "}#"\n')


def tree(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def makejinja_repo(base: Path, files: dict[str, str], undefined: str = "chainable", extra: str = "") -> None:
    """A repository in the cluster-template style: overrides + config inputs, #{ }# delimiters, a plugin folder."""
    tree(base, {
        "makejinja.toml": '[makejinja]\ninputs = ["./templates/overrides", "./templates/config"]\noutput = "./"\n'
                          'exclude_patterns = ["*.partial.yaml.j2"]\ndata = ["./cluster.yaml"]\njinja_suffix = ".j2"\n'
                          f'undefined = "{undefined}"\nforce = true\n{extra}' + CT_DELIMITERS,
        **files,
    })


def render(root: Path, data: dict | None = None):
    return render_tree(repository_layout(root).settings, data or {}, root)


def test_conventions_layers_and_suffix(tmp_path):
    tree(tmp_path, {
        "templates/a.yaml.j2": "#| gone #|\nv: #{ value }#\n#% if flag %#\nflag: yes\n#% endif %#\n",
        "templates/copied.txt": "#{ not rendered }#\n",
        "templates/empty.yaml.j2": "#% if false %#x#% endif %#\n",
    })
    out = render(tmp_path, {"value": 1, "flag": True}).files
    assert out == {"a.yaml": b"v: 1\nflag: yes\n", "copied.txt": b"#{ not rendered }#\n"}


def test_first_input_wins_and_excluded_files_are_never_parsed(tmp_path):
    makejinja_repo(tmp_path, {
        "templates/overrides/x.yaml.j2": "from: overrides\n",
        "templates/config/x.yaml.j2": "from: config\n",
        "templates/config/broken.partial.yaml.j2": "#| never closed |#\n",
        "templates/config/tool.yaml.tpl.j2": "t: #{ 1 + 1 }#\n",
    })
    out = render(tmp_path).files
    assert out == {"x.yaml": b"from: overrides\n", "tool.yaml.tpl": b"t: 2\n"}


def test_chainable_renders_optional_fields_and_lists_printed_undefined_values(tmp_path):
    makejinja_repo(tmp_path, {
        "templates/config/talos.yaml.j2": "#% for item in nodes %#\n#% if item.secureboot %#\nsb: true\n#% endif %#\n"
                                          "name: #{ item.name }#\n#% endfor %#\nsans: #{ cluster_api_tls_sans }#\n",
    })
    result = render(tmp_path, {"nodes": [{"name": "a"}, {"name": "b", "secureboot": True}]})
    assert result.files["talos.yaml"] == b"name: a\nsb: true\nname: b\nsans: \n"
    assert [use.render() for use in result.undefined] == ["talos.yaml.j2:7: cluster_api_tls_sans"]


def test_default_mode_prints_undefined_attributes_empty_and_names_them(tmp_path):
    makejinja_repo(tmp_path, {"templates/config/s.sops.yaml.j2": "a: 1\ntoken: \"#{ cloudflare.token }#\"\n"}, undefined="default")
    result = render(tmp_path, {"cloudflare": {}})
    assert result.files["s.sops.yaml"] == b'a: 1\ntoken: ""\n'
    assert [use.render() for use in result.undefined] == ["s.sops.yaml.j2:2: token (attribute of a dict value)"]


def test_strict_mode_is_an_error_with_template_and_line(tmp_path):
    makejinja_repo(tmp_path, {"templates/config/t.yaml.j2": "a: 1\n#% if item.secureboot %#x#% endif %#\n"}, undefined="strict")
    with pytest.raises(RenderError) as info:
        render(tmp_path, {"item": {}})
    assert "templates/config/t.yaml.j2:2: undefined variable: 'dict object' has no attribute 'secureboot'" in str(info.value)


def test_repository_without_makejinja_toml_is_strict_but_chainable(tmp_path):
    tree(tmp_path, {"templates/x.yaml.j2": "a: 1\nb: 2\nc: #{ missing }#\n", "templates/y.yaml.j2": "#% if %#\n",
                    "templates/z.j2": "#{ a.b.c | default('d') }# #{ 'yes' if z is defined else 'no' }#\n"})
    with pytest.raises(RenderError) as info:
        render(tmp_path)
    text = str(info.value)
    assert "templates/x.yaml.j2:3: undefined variable: 'missing' is undefined" in text
    assert "templates/y.yaml.j2:1: syntax error" in text
    (tmp_path / "templates/x.yaml.j2").unlink()
    (tmp_path / "templates/y.yaml.j2").unlink()
    assert render(tmp_path).files["z"] == b"d no\n"


def test_plugin_class_loaded_as_makejinja_loads_it(tmp_path):
    tree(tmp_path, {
        "makejinja.toml": '[makejinja]\ninputs = ["./in"]\noutput = "./"\njinja_suffix = ".jinja"\n'
                          'import_paths = ["./scripts"]\nloaders = ["helpers:Plugin"]\n'
                          '[makejinja.delimiter]\nvariable_start = "<<"\nvariable_end = ">>"\n',
        "in/x.txt.jinja": "<< name | twice >> << answer() >> << extra >> << env.HOME is defined >>\n",
        "scripts/helpers.py": "import makejinja\n\ndef twice(v):\n    return v * 2\n\ndef answer():\n    return 42\n\n"
                              "class Plugin(makejinja.plugin.Plugin):\n    def __init__(self, data):\n        self.d = data\n"
                              "    def filters(self):\n        return [twice]\n    def functions(self):\n        return [answer]\n"
                              "    def data(self):\n        return {'extra': len(self.d)}\n",
    })
    assert render(tmp_path, {"name": "ab"}).files["x.txt"] == b"abab 42 1 True\n"


def test_plugin_validation_errors_come_back_one_per_problem(tmp_path):
    makejinja_repo(tmp_path, {
        "templates/config/x.yaml.j2": "x: 1\n",
        "templates/scripts/plugin.py": "import makejinja\n\nclass Plugin(makejinja.plugin.Plugin):\n"
                                       "    def __init__(self, data):\n        self.d = data\n"
                                       "    def data(self):\n        raise RuntimeError('config validation failed:\\n"
                                       "network.node_cidr: bad cidr\\nnodes.0.name: reserved name')\n",
    }, extra='import_paths = ["./templates/scripts"]\nloaders = ["plugin:Plugin"]\n')
    with pytest.raises(RenderError) as info:
        render(tmp_path)
    assert [p.render() for p in info.value.problems] == [
        "plugin plugin:Plugin: config validation failed: network.node_cidr: bad cidr",
        "plugin plugin:Plugin: config validation failed: nodes.0.name: reserved name",
    ]


def test_plugin_missing_package_and_too_new_syntax_are_named(tmp_path):
    missing = plugin_problems("plugin:Plugin", ModuleNotFoundError("No module named 'pydantic'", name="pydantic"), tmp_path, [])
    assert "needs the Python package 'pydantic'" in missing[0].message and "pip install pydantic" in missing[0].message
    (tmp_path / "pyproject.toml").write_text('[project]\nrequires-python = ">=3.14"\n')
    error = SyntaxError("invalid syntax", (str(tmp_path / "scripts/validate.py"), 64, 1, "type Cidr = int\n"))
    syntax = plugin_problems("plugin:Plugin", error, tmp_path, [])
    assert syntax[0].render().startswith("scripts/validate.py:64: Python 3.")
    assert "requires-python >=3.14" in syntax[0].message and "PYTHON=python3.13" in syntax[0].message


def test_copy_metadata_and_copied_files_keep_template_modes(tmp_path):
    makejinja_repo(tmp_path, {"templates/config/run.sh.j2": "echo #{ 1 }#\n", "templates/config/plain.sh": "echo 2\n",
                              "templates/config/other.yaml.j2": "a: 1\n"}, extra="copy_metadata = true\n")
    os.chmod(tmp_path / "templates/config/run.sh.j2", 0o700)
    os.chmod(tmp_path / "templates/config/plain.sh", 0o600)
    os.chmod(tmp_path / "templates/config/other.yaml.j2", 0o640)
    assert render(tmp_path).modes == {"run.sh": 0o700, "plain.sh": 0o600, "other.yaml": 0o640}


def test_force_false_keeps_existing_outputs(tmp_path):
    makejinja_repo(tmp_path, {"templates/config/a.yaml.j2": "a: new\n", "templates/config/b.yaml.j2": "b: new\n", "a.yaml": "a: mine\n"},
                   extra="")
    text = (tmp_path / "makejinja.toml").read_text().replace("force = true\n", "")
    (tmp_path / "makejinja.toml").write_text(text)
    result = render(tmp_path)
    assert result.files == {"b.yaml": b"b: new\n"} and result.kept == ["a.yaml"]


def test_unsupported_and_unknown_keys_are_named(tmp_path):
    makejinja_repo(tmp_path, {}, extra='exec_pre = ["rm -rf /"]\nclean = true\nskip_empty = true\n')
    warnings = repository_layout(tmp_path).warnings
    expected = ["makejinja.toml: makejinja.exec_pre", "makejinja.toml: makejinja.clean", "makejinja.toml: makejinja.skip_empty"]
    assert [w.split(" is ")[0] for w in warnings] == expected


def test_data_files_and_vars_files(tmp_path):
    makejinja_repo(tmp_path, {"data/b.json": "{}", "data/a.toml": "", "data/.hidden.yaml": ""})
    text = (tmp_path / "makejinja.toml").read_text().replace('data = ["./cluster.yaml"]', 'data = ["./cluster.yaml", "./data"]')
    (tmp_path / "makejinja.toml").write_text(text)
    assert [p.name for p in repository_layout(tmp_path).vars_files] == ["cluster.yaml", "a.toml", "b.json"]
    own = tmp_path / "own"
    tree(own, {"cluster.toml": ""})
    assert [p.name for p in repository_layout(own).vars_files] == ["cluster.toml"]
    tree(own, {"cluster.yaml": ""})
    assert [p.name for p in repository_layout(own).vars_files] == ["cluster.yaml"]
    explicit = repository_layout(tmp_path, cluster_file=tmp_path / "elsewhere.yaml").vars_files
    assert [p.name for p in explicit] == ["elsewhere.yaml", "a.toml", "b.json"]


def test_builtin_layer_only_where_it_belongs(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVars
    from ansible_collections.cluster.secrets.plugins.plugin_utils._template_data import wants_builtin_infrastructure

    data = {"tfstate_url": "https://state.example/x", "infrastructure_enabled": False}
    result = render_tree(builtin_settings(tmp_path, ["backend.tf.j2"]), data, tmp_path)
    assert "infrastructure/tofu/backend.tf" not in result.files and "infrastructure/secrets.sops.yaml" in result.files
    configured, bare = ClusterVars(data={"tfstate_password": "x"}), ClusterVars(data={"node_cidr": "10.0.0.0/24"})
    assert wants_builtin_infrastructure(configured, tmp_path, ["kubernetes/a.yaml"])
    assert not wants_builtin_infrastructure(bare, tmp_path, ["kubernetes/a.yaml"])
    # A repository with an infrastructure layer of its own keeps it whole; replacing one built-in file is not that.
    assert not wants_builtin_infrastructure(configured, tmp_path, ["infrastructure/tofu/backend.tf", "infrastructure/x.tf"])
    assert wants_builtin_infrastructure(configured, tmp_path, ["infrastructure/tofu/providers.tf"])
    # A repository where an earlier run wrote the layer keeps it managed (so the guard protects its secrets).
    tree(tmp_path, {"infrastructure/secrets.sops.yaml": "x: 1\n"})
    assert wants_builtin_infrastructure(bare, tmp_path, [])


def test_rendering_outside_the_repository_is_refused(tmp_path):
    tree(tmp_path, {"makejinja.toml": '[makejinja]\ninputs = ["./in"]\noutput = "../elsewhere"\njinja_suffix = ".j2"\n',
                    "in/x.j2": "x\n"})
    with pytest.raises(RenderError, match="outside the repository"):
        render(tmp_path)


def test_rendered_yaml_check_is_about_syntax_only():
    import re

    from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import check_rendered_yaml

    pattern = re.compile(r"\.sops\.")
    assert check_rendered_yaml({"a.yaml": b"matchers:\n  - name: severity\n    matchType: =\n"}, pattern) == []
    [finding] = check_rendered_yaml({"b.yaml": b"a: [1\n"}, pattern)
    assert finding.file == "b.yaml" and "does not parse" in finding.message


@pytest.mark.parametrize("expression", [
    "cycler.__init__.__globals__.os.popen('id').read()",
    "lipsum.__globals__['os'].popen('id').read()",
    "''.__class__.__mro__[1].__subclasses__()",
    "namespace.__init__.__globals__",
])
def test_template_code_cannot_reach_python_internals(tmp_path, expression):
    makejinja_repo(tmp_path, {"templates/config/x.yaml.j2": "x: #{ " + expression + " }#\n"})
    try:
        result = render(tmp_path)
    except RenderError as exc:
        assert "uid=" not in str(exc) and ("SecurityError" in str(exc) or "undefined" in str(exc))
    else:  # an unsafe attribute is undefined in the sandbox: with "chainable" it prints as nothing, and is listed
        assert result.files["x.yaml"] == b"x: \n" and result.undefined


FILE_DATA = '[makejinja.file_data]\n"x.yaml.j2" = ["./extra.yaml"]\n'
ALIAS_BOMB = 'lol: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"l{i}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8))


def test_file_data_documents_merge_as_makejinja_merges_them(tmp_path):
    makejinja_repo(tmp_path, {"templates/config/x.yaml.j2": "x: #{ a }# #{ b }#\n", "extra.yaml": "a: 1\nb: 1\n---\nb: 2\n"},
                   extra=FILE_DATA)
    assert render(tmp_path).files["x.yaml"] == b"x: 1 2\n"


def test_file_data_alias_bomb_is_refused_with_file_and_line(tmp_path):
    makejinja_repo(tmp_path, {"templates/config/x.yaml.j2": "x: #{ lol }#\n", "extra.yaml": "# a comment\n" + ALIAS_BOMB},
                   extra=FILE_DATA)
    with pytest.raises(RenderError) as info:
        render(tmp_path)
    [problem] = info.value.problems
    assert (problem.template, problem.line) == ("extra.yaml", 2)
    assert "alias bomb" in problem.message and "file_data" in problem.message


def test_oversized_or_special_file_data_is_refused_never_read(tmp_path):
    from ansible_collections.cluster.secrets.plugins.plugin_utils._data_files import MAX_VARS_BYTES

    makejinja_repo(tmp_path, {"templates/config/x.yaml.j2": "x: #{ a }#\n", "extra.yaml": "a: 1\n" + "#" * MAX_VARS_BYTES + "\n"},
                   extra=FILE_DATA)
    with pytest.raises(RenderError, match=r"extra\.yaml: file_data: is \d+ bytes, more than the \d+ a vars file may have; refused"):
        render(tmp_path)
    (tmp_path / "extra.yaml").unlink()
    os.mkfifo(tmp_path / "extra.yaml")  # opening a FIFO to read would wait for a writer forever
    with pytest.raises(RenderError, match=r"extra\.yaml: file_data: is not a regular file"):
        render(tmp_path)
