# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""doctor's git checks that need no git work tree: .gitignore reading, globs, plaintext Secrets."""

from __future__ import annotations

from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor_git import gitignore_covers, glob_uncovered, plaintext_secrets


def test_gitignore_reading(tmp_path):
    (tmp_path / ".gitignore").write_text("# secrets\n/cluster.yaml\nage.key\n*.tfvars\n!*.tfvars.sops.*\n")
    assert gitignore_covers(tmp_path, "cluster.yaml")
    assert gitignore_covers(tmp_path, "age.key")
    assert gitignore_covers(tmp_path, "infrastructure/terraform.tfvars")
    assert not gitignore_covers(tmp_path, "nodes.yaml")
    (tmp_path / ".gitignore").unlink()
    assert not gitignore_covers(tmp_path, "cluster.yaml")


def test_plaintext_secrets_names_keys_never_values():
    text = ("---\napiVersion: v1\nkind: ConfigMap\ndata:\n  a: b\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n"
            "stringData:\n  PASSWORD: hunter2-value\n  EMPTY: ''\ndata:\n  TOKEN: aGVsbG8=\n")
    assert plaintext_secrets(text) == [("db", ["PASSWORD", "TOKEN"])]
    encrypted = "kind: Secret\nstringData:\n  A: ENC[AES256_GCM,data:AA==,type:str]\nsops:\n  mac: x\n"
    assert plaintext_secrets(encrypted) == []
    assert plaintext_secrets("kind: Secret\nmetadata: {name: x}\n") == []  # no values: nothing leaks
    assert plaintext_secrets("kind: Secret\n  bad: [yaml\n") == []


def test_tfvars_covered_by_a_nested_gitignore_outside_git(tmp_path):
    (tmp_path / ".gitignore").write_text("cluster.yaml\n")
    infra = tmp_path / "infrastructure"
    infra.mkdir()
    (infra / "main.tf").write_text("")
    assert glob_uncovered(tmp_path, "*.tfvars") == ["infrastructure/terraform.tfvars"]  # no file yet: probed where .tf is
    (infra / ".gitignore").write_text("*.tfvars\n")
    assert glob_uncovered(tmp_path, "*.tfvars") == []
    (infra / "prod.tfvars").write_text("x = 1\n")
    (tmp_path / "other.tfvars").write_text("x = 1\n")
    assert glob_uncovered(tmp_path, "*.tfvars") == ["other.tfvars"]


def test_a_glob_with_a_slash_names_paths_and_tool_folders_are_not_searched(tmp_path):
    (tmp_path / ".gitignore").write_text("")
    for relpath in ("infrastructure/prod.tfvars", "other/prod.tfvars", ".terraform/cached.tfvars"):
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text("x = 1\n")
    assert glob_uncovered(tmp_path, "/infrastructure/*.tfvars") == ["infrastructure/prod.tfvars"]
    assert glob_uncovered(tmp_path, "*.tfvars") == ["infrastructure/prod.tfvars", "other/prod.tfvars"]


def test_the_cluster_vars_file_of_the_toml_era_is_the_one_gitignore_must_cover(tmp_path):
    """cluster-template's TOML era has cluster.toml and no cluster.yaml: its .gitignore covers cluster.toml."""
    from ansible_collections.cluster.secrets.plugins.plugin_utils._doctor_git import gitignore_patterns

    asked = {"cluster.yaml": "error", "age.key": "error", "*.tfvars": "warning"}
    assert gitignore_patterns(tmp_path, asked) == asked  # nothing there yet: cluster.yaml, as init writes it
    (tmp_path / "cluster.toml").write_text("[cluster]\n")
    assert gitignore_patterns(tmp_path, asked) == {"cluster.toml": "error", "age.key": "error", "*.tfvars": "warning"}
    (tmp_path / "cluster.yaml").write_text("a: b\n")  # both: the YAML file is the one to keep out
    assert gitignore_patterns(tmp_path, asked) == asked
    assert gitignore_patterns(tmp_path, {"age.key": "warning"}) == {"age.key": "warning"}
