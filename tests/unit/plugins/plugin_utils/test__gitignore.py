# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils import _gitignore
from ansible_collections.cluster.secrets.plugins.plugin_utils._gitignore import gitignore_ignores, ignored_paths


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for relpath, text in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def fallback_ignored(root: Path, paths: list[str]) -> set[str]:
    return {path for path in paths if gitignore_ignores(root, path)}


# (gitignore files, paths asked about, the paths that must be ignored)
RULES: dict[str, tuple[dict[str, str], list[str], set[str]]] = {
    "blank lines and comments": ({".gitignore": "# secret.txt\n\n   \n#\nplain.txt\n"},
                                 ["secret.txt", "# secret.txt", "#", "plain.txt"], {"plain.txt"}),
    "comment only at line start": ({".gitignore": " #x\n"}, ["#x", " #x"], {" #x"}),
    "escaped hash and bang": ({".gitignore": "\\#notes\n\\!important\n"}, ["#notes", "!important", "notes", "important"],
                              {"#notes", "!important"}),
    "trailing spaces": ({".gitignore": "trail.txt   \nspace\\ \n"}, ["trail.txt", "trail.txt   ", "space ", "space"],
                        {"trail.txt", "space "}),
    "crlf line endings": ({".gitignore": "a.txt\r\nb.txt\r\n"}, ["a.txt", "b.txt", "c.txt"], {"a.txt", "b.txt"}),
    "negation, last match wins": ({".gitignore": "*.log\n!keep.log\n!other.log\nother.log\n"},
                                  ["a.log", "keep.log", "other.log", "a.txt"], {"a.log", "other.log"}),
    "negation before the pattern loses": ({".gitignore": "!keep.log\n*.log\n"}, ["keep.log"], {"keep.log"}),
    "no re-include under an excluded directory": ({".gitignore": "build/\n!build/keep.txt\n!keep2.txt\n"},
                                                  ["build/keep.txt", "build/keep2.txt", "build/x"],
                                                  {"build/keep.txt", "build/keep2.txt", "build/x"}),
    "re-include when only the contents are excluded": ({".gitignore": "cache/*\n!cache/keep.txt\n"},
                                                       ["cache/keep.txt", "cache/x", "cache/sub/keep.txt"],
                                                       {"cache/x", "cache/sub/keep.txt"}),
    "re-include a directory and then a file": ({".gitignore": "/*\n!/foo\n/foo/*\n!/foo/bar\n"},
                                               ["x", "foo/bar", "foo/baz", "foo/bar/deep"], {"x", "foo/baz"}),
    "leading slash anchors": ({".gitignore": "/unifi/bgp.conf\n/top\n"},
                              ["unifi/bgp.conf", "site/unifi/bgp.conf", "top", "a/top"], {"unifi/bgp.conf", "top"}),
    "middle slash anchors": ({".gitignore": "doc/frotz\n"}, ["doc/frotz", "a/doc/frotz", "doc/frotz/x"],
                             {"doc/frotz", "doc/frotz/x"}),
    "no slash matches at any depth": ({".gitignore": "kubeconfig\n"}, ["kubeconfig", "a/b/kubeconfig", "kubeconfig.yaml"],
                                      {"kubeconfig", "a/b/kubeconfig"}),
    "trailing slash is directories only": ({".gitignore": "logs/\n/out/\n"},
                                           ["logs", "logs/a", "x/logs/a", "out", "out/a", "x/out/a"],
                                           {"logs/a", "x/logs/a", "out/a"}),
    "star and question mark stop at slashes": ({".gitignore": "/src/*.c\nfile?.txt\n/a?b\n"},
                                               ["src/a.c", "src/sub/a.c", "file1.txt", "file10.txt", "d/file2.txt", "a/b", "axb"],
                                               {"src/a.c", "file1.txt", "d/file2.txt", "axb"}),
    "bracket classes": ({".gitignore": "[ab].txt\n[!abc].md\n[0-2]x\n[[:digit:]][[:upper:]]\n[]z]y\n/q[/]r\n"},
                        ["a.txt", "c.txt", "d.md", "a.md", "1x", "3x", "7Q", "7q", "]y", "zy", "q/r"],
                        {"a.txt", "d.md", "1x", "7Q", "]y", "zy"}),
    "caret negates a class": ({".gitignore": "[^a]b\n"}, ["ab", "cb"], {"cb"}),
    "unterminated class or trailing backslash matches nothing": ({".gitignore": "foo[\nbar\\\n[[:nope:]]\n"},
                                                                 ["foo[", "foo", "bar", "bar\\", "[[:nope:]]", "n"], set()),
    "leading double star": ({".gitignore": "**/foo\n**/bar/baz\n"}, ["foo", "a/b/foo", "bar/baz", "x/bar/baz", "xbar/baz"],
                            {"foo", "a/b/foo", "bar/baz", "x/bar/baz"}),
    "trailing double star": ({".gitignore": "abc/**\n"}, ["abc", "abc/x", "abc/x/y", "x/abc/y"], {"abc/x", "abc/x/y"}),
    "double star in the middle": ({".gitignore": "a/**/b\n"}, ["a/b", "a/x/b", "a/x/y/b", "a/xb", "c/a/b"],
                                  {"a/b", "a/x/b", "a/x/y/b"}),
    "double star glued to a name is a single star": ({".gitignore": "/x**y\n"}, ["xy", "xay", "xa/y"], {"xy", "xay"}),
    "deeper gitignore wins": ({".gitignore": "*.txt\n", "sub/.gitignore": "!keep.txt\n"},
                              ["keep.txt", "sub/keep.txt", "sub/deep/keep.txt", "sub/other.txt"],
                              {"keep.txt", "sub/other.txt"}),
    "nested gitignore anchors to its directory": ({"sub/.gitignore": "/local.conf\nx/y\n"},
                                                  ["sub/local.conf", "sub/a/local.conf", "local.conf", "sub/x/y", "x/y"],
                                                  {"sub/local.conf", "sub/x/y"}),
    "nested gitignore cannot re-include below an excluded parent": ({".gitignore": "sub/\n", "sub/.gitignore": "!x\n"},
                                                                    ["sub/x"], {"sub/x"}),
    "dot segments and empty segments": ({".gitignore": "/a/b\n"}, ["./a/b", "a//b"], {"./a/b", "a//b"}),
}


@pytest.mark.parametrize(("files", "paths", "expected"), list(RULES.values()), ids=list(RULES))
def test_fallback_rules(tmp_path, files, paths, expected):
    write_tree(tmp_path, files)
    assert fallback_ignored(tmp_path, paths) == expected


@pytest.mark.parametrize(("files", "paths", "expected"), list(RULES.values()), ids=list(RULES))
def test_rules_match_git_itself(tmp_path, isolated_git, files, paths, expected):
    root = write_tree(tmp_path / "repo", files)
    assert git(root, "init", "-q").returncode == 0
    by_git = git(root, "check-ignore", "--stdin", "-z", stdin="\0".join(paths) + "\0")
    assert by_git.returncode in (0, 1), by_git.stderr
    assert {path for path in by_git.stdout.split("\0") if path} == expected


def test_fallback_treats_an_existing_directory_as_one(tmp_path):
    write_tree(tmp_path, {".gitignore": "cache/\n", "cache/.keep": ""})
    assert gitignore_ignores(tmp_path, "cache") is True
    assert gitignore_ignores(tmp_path, "other/cache") is False


def test_fallback_skips_missing_and_symlinked_gitignore(tmp_path):
    write_tree(tmp_path, {"elsewhere": "*.txt\n"})
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".gitignore").symlink_to(tmp_path / "elsewhere")
    assert fallback_ignored(tmp_path, ["a.txt", "sub/a.txt"]) == set()


# A repository like the ones configure renders into.
REPO_FILES = {
    ".gitignore": "\n".join([
        "# rendered secrets",
        "/unifi/bgp.conf",
        "*.tfvars",
        "*.tfvars.*",
        "!*.tfvars.sops.*",
        "kubeconfig",
        "**/secret*.txt",
        "build/",
        "!build/keep.txt",
        "cache/*",
        "!cache/keep.txt",
        "/logs/**",
        "!/logs/README.md",
        "docs/**/private/",
        "\\#hash",
        "\\!bang",
        "trailing.txt   ",
        "space\\ ",
        "*.[oa]",
        "data?.csv",
        "[Tt]emp/",
        "",
    ]),
    "infrastructure/tofu/.gitignore": ".terraform/\n*.tfstate\n*.tfstate.*\n!keep.tfvars\n/backend.hcl\n",
    "apps/.gitignore": "!kubeconfig\n/values.secret.yaml\n",
}
REPO_PATHS = [
    "unifi/bgp.conf", "site/unifi/bgp.conf", "unifi/other.conf",
    "prod.tfvars", "envs/prod.tfvars", "prod.tfvars.json", "prod.tfvars.sops.json", "prod.sops.tfvars",
    "kubeconfig", "clusters/prod/kubeconfig", "apps/kubeconfig", "apps/x/kubeconfig", "kubeconfig.sops.yaml",
    "secret.txt", "a/b/secret-db.txt", "a/secrets.txt.bak",
    "build", "build/out.bin", "build/keep.txt", "src/build/x",
    "cache/a.txt", "cache/keep.txt", "cache/sub/keep.txt",
    "logs", "logs/a.log", "logs/deep/x", "logs/README.md",
    "docs/private/x.md", "docs/a/b/private/x.md", "docs/private",
    "#hash", "!bang", "trailing.txt", "space ", "space",
    "main.o", "lib.a", "main.c", "data1.csv", "data10.csv", "dir/data1.csv", "Temp/x", "temp/x", "tmp/x",
    "infrastructure/tofu/.terraform/providers/x", "infrastructure/tofu/mod/.terraform/x", "infrastructure/.terraform/x",
    "infrastructure/tofu/terraform.tfstate", "infrastructure/tofu/terraform.tfstate.backup", "infrastructure/tofu/main.tf",
    "infrastructure/tofu/keep.tfvars", "infrastructure/tofu/backend.hcl", "infrastructure/tofu/mod/backend.hcl",
    "apps/values.secret.yaml", "apps/x/values.secret.yaml", "README.md", ".gitignore",
]
REPO_IGNORED = {
    "unifi/bgp.conf", "prod.tfvars", "envs/prod.tfvars", "prod.tfvars.json", "prod.sops.tfvars",
    "kubeconfig", "clusters/prod/kubeconfig", "secret.txt", "a/b/secret-db.txt",
    "build/out.bin", "build/keep.txt", "src/build/x", "cache/a.txt", "cache/sub/keep.txt",
    "logs/a.log", "logs/deep/x", "docs/private/x.md", "docs/a/b/private/x.md",
    "#hash", "!bang", "trailing.txt", "space ", "main.o", "lib.a", "data1.csv", "dir/data1.csv", "Temp/x", "temp/x",
    "infrastructure/tofu/.terraform/providers/x", "infrastructure/tofu/mod/.terraform/x",
    "infrastructure/tofu/terraform.tfstate", "infrastructure/tofu/terraform.tfstate.backup", "infrastructure/tofu/backend.hcl",
    "apps/values.secret.yaml",
}


def git(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(root), *args], input=stdin, capture_output=True, text=True, check=False, timeout=60)


@pytest.fixture
def isolated_git(tmp_path, monkeypatch):
    """No system or user git configuration (global excludes) reaches git, here or in the module."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    home = tmp_path / "home"
    home.mkdir()
    for name in ("HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def git_repo(tmp_path, isolated_git) -> Path:
    root = write_tree(tmp_path / "repo", REPO_FILES)
    assert git(root, "init", "-q").returncode == 0
    return root


def test_fallback_agrees_with_git_check_ignore(git_repo):
    assert len(REPO_PATHS) >= 40
    by_git = git(git_repo, "check-ignore", "--stdin", "-z", stdin="\0".join(REPO_PATHS) + "\0")
    assert by_git.returncode == 0, by_git.stderr
    assert {path for path in by_git.stdout.split("\0") if path} == REPO_IGNORED
    assert fallback_ignored(git_repo, REPO_PATHS) == REPO_IGNORED


def test_ignored_paths_asks_git_once(git_repo, monkeypatch):
    calls: list[list[str]] = []
    real_run = subprocess.run

    def counting_run(cmd, **kwargs):
        calls.append(cmd)
        return real_run(cmd, check=kwargs.pop("check", False), **kwargs)

    monkeypatch.setattr(_gitignore.subprocess, "run", counting_run)
    assert ignored_paths(git_repo, REPO_PATHS) == REPO_IGNORED
    assert len(calls) == 1 and calls[0][1:] == ["-C", str(git_repo), "check-ignore", "--stdin", "-z"]
    assert not any((git_repo / path).exists() for path in REPO_IGNORED)


def test_ignored_paths_leaves_out_a_tracked_file(git_repo):
    write_tree(git_repo, {"prod.tfvars": "x = 1\n"})
    assert git(git_repo, "add", "-f", "prod.tfvars").returncode == 0
    assert ignored_paths(git_repo, ["prod.tfvars", "other.tfvars", "main.tf"]) == {"other.tfvars"}
    assert gitignore_ignores(git_repo, "prod.tfvars") is True


def test_ignored_paths_from_a_subdirectory_of_the_work_tree(git_repo):
    root = git_repo / "infrastructure"
    root.mkdir(exist_ok=True)
    paths = ["tofu/terraform.tfstate", "tofu/main.tf", "tofu/prod.tfvars", "tofu/keep.tfvars", "kubeconfig"]
    assert ignored_paths(root, paths) == {"tofu/terraform.tfstate", "tofu/prod.tfvars", "kubeconfig"}


def test_ignored_paths_without_a_work_tree_reads_gitignore(tmp_path, isolated_git, monkeypatch):
    root = write_tree(tmp_path / "plain", REPO_FILES)
    calls: list[list[str]] = []
    real_run = subprocess.run
    monkeypatch.setattr(_gitignore.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or real_run(cmd, check=kw.pop("check", False), **kw))
    assert ignored_paths(root, REPO_PATHS) == REPO_IGNORED
    assert len(calls) == 1  # git was asked, said "not a git repository", and the fallback answered


def test_ignored_paths_without_git_binary(tmp_path, monkeypatch):
    root = write_tree(tmp_path, {".gitignore": "*.key\n"})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(_gitignore.subprocess, "run", pytest.fail)
    assert ignored_paths(root, ["a.key", "b.txt", ""]) == {"a.key"}


@pytest.mark.parametrize("failure", [
    subprocess.TimeoutExpired(["git"], 30),
    OSError("exec format error"),
    subprocess.CompletedProcess(["git"], 128, b"", b"fatal: something"),
    subprocess.CompletedProcess(["git"], 129, b"", b"usage"),
])
def test_git_failure_falls_back_to_gitignore(git_repo, monkeypatch, failure):
    write_tree(git_repo, {"prod.tfvars": "x = 1\n"})
    assert git(git_repo, "add", "-f", "prod.tfvars").returncode == 0

    def failing_run(cmd, **kwargs):
        if isinstance(failure, BaseException):
            raise failure
        return failure

    monkeypatch.setattr(_gitignore.subprocess, "run", failing_run)
    # The fallback cannot see the index, so the tracked file counts as ignored: proof the fallback answered.
    assert ignored_paths(git_repo, ["prod.tfvars", "main.tf", "kubeconfig"]) == {"prod.tfvars", "kubeconfig"}


def test_git_runs_without_pager_editor_or_redirected_repository(tmp_path, monkeypatch):
    seen: dict[str, str] = {}
    monkeypatch.setenv("GIT_DIR", "/elsewhere/.git")
    monkeypatch.setenv("GIT_PAGER", "less")
    monkeypatch.setenv("GIT_EDITOR", "vim")

    def fake_run(cmd, **kwargs):
        seen.update(kwargs["env"])
        assert kwargs["timeout"] > 0 and kwargs["input"] == b"a.key\0dir/b.key\0c.txt\0"
        return subprocess.CompletedProcess(cmd, 0, b"a.key\0dir/b.key\0", b"")

    monkeypatch.setattr(_gitignore.shutil, "which", lambda name: "/usr/bin/git")
    monkeypatch.setattr(_gitignore.subprocess, "run", fake_run)
    assert ignored_paths(tmp_path, ["a.key", "dir/b.key", "c.txt", "a.key"]) == {"a.key", "dir/b.key"}
    assert "GIT_DIR" not in seen and seen["GIT_PAGER"] == "cat" and seen["GIT_EDITOR"] == ":"
    assert seen["GIT_TERMINAL_PROMPT"] == "0"


def test_no_paths_asks_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(_gitignore.subprocess, "run", pytest.fail)
    assert ignored_paths(tmp_path, []) == set()
