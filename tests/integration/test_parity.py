# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""scripts/parity.py: the real makejinja against the real configure on a tiny makejinja repository, and the
tree comparison on small hand-made trees (real sops, real age keys)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import MAKEJINJA_DELIMITERS, ROOT, sops_binary

SCRIPT = ROOT / "scripts" / "parity.py"
TOKEN = "parity-token-not-for-output"  # the one secret value: it must never appear in the script's output
MAKEJINJA_TOML = """\
[makejinja]
inputs = ["./templates"]
output = "./"
data = ["./cluster.yaml"]
jinja_suffix = ".j2"
force = true
undefined = "chainable"
""" + MAKEJINJA_DELIMITERS
PLAIN_TEMPLATE = """\
#| a plain template: no secret in it #|
domain: #{ cloudflare_domain }#
api: "#{ cluster_api_addr }#"
name: "#{ cluster_name | default('home') }#"
#% if optional.feature.enabled %#
feature: true
#% endif %#
"""
SECRET_TEMPLATE = """\
apiVersion: v1
kind: Secret
metadata:
  name: cloudflare
stringData:
  token: "#{ cloudflare_token }#"
"""
SOPS_CONFIG_TEMPLATE = """\
---
creation_rules:
  - path_regex: \\.sops\\.ya?ml$
    age: "#{ sops_age_recipient }#"
"""


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("parity_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


parity = load_script()


def public_key(key_file: Path) -> str:
    return next(line.split(": ", 1)[1] for line in key_file.read_text().splitlines() if line.startswith("# public key: "))


@pytest.fixture
def makejinja_repo(make_repo):
    """A makejinja repository: a plain template, a secret, and a .sops.yaml rendered for the repository's own age key."""
    repo = make_repo("mj", demo=False)
    recipient = public_key(repo.key_file)  # read from the key file, handed to the template as a plain variable
    repo.write("makejinja.toml", MAKEJINJA_TOML)
    repo.write("cluster.yaml", "".join(f'{key}: "{value}"\n' for key, value in {
        "node_cidr": "192.168.42.0/24", "cluster_api_addr": "192.168.42.10", "cluster_gateway_addr": "192.168.42.11",
        "cluster_dns_gateway_addr": "192.168.42.12", "cloudflare_gateway_addr": "192.168.42.13",
        "repository_name": "example/home-ops", "cloudflare_domain": "example.com", "cloudflare_token": TOKEN,
        "sops_age_recipient": recipient,
    }.items())).chmod(0o600)
    repo.write("templates/settings.yaml.j2", PLAIN_TEMPLATE)
    repo.write("templates/secret.sops.yaml.j2", SECRET_TEMPLATE)
    repo.write("templates/.sops.yaml.j2", SOPS_CONFIG_TEMPLATE)
    return repo


def run_script(repo, scratch: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The script as a user runs it, with its temporary folder under ``scratch``."""
    scratch.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(SCRIPT), str(repo.root), *args], env=repo.env(TMPDIR=str(scratch)),
                          capture_output=True, text=True, timeout=600, check=False)


def test_configure_renders_what_makejinja_renders(makejinja_repo, tmp_path):
    scratch = tmp_path / "scratch"
    result = run_script(makejinja_repo, scratch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == (
        "compared 9 files (3 rendered by makejinja): 9 identical (1 secrets identical after decryption), 0 different, "
        "0 only in makejinja, 0 only in configure, 0 mode differences")
    assert TOKEN not in result.stdout + result.stderr
    assert list(scratch.iterdir()) == []
    assert not (makejinja_repo.root / "settings.yaml").exists()  # the repository itself is left alone

    as_json = run_script(makejinja_repo, scratch, "--json")
    report = json.loads(as_json.stdout)
    assert (report["compared"], report["identical"], report["secrets_identical"], report["same"]) == (9, 9, 1, True)
    assert {f["path"]: f["status"] for f in report["files"]}["secret.sops.yaml"] == "identical-decrypted"
    assert list(scratch.iterdir()) == []


def test_a_template_configure_skips_is_reported(makejinja_repo, tmp_path):
    scratch = tmp_path / "scratch"
    result = run_script(makejinja_repo, scratch, "-e", '{"configure_exclude_patterns": ["settings.yaml.j2"]}')
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 only in makejinja" in result.stdout.splitlines()[0]
    assert "only-in-makejinja  settings.yaml" in result.stdout
    assert list(scratch.iterdir()) == []


# ---- the comparison on small trees ---------------------------------------------------------------

def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def encrypt(plaintext: str, recipient: str, fmt: str = "yaml") -> bytes:
    return subprocess.run([sops_binary(), "--encrypt", "--age", recipient, "--input-type", fmt, "--output-type", fmt, "/dev/stdin"],
                          input=plaintext.encode(), capture_output=True, check=True).stdout


@pytest.fixture
def age_key(tmp_path) -> tuple[Path, str]:
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file

    key_file = tmp_path / "age.key"
    return key_file, generate_key_file(key_file)


def decryptor(key_file: Path):
    return parity.sops_decryptor(sops_binary(), {"SOPS_AGE_KEY_FILE": str(key_file), "PATH": os.environ.get("PATH", "")})


def statuses(comparison) -> dict[str, tuple[str, str]]:
    return {entry.path: (entry.status, entry.detail) for entry in comparison.entries}


def never_called(path: Path, fmt: str) -> bytes:
    raise AssertionError(f"nothing needs decrypting here, yet {path} was ({fmt})")


def test_a_planted_difference_is_reported_by_key_path_never_by_value(tmp_path):
    a = write_tree(tmp_path / "a", {"app/values.yaml": "app:\n  image: left-value\n  port: 80\n", "same.txt": "x\n",
                                    "gone.yaml": "a: 1\n", "notes.txt": "one\ntwo\n", ".git/HEAD": "ref\n"})
    b = write_tree(tmp_path / "b", {"app/values.yaml": "app:\n  image: right-value\n  port: 80\n", "same.txt": "x\n",
                                    "extra.yaml": "a: 1\n", "notes.txt": "one\nTWO\n", "__pycache__/x.pyc": b"\0"})
    (b / "same.txt").chmod(0o600)
    comparison = parity.compare_trees(a, b, never_called)
    assert statuses(comparison) == {
        "app/values.yaml": ("different", "app.image: value differs"),
        "extra.yaml": ("only-in-configure", ""),
        "gone.yaml": ("only-in-makejinja", ""),
        "notes.txt": ("different", "first difference at line 2"),
        "same.txt": ("identical", ""),
    }
    assert [(m.path, m.makejinja, m.configure) for m in comparison.modes] == [("same.txt", "0644", "0600")]
    assert comparison.summary() == ("compared 5 files (5 rendered by makejinja): 1 identical (0 secrets identical after decryption), 2 different, "
                                    "1 only in makejinja, 1 only in configure, 1 mode differences")
    shown = "\n".join(comparison.lines()) + json.dumps(comparison.as_dict())
    assert "mode differs       same.txt  (makejinja 0644, configure 0600)" in shown
    assert "left-value" not in shown and "right-value" not in shown
    assert not comparison.same


def test_same_data_in_other_words_is_still_a_difference(tmp_path):
    a = write_tree(tmp_path / "a", {"x.yaml": "a: 1\nb: [1, 2]\n", "y.json": '{"k": {"n": true}}'})
    b = write_tree(tmp_path / "b", {"x.yaml": "b:\n  - 1\n  - 2\na: 1\n", "y.json": '{"k": {"n": 1}}'})
    found = statuses(parity.compare_trees(a, b, never_called))
    assert found["x.yaml"] == ("different", "same YAML data, first difference at line 1")
    assert found["y.json"] == ("different", "k.n: types differ")  # True == 1 in Python, not in a manifest


def test_secrets_are_compared_after_decryption(tmp_path, age_key):
    key_file, recipient = age_key
    plain = "kind: Secret\nstringData:\n  token: left-secret\n  user: admin\n"
    a = write_tree(tmp_path / "a", {"same.sops.yaml": plain, "changed.sops.yaml": plain, "other.sops.json": '{"k": "v"}',
                                    ".sops.yaml": f"creation_rules:\n  - age: {recipient}\n"})
    b = write_tree(tmp_path / "b", {
        "same.sops.yaml": encrypt(plain.replace("  token", "  # a comment sops keeps\n  token"), recipient),
        "changed.sops.yaml": encrypt(plain.replace("left-secret", "right-secret"), recipient),
        "other.sops.json": encrypt('{"k": "v"}', recipient, "json"),
        ".sops.yaml": encrypt(f"creation_rules:\n  - age: {recipient}\n", recipient),
    })
    comparison = parity.compare_trees(a, b, decryptor(key_file))
    assert statuses(comparison) == {
        ".sops.yaml": ("different", "configure encrypted it; sops reads it as plain YAML"),
        "changed.sops.yaml": ("different", "after decryption: stringData.token: value differs"),
        "other.sops.json": ("identical-decrypted", ""),
        "same.sops.yaml": ("identical-decrypted", ""),
    }
    assert comparison.complete
    shown = "\n".join([comparison.summary(), *comparison.lines()]) + json.dumps(comparison.as_dict())
    assert "left-secret" not in shown and "right-secret" not in shown
    assert "2 identical (2 secrets identical after decryption)" in comparison.summary()


def test_a_secret_configure_left_in_plaintext_is_a_difference(tmp_path):
    files = {"app/secret.sops.yaml": "token: plain\n", ".sops.yaml": "creation_rules: []\n"}
    comparison = parity.compare_trees(write_tree(tmp_path / "a", files), write_tree(tmp_path / "b", files), never_called)
    assert statuses(comparison) == {
        ".sops.yaml": ("identical", ""),
        "app/secret.sops.yaml": ("different", "configure left this secret file unencrypted"),
    }
    # a plaintext *.sops.* file that was already in the repository and that makejinja did not render is not flagged
    original = write_tree(tmp_path / "repo", files)
    assert parity.compare_trees(tmp_path / "a", tmp_path / "b", never_called, original=original).same


def test_a_secret_that_cannot_be_decrypted_makes_the_check_incomplete(tmp_path, age_key):
    _key_file, recipient = age_key
    from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file

    other_key = tmp_path / "other.key"
    generate_key_file(other_key)
    a = write_tree(tmp_path / "a", {"s.sops.yaml": "a: secret-value\n"})
    b = write_tree(tmp_path / "b", {"s.sops.yaml": encrypt("a: secret-value\n", recipient)})
    comparison = parity.compare_trees(a, b, decryptor(other_key))
    [entry] = comparison.entries
    assert entry.status == "different" and entry.detail.startswith("cannot decrypt: ")
    assert not comparison.complete
    assert "secret-value" not in entry.detail


# ---- failures, clean-up and signals --------------------------------------------------------------

def test_a_missing_repository_is_a_clear_message(tmp_path, capsys):
    assert parity.main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere: no such directory" in err and "Traceback" not in err


def test_a_failing_makejinja_stops_the_check_and_leaves_no_temporary_folder(makejinja_repo, tmp_path, monkeypatch, capsys):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert parity.main([str(makejinja_repo.root), "--makejinja", "sh -c 'echo template broke; exit 3'"]) == 2
    err = capsys.readouterr().err
    assert "makejinja failed (exit 3); its last lines:\n  template broke" in err
    assert parity.main([str(makejinja_repo.root), "--makejinja", "no-such-makejinja-command"]) == 2
    assert "cannot run makejinja (no-such-makejinja-command: No such file or directory)" in capsys.readouterr().err
    assert list(scratch.iterdir()) == []


def test_makejinja_not_installed_is_named(makejinja_repo, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho \"$0: No module named makejinja\" >&2\nexit 1\n")
    fake_python.chmod(0o755)
    assert parity.main([str(makejinja_repo.root), "--python", str(fake_python)]) == 2
    assert f"makejinja is not installed for {fake_python}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("parity-")) == []


def test_sigterm_removes_the_temporary_folder_and_the_running_side(makejinja_repo, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    slow = "sh -c 'echo $$ > started.pid; exec sleep 120'"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(makejinja_repo.root), "--makejinja", slow],
                            env=makejinja_repo.env(TMPDIR=str(scratch)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (pid_files := list(scratch.glob("parity-*/a/started.pid"))) or not pid_files[0].read_text().strip():
            assert time.monotonic() < deadline and proc.poll() is None, "makejinja's stand-in never started"
            time.sleep(0.05)
        child = int(pid_files[0].read_text())
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted (SIGTERM); the temporary copies were removed" in err and "Traceback" not in err
    assert list(scratch.iterdir()) == []
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
