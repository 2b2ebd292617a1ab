# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one preamble every action runs (plugins/plugin_utils/_action.py), in process with a fake action."""

from __future__ import annotations

from typing import Any, ClassVar
from unittest.mock import MagicMock

import pytest
from ansible.errors import AnsibleError

from ansible_collections.cluster.secrets.plugins.plugin_utils._action import ClusterSecretsAction
from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import CLUSTER_VARS_OPTIONS, REPOSITORY_OPTIONS, combine
from ansible_collections.cluster.secrets.plugins.plugin_utils._repository import ConfigureError

SECRET = "tok-3f9a1c77e2b84d1e"  # a cloudflare_token: a secret field of the cluster vars schema


class FakeAction(ClusterSecretsAction):
    ARGUMENT_SPEC: ClassVar = combine(REPOSITORY_OPTIONS, CLUSTER_VARS_OPTIONS, {"raise": {"type": "str"}})

    def act(self, args: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        self.seen = {"args": args, "check_mode": self.check_mode, "diff_mode": self.diff_mode}
        if args["raise"] == "user":
            raise ConfigureError(f"cluster.yaml:1: cloudflare_token {SECRET} is not valid")
        if args["raise"] == "bug":
            raise KeyError(f"no such thing as {SECRET}")
        if args["raise"] == "ansible":
            raise AnsibleError("Ansible's own")
        result.update(changed=False, msg="done")
        return result


class SecretResultAction(FakeAction):
    RESULT_IS_SECRET = True


def make(cls: type[FakeAction], args: dict[str, Any], check_mode: bool = False, diff: bool = False) -> FakeAction:
    task = MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = check_mode
    task.diff = diff
    task.action = "cluster.secrets.fake"
    action = cls(task=task, connection=MagicMock(), play_context=MagicMock(), loader=None, templar=None,
                 shared_loader_obj=None)
    action._load_name = "cluster.secrets.fake"  # set by Ansible's plugin loader
    return action


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "cluster.yaml").write_text(f'cloudflare_token: "{SECRET}"\ncloudflare_domain: example.com\n')
    return tmp_path


def test_a_run_gets_validated_args_and_its_result(repo):
    action = make(FakeAction, {"cluster_root": str(repo)})
    result = action.run(task_vars={})
    assert result["msg"] == "done" and not result.get("failed")
    assert action.seen["args"] == {"cluster_root": str(repo), "cluster_file": None, "nodes_file": None, "raise": None}


@pytest.mark.parametrize(("check_mode", "diff"), [(False, False), (True, False), (True, True), (False, True)])
def test_check_mode_and_diff_mode_are_seen(repo, check_mode, diff):
    action = make(FakeAction, {"cluster_root": str(repo)}, check_mode=check_mode, diff=diff)
    action.run(task_vars={})
    assert (action.seen["check_mode"], action.seen["diff_mode"]) == (check_mode, diff)


def test_a_user_error_fails_the_task_with_the_secret_masked(repo):
    result = make(FakeAction, {"cluster_root": str(repo), "raise": "user"}).run(task_vars={})
    assert result["failed"] is True
    assert result["msg"].startswith("cluster.yaml:1: cloudflare_token ") and SECRET not in result["msg"]


def test_an_explicit_cluster_file_is_what_is_scrubbed(repo, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere") / "vars.yaml"
    other.write_text(f'cloudflare_token: "{SECRET}"\n')
    (repo / "cluster.yaml").write_text("cloudflare_domain: example.com\n")
    result = make(FakeAction, {"cluster_root": str(repo), "cluster_file": str(other), "raise": "user"}).run(task_vars={})
    assert result["failed"] is True and SECRET not in result["msg"]


def test_an_unexpected_argument_fails_the_task(repo):
    action = make(FakeAction, {"cluster_root": str(repo), "age_key_file": "/k"})
    result = action.run(task_vars={})
    assert result["failed"] is True and "Unsupported parameters" in result["msg"] and "age_key_file" in result["msg"]
    assert not hasattr(action, "seen")


def test_a_missing_required_argument_fails_the_task():
    result = make(FakeAction, {}).run(task_vars={})
    assert result["failed"] is True and "cluster_root" in result["msg"]


def test_a_bug_fails_the_task_named_as_one_without_secret_or_traceback(repo):
    result = make(FakeAction, {"cluster_root": str(repo), "raise": "bug"}).run(task_vars={})
    assert result["failed"] is True
    assert "KeyError" in result["msg"] and "bug in cluster.secrets" in result["msg"]
    assert SECRET not in result["msg"] and "Traceback" not in result["msg"]


def test_ansible_errors_are_left_to_ansible(repo):
    with pytest.raises(AnsibleError, match="Ansible's own"):
        make(FakeAction, {"cluster_root": str(repo), "raise": "ansible"}).run(task_vars={})


def test_a_secret_result_is_censored_but_its_failure_stays_readable(repo):
    assert make(SecretResultAction, {"cluster_root": str(repo)}).run(task_vars={})["_ansible_no_log"] is True
    failed = make(SecretResultAction, {"cluster_root": str(repo), "raise": "user"}).run(task_vars={})
    assert failed["failed"] is True and failed["_ansible_no_log"] is False and SECRET not in failed["msg"]
