# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The configure engine in process: plan, check mode, apply, reruns, and what stops a run before any write.

Real sops and age keys: the engine's contract is about what lands on disk encrypted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._age import generate_key_file
from ansible_collections.cluster.secrets.plugins.plugin_utils._cluster_vars import ClusterVarsError
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import (
    ConfigureError,
    ConfigureOptions,
    apply,
    plan,
    secrets_summary_lines,
)
from tests.conftest import MAKEJINJA_DELIMITERS

DEMO = Path(__file__).resolve().parents[4] / "examples" / "demo"
SECRET = "kubernetes/apps/default/echo/app/secret.sops.yaml"
INFRA = "infrastructure/secrets.sops.yaml"


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(DEMO, root)
    generate_key_file(root / "age.key")
    return root


def options(root: Path, **extra) -> ConfigureOptions:
    home = root.parent / "home"
    return ConfigureOptions(root=root, environ={"HOME": str(home)}, cache_dir=home / "cache", **extra)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_check_mode_writes_nothing_then_apply_then_rerun_writes_nothing(repo):
    before = snapshot(repo)
    planned = plan(options(repo))
    assert snapshot(repo) == before
    summary = planned.summary()
    assert SECRET in summary["secrets_created"] and INFRA in summary["secrets_created"] and ".sops.yaml" in summary["created"]
    assert next(iter(secrets_summary_lines(planned, True))).startswith(f"{len(summary['created'])} file(s) would be created")
    apply(planned)
    written = snapshot(repo)
    assert b"demo-token" not in written[SECRET] and b"ENC[AES256_GCM" in written[SECRET]
    again = plan(options(repo))
    assert not again.changed and again.summary()["secrets_unchanged"] == 2
    apply(again)
    assert snapshot(repo) == written
    # Without the cache the answer is the same (decrypt and compare).
    assert not plan(options(repo, cache=False)).changed


def test_one_changed_value_rewrites_one_secret_and_says_which_key(repo):
    apply(plan(options(repo)))
    vars_file = repo / "cluster.yaml"
    vars_file.write_text(vars_file.read_text().replace('cloudflare_token: "demo-token', 'cloudflare_token: "new-token'))
    planned = plan(options(repo))
    assert planned.summary()["secrets_updated"] == [SECRET]
    changed = [f for f in planned.files if f.state == "changed"]
    assert [f.changed_keys for f in changed if f.secret] == [["stringData.CLOUDFLARE_TOKEN"]]
    diff = repr(planned.diff())
    assert "new-token" not in diff and "demo-token" not in diff and "CLOUDFLARE_TOKEN" in diff


def test_bad_vars_stop_before_any_write(repo):
    vars_file = repo / "cluster.yaml"
    vars_file.write_text(vars_file.read_text().replace('node_cidr: "192.168.42.0/24"', 'node_cidr: "not a network"'))
    before = snapshot(repo)
    with pytest.raises(ClusterVarsError) as caught:
        plan(options(repo))
    assert "cluster.yaml:3" in str(caught.value) and "node_cidr" in str(caught.value)
    assert snapshot(repo) == before


def test_the_guard_stops_a_blanked_secret(repo):
    apply(plan(options(repo)))
    vars_file = repo / "cluster.yaml"
    lines = [line for line in vars_file.read_text().splitlines() if not line.startswith("tfstate_password:")]
    vars_file.write_text("\n".join(lines) + "\n")
    before = snapshot(repo)
    with pytest.raises(ConfigureError, match="tfstate_password"):
        plan(options(repo))
    assert snapshot(repo) == before
    assert plan(options(repo, allow_secret_overwrite=True)).summary()["secrets_updated"] == [INFRA]


def test_a_secret_in_a_plain_file_is_refused_unless_git_ignores_it(repo):
    template = repo / "templates" / "kubernetes" / "leak.yaml.j2"
    template.write_text("token: #{ cloudflare_token | tojson }#\n")
    with pytest.raises(ConfigureError, match=r"leak.yaml:1: \(top level\): contains the value of cloudflare_token"):
        plan(options(repo))
    (repo / ".gitignore").write_text("kubernetes/leak.yaml\n")
    planned = plan(options(repo))
    assert planned.summary()["plaintext_gitignored"] == ["kubernetes/leak.yaml"]
    apply(planned)
    assert (repo / "kubernetes" / "leak.yaml").stat().st_mode & 0o777 == 0o600
    assert "demo-token" not in repr(planned.diff())


def test_damaged_secret_and_stale_temporaries(repo):
    apply(plan(options(repo)))
    stale = repo / "kubernetes" / f".{Path(SECRET).name}.cluster-secrets-abcd1234.tmp"
    stale.parent.mkdir(parents=True, exist_ok=True)
    (repo / Path(SECRET).parent / stale.name).write_text("left by a kill")
    planned = plan(options(repo))
    assert any("temporary file(s) left by an interrupted run" in w for w in planned.warnings)
    apply(planned)
    assert not (repo / Path(SECRET).parent / stale.name).exists()
    (repo / SECRET).write_bytes((repo / SECRET).read_bytes()[:200])
    with pytest.raises(ConfigureError, match="damaged encrypted file"):
        plan(options(repo, cache=False))


def test_an_unchanged_rerun_is_remembered_without_rendering(repo, monkeypatch):
    first = plan(options(repo))
    apply(first)
    again = plan(options(repo))
    assert again.remembered and not again.changed and again.summary() == {**first.summary(), "created": [], "updated": [],
                                                                          "secrets_created": [], "unchanged": len(first.files),
                                                                          "secrets_unchanged": 2}
    # Nothing is rendered or decrypted for it: a renderer that fails proves it.
    from ansible_collections.cluster.secrets.plugins.plugin_utils import _repository

    monkeypatch.setattr(_repository, "render_tree", lambda *a, **k: pytest.fail("rendered"))
    assert plan(options(repo)).remembered
    monkeypatch.undo()
    # Without the cache, or with another age key, nothing is remembered.
    assert not plan(options(repo, cache=False)).remembered
    generate_key_file(repo.parent / "other.key")
    assert not plan(options(repo, age_key_file=str(repo.parent / "other.key"))).remembered


@pytest.mark.parametrize("change", ["template", "new file", "output edited", "output removed", "vars", "stale temp"])
def test_any_change_means_a_full_run(repo, change):
    apply(plan(options(repo)))
    if change == "template":
        path = repo / "templates/kubernetes/flux/cluster-settings.yaml.j2"
        path.write_text(path.read_text() + "# more\n")
    elif change == "new file":
        (repo / "kubernetes" / "notes.txt").write_text("read by nobody, perhaps by a plugin\n")
    elif change == "output edited":
        (repo / "kubernetes/flux/cluster-settings.yaml").write_text("edited by hand\n")
    elif change == "output removed":
        (repo / SECRET).unlink()
    elif change == "vars":
        vars_file = repo / "cluster.yaml"
        vars_file.write_text(vars_file.read_text().replace("hello from cluster.yaml", "hello again"))
    else:
        (repo / "kubernetes" / ".cluster-settings.yaml.cluster-secrets-abcd1234.tmp").write_text("x")
    planned = plan(options(repo))
    assert not planned.remembered
    if change in ("template", "output edited", "output removed", "vars"):
        assert planned.changed
    apply(planned)
    assert plan(options(repo)).remembered


def test_environment_entries_templates_read_are_part_of_the_memo(repo, monkeypatch):
    (repo / "makejinja.toml").write_text('[makejinja]\ninputs = ["./templates"]\noutput = "./"\njinja_suffix = ".j2"\nforce = true\n'
                                         'data = ["./cluster.yaml", "./nodes.yaml"]\n' + MAKEJINJA_DELIMITERS)
    (repo / "templates/region.txt.j2").write_text("region: #{ env.get('CS_TEST_REGION', 'none') }#\n")
    monkeypatch.setenv("CS_TEST_REGION", "eu")
    apply(plan(options(repo)))
    assert (repo / "region.txt").read_text() == "region: eu\n"
    monkeypatch.setenv("UNRELATED_VARIABLE", "changes nothing")
    assert plan(options(repo)).remembered
    monkeypatch.setenv("CS_TEST_REGION", "us")
    planned = plan(options(repo))
    assert not planned.remembered and planned.summary()["updated"] == ["region.txt"]


def test_what_the_memo_cannot_see_means_a_full_run(repo, tmp_path):
    import subprocess

    # git's own rules (.git/info/exclude) allow a plaintext output: once they no longer do, configure stops again.
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "templates/kubernetes/leak.yaml.j2").write_text("token: #{ cloudflare_token | tojson }#\n")
    (repo / ".git/info/exclude").write_text("kubernetes/leak.yaml\n")
    apply(plan(options(repo)))
    assert plan(options(repo)).remembered
    (repo / ".git/info/exclude").write_text("")
    with pytest.raises(ConfigureError, match=r"leak\.yaml"):
        plan(options(repo))
    (repo / ".git/info/exclude").write_text("kubernetes/leak.yaml\n")
    # A template that is a link to a file outside: a change of the target is a change.
    outside = tmp_path / "shared.yaml.j2"
    outside.write_text("shared: 1\n")
    (repo / "templates/kubernetes/shared.yaml.j2").symlink_to(outside)
    apply(plan(options(repo)))
    assert plan(options(repo)).remembered
    outside.write_text("shared: 22\n")
    planned = plan(options(repo))
    assert not planned.remembered and planned.summary()["updated"] == ["kubernetes/shared.yaml"]
    apply(planned)
    # A linked folder: what is behind it is not followed, so nothing is remembered while it is there.
    (tmp_path / "more").mkdir()
    (repo / "templates/more").symlink_to(tmp_path / "more")
    apply(plan(options(repo)))
    assert not plan(options(repo)).remembered
