# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""configure end to end: real ansible-playbook, real sops binary, real age keys, temporary repositories."""

from __future__ import annotations

import json
import subprocess

import yaml

from tests.conftest import VENV_BIN, recap_changed

INFRA = "infrastructure/secrets.sops.yaml"
APP = "kubernetes/apps/default/echo/app/secret.sops.yaml"
# Every character class the issue lists: template syntax of Jinja, makejinja and Ansible, quotes,
# backslashes, newlines, YAML indicators and YAML 1.1 specials, unicode.
HOSTILE = (
    "{{ lookup('pipe', 'id') }} p{%w0rd #{ x }# #% y %# 'single' \"double\" back\\slash\n"
    "line2 # hash : colon *star &amp !bang yes null 0x10 ünï©ødé 🔐 \t tab"
)
HOSTILE_SHORT = ["yes", "null", "0x10", "*alias", "&anchor", "!tag", "- dash", "a: b", "#comment", "~", "'", '"', "\\"]


def shows(value: str, output: str) -> bool:
    """Whether output shows the value as is or JSON-escaped (how Ansible prints results at -v and beyond)."""
    return any(form in output for form in (value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]))


def set_values(repo, **values: object) -> None:
    """Rewrite cluster.yaml with new values (json-style quoting, valid YAML)."""
    path = repo.root / "cluster.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(values)
    path.write_text("".join(f"{k}: {json.dumps(v, ensure_ascii=False)}\n" for k, v in data.items()))


def test_first_run_encrypts_and_second_run_writes_nothing(make_repo):
    repo = make_repo()
    first = repo.playbook("configure")
    assert recap_changed(first.stdout) == 1
    secrets = yaml.safe_load(repo.decrypt(INFRA))
    cluster = yaml.safe_load((repo.root / "cluster.yaml").read_text())
    assert secrets["tfstate_password"] == cluster["tfstate_password"]
    assert secrets["proxmox_api_token_secret"] == cluster["proxmox_api_token_secret"]
    assert secrets["tfstate_username"] == "terraform"
    app = yaml.safe_load(repo.decrypt(APP))
    assert app["stringData"]["CLOUDFLARE_TOKEN"] == cluster["cloudflare_token"]
    # kubernetes/ files keep their structure readable: only data/stringData is encrypted
    raw = yaml.safe_load((repo.root / APP).read_text())
    assert raw["metadata"]["name"] == "echo-secret"
    assert raw["stringData"]["CLOUDFLARE_TOKEN"].startswith("ENC[")
    assert "created: " + INFRA in first.stdout
    before = repo.snapshot()
    second = repo.playbook("configure")
    assert recap_changed(second.stdout) == 0
    assert repo.snapshot() == before
    assert "0 file(s) were created, 0 updated" in second.stdout


def test_rerun_without_cache_decrypts_compares_and_writes_nothing(make_repo):
    repo = make_repo()
    repo.playbook("configure")
    before = repo.snapshot()
    second = repo.playbook("configure", "-e", "configure_cache=false")
    assert recap_changed(second.stdout) == 0
    assert repo.snapshot() == before


def test_changing_one_value_rewrites_only_that_secret(make_repo):
    repo = make_repo()
    repo.playbook("configure")
    before = repo.snapshot()
    set_values(repo, cloudflare_token="a-new-token-value")
    result = repo.playbook("configure", "--diff")
    after = repo.snapshot()
    changed = sorted(k for k in after if after[k] != before.get(k))
    # .credential-dates.yaml records that value's new date (a fingerprint and a day, no value)
    assert changed == [".credential-dates.yaml", "cluster.yaml", APP]
    assert yaml.safe_load(repo.decrypt(APP))["stringData"]["CLOUDFLARE_TOKEN"] == "a-new-token-value"
    # --diff names the key that changed, never a value
    assert "stringData.CLOUDFLARE_TOKEN" in result.stdout
    assert "a-new-token-value" not in result.stdout


def test_check_mode_writes_nothing(make_repo):
    repo = make_repo()
    before = repo.snapshot()
    result = repo.playbook("configure", "--check", "--diff")
    assert recap_changed(result.stdout) >= 1
    assert "would be created" in result.stdout
    assert repo.snapshot() == before
    repo.playbook("configure")
    set_values(repo, tfstate_password="changed in check mode")
    before = repo.snapshot()
    result = repo.playbook("configure", "--check")
    assert recap_changed(result.stdout) >= 1
    assert repo.snapshot() == before


def test_hostile_values_round_trip_byte_exact(make_repo):
    repo = make_repo()
    set_values(repo, tfstate_password=HOSTILE, cloudflare_token=HOSTILE, proxmox_api_token_secret="\n".join(HOSTILE_SHORT))
    result = repo.playbook("configure", "-vvvv", "--diff")
    secrets = yaml.safe_load(repo.decrypt(INFRA))
    assert secrets["tfstate_password"] == HOSTILE
    assert secrets["proxmox_api_token_secret"] == "\n".join(HOSTILE_SHORT)
    assert yaml.safe_load(repo.decrypt(APP))["stringData"]["CLOUDFLARE_TOKEN"] == HOSTILE
    # the lookup was data, never executed, and no part of the secrets was printed
    assert "uid=" not in result.stdout
    for part in [*HOSTILE.splitlines(), "00000000-demo"]:
        assert not shows(part, result.stdout), part
    for value in HOSTILE_SHORT:
        set_values(repo, tfstate_password=value)
        repo.playbook("configure")
        assert yaml.safe_load(repo.decrypt(INFRA))["tfstate_password"] == value, value


def test_no_secret_in_verbose_diff_output_or_on_disk(make_repo, tmp_path):
    repo = make_repo()
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = repo.env(TMPDIR=str(private_tmp))
    secret_values = ["demo-token: not #real", "pa\"ss", "00000000-demo-0000-0000-000000000000"]
    result = repo.playbook("configure", "-vvvv", "--diff", env=env)
    set_values(repo, tfstate_password="rotated-secret-value-42")
    result2 = repo.playbook("configure", "-vvvv", "--diff", env=env)
    for out in (result.stdout, result2.stdout):
        for value in [*secret_values, "rotated-secret-value-42"]:
            assert not shows(value, out), value
    # no plaintext secret anywhere under the repository (but cluster.yaml) or the temp directories
    for base in (repo.root, repo.home, private_tmp):
        for path in base.rglob("*"):
            if not path.is_file() or path.name == "cluster.yaml" or path.stat().st_size > 5_000_000:
                continue
            try:
                content = path.read_bytes()
            except OSError:
                continue
            assert b"rotated-secret-value-42" not in content, path


def test_schema_and_semantic_errors_come_back_at_once(make_repo):
    repo = make_repo()
    cluster = repo.root / "cluster.yaml"
    cluster.write_text(
        "node_cidr: \"192.168.42.0/24\"\n"
        "cluster_api_addr: \"192.168.42.10\"\n"
        "cluster_gateway_addr: \"192.168.42.10\"\n"          # collides with the API address
        "cluster_dns_gateway_addr: \"10.0.0.5\"\n"           # outside node_cidr
        "cluster_pod_cidr: \"192.168.42.0/25\"\n"            # inside node_cidr
        "repository_name: \"not a repo\"\n"
        "cloudflare_domain: \"example.com\"\n"
        "cloudflare_gateway_addr: \"192.168.42.13\"\n"
        "cloudflare_tokn: \"typo-secret-value-1\"\n"          # misspelt, so cloudflare_token is missing
        "tfstate_password: 424242424242\n"                   # a number, not a string (secret)
        "proxmox_api_token_id: \"missing-realm-secret\"\n"
        "proxmox_api_token_secret: \"\"\n"
        "proxmox_api_url: \"ftp://pve\"\n"
    )
    before = repo.snapshot()
    result = repo.playbook("configure", check=False)
    assert result.returncode != 0
    out = result.stdout
    for expected in (
        "cluster.yaml:3: cluster_gateway_addr: 192.168.42.10 is already used by cluster_api_addr",
        "cluster.yaml:4: cluster_dns_gateway_addr: 10.0.0.5 is outside node_cidr",
        "cluster.yaml:5: cluster_pod_cidr",
        "cluster.yaml:6: repository_name: has the wrong form",
        "cluster.yaml:9: cloudflare_tokn: unknown key, likely a misspelling of 'cloudflare_token'",
        "cluster.yaml:10: tfstate_password: must be a string, but YAML read it as a number",
        "cluster.yaml:11: proxmox_api_token_id: has the wrong form",
        "cluster.yaml:12: proxmox_api_token_secret: must not be empty",
        "cluster.yaml:13: proxmox_api_url: has the wrong form",
        "Hint:",
    ):
        assert expected in out, expected
    assert "424242424242" not in out
    assert "typo-secret-value-1" not in out
    assert repo.snapshot() == before


def test_missing_template_variable_names_template_and_line(make_repo):
    repo = make_repo()
    repo.write("templates/kubernetes/broken.yaml.j2", "---\na: 1\nb: #{ not_in_cluster_yaml }#\n")
    before = repo.snapshot()
    result = repo.playbook("configure", check=False)
    assert result.returncode != 0
    assert "templates/kubernetes/broken.yaml.j2:3: undefined variable" in result.stdout
    assert "not_in_cluster_yaml" in result.stdout
    assert repo.snapshot() == before


def test_secret_in_a_plaintext_file_is_refused(make_repo):
    repo = make_repo()
    repo.write("templates/kubernetes/leak.yaml.j2", "---\ntoken: #{ cloudflare_token | yaml_quote }#\n")
    result = repo.playbook("configure", check=False)
    assert result.returncode != 0
    assert "kubernetes/leak.yaml:2: (top level): contains the value of cloudflare_token" in result.stdout
    assert "demo-token" not in result.stdout
    assert not (repo.root / "kubernetes").exists()
    # escaped (yaml_quote of a value with quotes) and base64-encoded copies are caught too
    leak = "---\npw: #{ tfstate_password | yaml_quote }#\ntoken: #{ proxmox_api_token_secret | b64encode }#\n"
    repo.write("templates/kubernetes/leak.yaml.j2", leak)
    result = repo.playbook("configure", check=False)
    assert result.returncode != 0
    assert "kubernetes/leak.yaml:2: (top level): contains the value of proxmox_api_token_secret, tfstate_password" in result.stdout
    repo.write("templates/kubernetes/leak.yaml.j2", "---\ntoken: #{ proxmox_api_token_secret | b64encode }#\n")
    result = repo.playbook("configure", check=False)
    assert "kubernetes/leak.yaml:2: (top level): contains the value of proxmox_api_token_secret" in result.stdout
    assert not (repo.root / "kubernetes").exists()


def test_missing_age_key_names_where_it_looked_and_the_recipients(make_repo):
    repo = make_repo()
    repo.playbook("configure")
    recipient = yaml.safe_load((repo.root / INFRA).read_text())["sops"]["age"][0]["recipient"]
    (repo.root / "age.key").rename(repo.root.parent / "moved.key")
    set_values(repo, tfstate_password="needs-the-key-to-compare")
    result = repo.playbook("configure", check=False)
    assert result.returncode != 0
    assert "no age key found" in result.stdout
    assert "$SOPS_AGE_KEY" in result.stdout and str(repo.root / "age.key") in result.stdout
    assert recipient in result.stdout
    # a key from SOPS_AGE_KEY_FILE is found too
    env = repo.env(SOPS_AGE_KEY_FILE=str(repo.root.parent / "moved.key"))
    ok = repo.playbook("configure", env=env)
    assert recap_changed(ok.stdout) == 1


def test_a_non_matching_key_is_a_clear_error(make_repo):
    repo = make_repo()
    repo.playbook("configure")
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file

    other = generate_key_file(repo.root / "age.key")  # replaces the key with one the files don't know
    set_values(repo, tfstate_password="another-value")
    result = repo.playbook("configure", check=False)
    assert result.returncode != 0
    assert "cannot decrypt it" in result.stdout
    assert other in result.stdout


def test_makejinja_project_renders_unchanged_and_matches_makejinja(make_repo, tmp_path):
    """A repository laid out like cluster-template (makejinja.toml, overrides, partials, a plugin class that
    imports makejinja) renders with no change to its templates, and non-secret output equals makejinja's."""
    repo = make_repo()
    (repo.root / "templates").rename(repo.root / "templates-demo")
    repo.write("makejinja.toml", (
        "[makejinja]\n"
        'inputs = ["./templates/overrides", "./templates/config"]\n'
        'output = "./"\n'
        'exclude_patterns = ["*.partial.yaml.j2"]\n'
        'data = ["./cluster.yaml", "./nodes.yaml"]\n'
        'import_paths = ["./templates/scripts"]\n'
        'loaders = ["plugin:Plugin"]\n'
        'jinja_suffix = ".j2"\n'
        "force = true\n"
        "[makejinja.delimiter]\n"
        'block_start = "#%"\nblock_end = "%#"\ncomment_start = "#|"\ncomment_end = "#|"\n'
        'variable_start = "#{"\nvariable_end = "}#"\n'
    ))
    repo.write("templates/scripts/plugin.py", (
        "from typing import Any\n\nimport makejinja\n\n\n"
        "def shout(value: str) -> str:\n    return str(value).upper()\n\n\n"
        "def node_count() -> int:\n    return 2\n\n\n"
        "class Plugin(makejinja.plugin.Plugin):\n"
        "    def __init__(self, data: dict[str, Any]):\n        self._data = data\n\n"
        "    def data(self):\n        self._data.setdefault('spegel_enabled', len(self._data.get('nodes')) > 1)\n        return self._data\n\n"
        "    def filters(self):\n        return [shout]\n\n"
        "    def functions(self):\n        return [node_count]\n"
    ))
    repo.write("templates/config/kubernetes/apps/settings.yaml.j2", (
        "#| a comment that disappears #|\n---\nkind: ConfigMap\ndata:\n"
        "  DOMAIN: \"#{ cloudflare_domain | shout }#\"\n  NODES: \"#{ node_count() }#\"\n"
        "#% if spegel_enabled %#\n  SPEGEL: \"on\"\n#% endif %#\n"
        "#% include 'kubernetes/apps/labels.partial.yaml.j2' %#\n"
    ))
    repo.write("templates/config/kubernetes/apps/labels.partial.yaml.j2", "  LABEL: \"#{ repository_name }#\"\n")
    repo.write("templates/config/kubernetes/apps/empty.yaml.j2", "#% if false %#\nnever: true\n#% endif %#\n")
    repo.write("templates/config/kubernetes/apps/overridden.yaml.j2", "---\nfrom: config\n")
    repo.write("templates/overrides/kubernetes/apps/overridden.yaml.j2", "---\nfrom: override\n")
    repo.write("templates/config/README.md", "copied as is: #{ not a template }#\n")
    repo.playbook("configure")
    rendered = (repo.root / "kubernetes/apps/settings.yaml").read_text()
    assert 'DOMAIN: "EXAMPLE.COM"' in rendered and 'SPEGEL: "on"' in rendered and 'LABEL: "example/home-ops"' in rendered
    assert (repo.root / "kubernetes/apps/overridden.yaml").read_text() == "---\nfrom: override\n"
    assert not (repo.root / "kubernetes/apps/empty.yaml").exists()
    assert not (repo.root / "kubernetes/apps/labels.partial.yaml").exists()
    # the same tree through makejinja itself gives the same bytes
    reference = tmp_path / "reference"
    subprocess.run(["cp", "-r", str(repo.root), str(reference)], check=True)
    for name in ("kubernetes", "README.md"):
        subprocess.run(["rm", "-rf", str(reference / name)], check=True)
    subprocess.run([str(VENV_BIN / "makejinja")], cwd=reference, check=True, capture_output=True)
    for name in ("kubernetes/apps/settings.yaml", "kubernetes/apps/overridden.yaml", "README.md"):
        assert (reference / name).read_bytes() == (repo.root / name).read_bytes(), name


def test_init_is_idempotent_and_prepares_the_repository(make_repo):
    repo = make_repo(demo=False, key=False)
    first = repo.playbook("init")
    assert recap_changed(first.stdout) > 0
    assert (repo.root / "age.key").stat().st_mode & 0o777 == 0o600
    assert (repo.root / "cluster.yaml").stat().st_mode & 0o777 == 0o600
    gitignore = (repo.root / ".gitignore").read_text().splitlines()
    assert {"cluster.yaml", "age.key", "*.tfvars", "!*.tfvars.sops.*", "!*.tfvars.enc"} <= set(gitignore)
    assert json.loads((repo.root / ".schemas/cluster.schema.json").read_text())["title"]
    recipient = next(line.split(": ")[1] for line in (repo.root / "age.key").read_text().splitlines() if "public key" in line)
    assert recipient in (repo.root / ".sops.yaml").read_text()
    public = repo.root / ".age-public-key"  # the recipient only, for git: not ignored
    assert public.read_text() == f"{recipient}\n" and public.stat().st_mode & 0o777 == 0o644
    assert not {".age-public-key", ".*", ".age-*"} & set(gitignore)
    before, public_before = repo.snapshot(), public.stat().st_mtime_ns
    second = repo.playbook("init")
    assert recap_changed(second.stdout) == 0
    assert repo.snapshot() == before and public.stat().st_mtime_ns == public_before
    # the sample cluster.yaml is not valid until filled in, and says what is missing
    result = repo.playbook("configure", check=False)
    assert result.returncode != 0
    assert "node_cidr: is not a network in CIDR form" in result.stdout


def test_playbook_runs_from_any_directory(make_repo, tmp_path):
    repo = make_repo()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = [str(VENV_BIN / "ansible-playbook"), "cluster.secrets.configure", "-e", f"cluster_root={repo.root}"]
    result = subprocess.run(cmd, cwd=elsewhere, env=repo.env(), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repo.root / INFRA).exists()
    assert not any(elsewhere.iterdir())


def test_user_playbook_imports_configure_and_uses_cluster_vars(make_repo):
    """`ansible-playbook configure.yml` from the repository itself, with cluster_root defaulting to the current directory."""
    repo = make_repo()
    repo.write("configure.yml", (
        "---\n"
        "- name: Configure\n  ansible.builtin.import_playbook: cluster.secrets.configure\n\n"
        "- name: Use the validated vars\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Load cluster vars\n      cluster.secrets.cluster_vars:\n        cluster_root: \"{{ playbook_dir }}\"\n"
        "      register: cluster\n"
        "    - name: Show them\n      ansible.builtin.debug:\n"
        "        msg: \"{{ cluster.infrastructure_enabled }} {{ cluster.secret_keys | join(',') }} {{ cluster.cluster_vars.node_cidr }}\"\n"
    ))
    env = repo.env(PWD=str(repo.root))
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), "configure.yml", "-v"], cwd=repo.root, env=env,
                            capture_output=True, text=True, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert (repo.root / INFRA).exists()
    assert "True cloudflare_token,proxmox_api_token_secret,tfstate_password 192.168.42.0/24" in out
    assert "demo-token" not in out and "00000000-demo" not in out


def test_a_plaintext_secret_in_the_repository_is_encrypted(make_repo):
    repo = make_repo()
    repo.playbook("configure")
    plaintext = repo.decrypt(APP)
    (repo.root / APP).write_text(plaintext)  # someone committed the decrypted file by mistake
    result = repo.playbook("configure")
    assert "exists unencrypted in the repository" in result.stdout
    assert (repo.root / APP).read_text().count("ENC[") >= 2
    assert repo.decrypt(APP) == plaintext


def test_validation_is_redone_when_cluster_yaml_changes(make_repo):
    """After a successful run validation may be skipped for identical input; an edit is validated again."""
    repo = make_repo()
    repo.playbook("configure")
    set_values(repo, cluster_api_addr="192.168.42.11")  # now collides with cluster_gateway_addr
    result = repo.playbook("configure", check=False)
    assert result.returncode != 0
    assert "cluster_gateway_addr: 192.168.42.11 is already used by cluster_api_addr" in result.stdout
