# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The hostile-input corpus: repositories broken in every way we know, each with the words its error must hold.

Every case starts from the demo cluster with canary secrets (values that must never show up in any
message) and applies one mutation. The driver runs configure's own code path in process (lock, plan,
apply, and the action's failure message with its scrubbing), with the real sops and real age keys.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import DEMO

CANARIES = {
    "cloudflare_token": "CANARY-cf-token-7Hq2",
    "tfstate_password": "CANARY-state-pw-Zx81",
    "proxmox_api_token_secret": "CANARY-pve-secret-Lm40",
}


@dataclass
class Case:
    name: str
    mutate: Callable[[Path], Any]
    expect: tuple[str, ...]  # substrings the message must hold (file, line, key or cause)


def demo_repo(root: Path, key_file: Path) -> Path:
    shutil.copytree(DEMO, root)
    text = (root / "cluster.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.startswith(tuple(f"{k}:" for k in CANARIES))]
    lines += [f'{key}: "{value}"' for key, value in CANARIES.items()]
    (root / "cluster.yaml").write_text("\n".join(lines) + "\n")
    shutil.copy(key_file, root / "age.key")
    return root


def append(relpath: str, text: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    return mutate


def write(relpath: str, content: str | bytes) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return mutate


def replace_vars(old: str, new: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / "cluster.yaml"
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
    return mutate


def both(*mutations: Callable[[Path], Any]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        for mutation in mutations:
            mutation(root)
    return mutate


def special(kind: str, relpath: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "dir":
            path.mkdir()
        elif kind == "zero":
            path.symlink_to("/dev/zero")
        elif kind == "dangling":
            path.symlink_to(root / "does-not-exist")
        elif kind == "file":  # a file where a folder must be
            path.write_text("in the way\n")
    return mutate


SECRET = "CANARY-cf-token-7Hq2"
SECRET_TEMPLATE = "templates/kubernetes/apps/default/leak/app/"


def leak(expression: str) -> Callable[[Path], None]:
    """A plain (committed) file that holds the token in some transformed form."""
    return write(SECRET_TEMPLATE + "configmap.yaml.j2", "---\nkind: ConfigMap\ndata:\n  X: " + expression + "\n")


def yaml_cases() -> list[Case]:
    bomb = 'lol: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"l{i}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8))
    return [
        Case("unclosed double quote", append("cluster.yaml", 'echo_greeting: "never closed\n'), ("cluster.yaml", "invalid YAML")),
        Case("unclosed single quote", append("cluster.yaml", "echo_greeting: 'never closed\n"), ("cluster.yaml:22:", "invalid YAML")),
        Case("bad indentation", append("cluster.yaml", "a:\n  b: 1\n c: 2\n"), ("cluster.yaml", "invalid YAML")),
        Case("tab indentation", append("cluster.yaml", "a:\n\tb: 1\n"), ("cluster.yaml", "'\\t'")),
        Case("duplicate key", append("cluster.yaml", 'cloudflare_domain: "other.example"\n'), ("cluster.yaml", "more than once")),
        Case("unknown alias", append("cluster.yaml", "a: *nowhere\n"), ("cluster.yaml", "invalid YAML")),
        Case("alias bomb", write("cluster.yaml", bomb), ("cluster.yaml", "alias bomb")),
        Case("recursive alias", write("cluster.yaml", "a: &a\n  b: *a\n"), ("cluster.yaml", "refers to a node that contains it")),
        Case("5000-deep nesting", write("cluster.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"), ("cluster.yaml", "deep")),
        Case("NUL byte", append("cluster.yaml", "echo_greeting: \x00\n"), ("cluster.yaml", "control character")),
        Case("escape byte", append("cluster.yaml", "echo_greeting: \x1b[31m\n"), ("cluster.yaml", "control character")),
        Case("invalid UTF-8", write("cluster.yaml", b"node_cidr: \xff\xfe\n"), ("cluster.yaml", "UTF-8")),
        Case("top-level list", write("cluster.yaml", "- a\n- b\n"), ("cluster.yaml", "mapping")),
        Case("top-level scalar", write("cluster.yaml", "just text\n"), ("cluster.yaml", "mapping")),
        Case("two documents", write("cluster.yaml", "a: 1\n---\nb: 2\n"), ("cluster.yaml", "invalid YAML")),
        Case("5 MB file", write("cluster.yaml", "a: " + "x" * (5 * 1024 * 1024) + "\n"), ("cluster.yaml", "bytes")),
        Case("FIFO", special("fifo", "cluster.yaml"), ("cluster.yaml", "not a regular file")),
        Case("folder", special("dir", "cluster.yaml"), ("cluster.yaml", "not a regular file")),
        Case("/dev/zero", special("zero", "cluster.yaml"), ("not a regular file",)),
        Case("dangling link", special("dangling", "cluster.yaml"), ("cluster.yaml", "not found")),
        Case("nodes.yaml broken", write("nodes.yaml", "nodes: [\n"), ("nodes.yaml", "invalid YAML")),
        Case("nodes.yaml alias bomb", write("nodes.yaml", bomb), ("nodes.yaml", "alias bomb")),
        Case("lone surrogate", append("cluster.yaml", 'surrogate_value: "\\ud800"\n'), ("surrogate_value", "surrogate")),
    ]


def schema_cases() -> list[Case]:
    cases = []
    for key, bad in (("tfstate_password", "424242"), ("tfstate_password", "[a, b]"), ("tfstate_password", "{a: b}"),
                     ("tfstate_password", "true"), ("cloudflare_token", "12345678"), ("proxmox_api_token_secret", '""'),
                     ("proxmox_api_token_secret", "[x]")):
        cases.append(Case(f"{key} = {bad}", replace_vars(f'{key}: "{CANARIES[key]}"', f"{key}: {bad}"), ("cluster.yaml", key)))
    for key, bad in (("proxmox_api_url", '"ftp://pve"'), ("proxmox_api_token_id", '"no-realm"'), ("tfstate_url", '"file:///x"'),
                     ("node_cidr", '"10.0.0.0/33"'), ("cluster_api_addr", '"10.0.0.300"'), ("cluster_api_addr", '"192.168.42.11"'),
                     ("cluster_pod_cidr", '"192.168.42.0/25"'), ("repository_name", '"not a repo"'), ("external_secrets", '"yes"'),
                     ("external_secrets", "{enabled: 3}"), ("cilium_bgp_router_asn", '"64513"')):
        old = next((line for line in (DEMO / "cluster.yaml").read_text().splitlines() if line.startswith(f"{key}:")), None)
        mutation = replace_vars(old, f"{key}: {bad}") if old else append("cluster.yaml", f"{key}: {bad}\n")
        cases.append(Case(f"{key} = {bad}", mutation, ("cluster.yaml", key)))
    cases.append(Case("misspelt key", append("cluster.yaml", 'tfstate_pasword: "x"\n'), ("cluster.yaml", "misspelling")))
    twins = ("nodes:\n  - {name: a, address: 192.168.42.20, controller: true}\n"
             "  - {name: a, address: 192.168.42.21, controller: false}\n")
    cases.append(Case("duplicate node names", write("nodes.yaml", twins), ("nodes.yaml", "also used")))
    cases.append(Case("node outside node_cidr", write("nodes.yaml", "nodes:\n  - {name: a, address: 10.9.9.9, controller: true}\n"),
                      ("nodes.yaml", "outside node_cidr")))
    return cases


def template_cases() -> list[Case]:
    t = "templates/kubernetes/apps/default/bad/app/"
    return [
        Case("template syntax error", write(t + "x.yaml.j2", "#% if %#\n"), ("x.yaml.j2", "syntax error")),
        Case("undefined variable", write(t + "x.yaml.j2", "a: #{ no_such_value }#\n"), ("x.yaml.j2", "no_such_value")),
        Case("undefined in a secret", write(t + "s.sops.yaml.j2", "a: #{ nope.deeper }#\n"), ("s.sops.yaml.j2", "undefined")),
        Case("filter error", write(t + "x.yaml.j2", "a: #{ 'not base64!' | b64decode }#\n"), ("x.yaml.j2",)),
        Case("unknown filter", write(t + "x.yaml.j2", "a: #{ 1 | no_such_filter }#\n"), ("x.yaml.j2", "no_such_filter")),
        Case("include outside", write(t + "x.yaml.j2", "#% include '../../../../etc/passwd' %#\n"), ("x.yaml.j2",)),
        Case("missing include", write(t + "x.yaml.j2", "#% include 'nowhere.j2' %#\n"), ("x.yaml.j2", "nowhere.j2")),
        Case("sandbox: cycler globals", write(t + "x.yaml.j2", "a: #{ cycler.__init__.__globals__.os.popen('id').read() }#\n"),
             ("x.yaml.j2",)),
        Case("sandbox: lipsum globals", write(t + "x.yaml.j2", "a: #{ lipsum.__globals__['os'].popen('id').read() }#\n"),
             ("x.yaml.j2",)),
        Case("sandbox: subclasses", write(t + "x.yaml.j2", "a: #{ ''.__class__.__mro__[1].__subclasses__() }#\n"), ("x.yaml.j2",)),
        Case("sandbox: format", write(t + "x.yaml.j2", "a: #{ '{0.__class__}'.format(1) }#\n"), ("x.yaml.j2",)),
        Case("rendered YAML invalid", write(t + "x.yaml.j2", "a: [1\n"), ("x.yaml", "does not parse")),
        Case("rendered secret YAML invalid", write(t + "s.sops.yaml.j2", "a: #{ cloudflare_token }#: [\n"), ("s.sops.yaml", "does not parse")),
        Case("leak: raw", leak("#{ cloudflare_token }#"), ("configmap.yaml", "cloudflare_token")),
        Case("leak: urlencode in a DSN", leak("postgres://u:#{ cloudflare_token | urlencode }#@db/x"), ("configmap.yaml", "cloudflare_token")),
        Case("leak: base64", leak("#{ cloudflare_token | b64encode }#"), ("configmap.yaml", "cloudflare_token")),
        Case("leak: json", leak("#{ cloudflare_token | tojson }#"), ("configmap.yaml", "cloudflare_token")),
        Case("leak: yaml_quote", leak("#{ cloudflare_token | yaml_quote }#"), ("configmap.yaml", "cloudflare_token")),
        Case("leak: html escape", leak("#{ cloudflare_token | e }#"), ("configmap.yaml", "cloudflare_token")),
        Case("leak: first half only", leak("#{ cloudflare_token[:10] }#"), ()),
        Case("leak: in a comment", write(SECRET_TEMPLATE + "notes.txt.j2", "# token was #{ cloudflare_token }#\n"),
             ("notes.txt", "cloudflare_token")),
        Case("leak: reversed joined", leak("'#{ cloudflare_token | replace('-', '') }#'"), ()),
        Case("output outside the repository", write("templates/x.j2", "x\n"), ()),
    ]


MJ = '[makejinja]\ninputs = ["./templates"]\njinja_suffix = ".j2"\n'
CLASHING_DELIMITERS = '[makejinja.delimiter]\nvariable_start = "#%"\nvariable_end = "%#"\nblock_start = "#%"\nblock_end = "%#"\n'
FOREIGN_SECRET = ("stringData:\n  X: ENC[AES256_GCM,data:Zm9v,iv:Zm9v,tag:Zm9v,type:str]\n"
                  "sops:\n  age:\n    - recipient: age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq8"
                  "\n      enc: x\n  lastmodified: '2026-01-01T00:00:00Z'\n  mac: x\n  version: 3.11.0\n")


def config_cases() -> list[Case]:
    return [
        Case("makejinja.toml invalid", write("makejinja.toml", "[makejinja\ninputs = 1\n"), ("makejinja.toml", "invalid TOML")),
        Case("makejinja.toml inputs not a list", write("makejinja.toml", '[makejinja]\ninputs = 5\n'), ("makejinja.toml", "inputs")),
        Case("makejinja.toml bad undefined", write("makejinja.toml", '[makejinja]\ninputs = ["./templates"]\nundefined = "loose"\n'),
             ("makejinja.toml", "undefined")),
        Case("makejinja.toml bad delimiters", write("makejinja.toml", MJ + CLASHING_DELIMITERS), ("makejinja.toml",)),
        Case("makejinja.toml output outside", write("makejinja.toml", MJ + 'output = "../x"\n'), ("outside the repository",)),
        Case("makejinja.toml missing data file", write("makejinja.toml", MJ + 'data = ["./cluster.yaml", "./gone.toml"]\n'),
             ("gone.toml", "not found")),
        Case("plugin missing module", write("makejinja.toml", MJ + 'loaders = ["not_there:Plugin"]\n'), ("not_there",)),
        Case(".sops.yaml invalid", write(".sops.yaml", "creation_rules: [\n"), (".sops.yaml:", "invalid YAML")),
        Case(".sops.yaml unclosed quote", write(".sops.yaml", "creation_rules:\n  - path_regex: 'x\n"), (".sops.yaml:2:",)),
        Case(".sops.yaml without rules", write(".sops.yaml", "keys: []\n"), (".sops.yaml", "creation_rules")),
        Case(".sops.yaml rule matches nothing", write(".sops.yaml", "creation_rules:\n  - path_regex: ^nothing$\n    age: age1x\n"),
             ("no creation rule",)),
        Case(".sops.yaml bad regex", write(".sops.yaml", "creation_rules:\n  - path_regex: '(['\n    age: age1x\n"), (".sops.yaml",)),
        Case("age key missing", lambda root: (root / "age.key").unlink(), ("age key",)),
        Case("age key garbage", write("age.key", "AGE-SECRET-KEY-1NOTAKEY\n"), ("age.key",)),
        Case("age key wrong checksum", lambda root: (root / "age.key").write_text(
            (root / "age.key").read_text().replace("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-1Q", 1)), ("age.key:", "malformed")),
    ]


def tree_cases() -> list[Case]:
    secret = "kubernetes/apps/default/echo/app/secret.sops.yaml"
    return [
        Case("output is a folder", special("dir", "kubernetes/flux/cluster-settings.yaml"), ("cluster-settings.yaml", "folder")),
        Case("output is a FIFO", special("fifo", "kubernetes/flux/cluster-settings.yaml"), ("cluster-settings.yaml",)),
        Case("output is a link", special("dangling", "kubernetes/flux/cluster-settings.yaml"), ("cluster-settings.yaml", "link")),
        Case("output parent is a file", special("file", "kubernetes/flux"), ("kubernetes/flux", "in the way")),
        Case("secret folder is a file", special("file", "kubernetes/apps/default/echo/app"), ("in the way",)),
        Case("secret truncated", write(secret, "apiVersion: v1\nkind: Secret\nstringData:\n  CLOUDFLARE_TOKEN: ENC[AES256_GCM,data:abc"),
             (secret,)),
        Case("secret garbage", write(secret, b"\x00\x01\x02 not yaml at all \xff"), (secret,)),
        Case("secret for another key", write(secret, FOREIGN_SECRET), (secret,)),
        Case("secret whitespace-only value", replace_vars(f'cloudflare_token: "{CANARIES["cloudflare_token"]}"', 'cloudflare_token: "   "'),
             ("CLOUDFLARE_TOKEN: would become blank", "only whitespace")),
    ]


def all_cases() -> list[Case]:
    return yaml_cases() + schema_cases() + template_cases() + config_cases() + tree_cases()
