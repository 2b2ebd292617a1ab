# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_opentofu_causes: the causes recognised in the binary's output, the state address, and the messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_causes import (
    BUILTIN_BACKEND_MARK,
    Run,
    address_fix,
    classify,
    error_lines,
    failure_message,
    missing_binary_message,
    state_address,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import OpenTofuError, TofuOptions

BACKEND_TF = """terraform {
  backend "http" {
    address        = "http://127.0.0.1:1/states/proxmox"
    lock_address   = "http://127.0.0.1:1/states/proxmox/lock"
  }
}
"""

# What terraform 1.x and tofu 1.x print when the provider registry does not answer: the backend did.
REGISTRY_DOWN = {
    "terraform": (
        "Initializing the backend...\n\nError: Failed to query available provider packages\n\n"
        "Could not retrieve the list of available versions for provider\nhashicorp/null: could not connect to "
        "registry.terraform.io: failed to request\ndiscovery document: Get\n"
        '"https://registry.terraform.io/.well-known/terraform.json": dial tcp: lookup\n'
        "registry.terraform.io on 192.0.2.53:53: no such host\n"),
    "tofu": (
        "╷\n│ Error: Failed to query available provider packages\n│ \n│ Could not retrieve the list of available "
        "versions for provider hashicorp/null:\n│ could not connect to registry.opentofu.org: failed to request "
        "discovery document:\n│ Get \"https://registry.opentofu.org/.well-known/terraform.json\": dial tcp:\n│ "
        "lookup registry.opentofu.org: i/o timeout\n╵\n"),
}


@pytest.fixture
def workdir(tmp_path: Path) -> TofuOptions:
    options = TofuOptions(root=tmp_path, environ={})
    options.workdir.mkdir(parents=True)
    (options.workdir / "backend.tf").write_text(BACKEND_TF)
    return options


@pytest.mark.parametrize(("text", "cause"), [
    ("Error: Error refreshing state: HTTP remote state endpoint requires auth", "credentials"),
    ("Error refreshing state: HTTP remote state endpoint invalid auth", "credentials"),
    ("Error: Error acquiring the state lock\nError message: HTTP remote state already locked: ID=x", "locked"),
    ("Failed to get state: GET https://x giving up after 3 attempt(s): dial tcp: lookup x: no such host", "unreachable"),
    ("connect: connection refused", "unreachable"),
    ("There are some problems with the configuration, described below.\nError: Unsupported argument", "config"),
    ("Error: Backend configuration changed", "config"),
    ("something else entirely", "failed"),
])
def test_classify(text, cause):
    assert classify(text) == cause


def test_failure_message_names_cause_and_next_step(workdir):
    locked = ("Error: Error acquiring the state lock\nError message: HTTP remote state already locked: ID=abc-123\n"
              "Lock Info:\n  ID: abc-123\n  Who: bob@laptop\n")
    error = failure_message(workdir, Run("tofu", ["init"], 1, "", locked), "plan")
    assert error.cause == "locked"
    assert "the state is locked (lock ID abc-123)" in str(error)
    assert "force-unlock" in str(error) and "opentofu_command=plan" in str(error)
    auth = "Error refreshing state: HTTP remote state endpoint requires auth"
    rejected = failure_message(workdir, Run("tofu", ["init"], 1, "", auth), "init")
    assert "credentials rejected by http://127.0.0.1:1/states/proxmox" in str(rejected)
    other = failure_message(workdir, Run("tofu", ["plan"], 7, "", "boom"), "plan")
    assert other.cause == "failed" and "failed with exit status 7 (boom)" in str(other)


def test_a_plan_on_stdout_does_not_mislead_the_cause(workdir):
    plan = "resource \"x\" \"locked by design\" {}\n"
    assert failure_message(workdir, Run("tofu", ["plan"], 1, plan, "Error: Unsupported argument"), "plan").cause == "config"


def test_error_lines_picks_errors_or_the_tail():
    run = Run("tofu", ["init"], 1, "ok\n", "2026/01/01 [DEBUG] GET x\n╷\n│ Error: Unsupported argument\n│ \n│   on a.tf line 1:\n")
    assert error_lines(run) == "Error: Unsupported argument on a.tf line 1:"
    assert error_lines(Run("tofu", ["init"], 3, "", "")) == "exit status 3"


def test_state_address(workdir):
    assert state_address(workdir.workdir) == "http://127.0.0.1:1/states/proxmox"
    assert state_address(workdir.root) is None


def test_unreachable_backend_points_to_where_the_address_is_set(workdir):
    assert "repository's own infrastructure/tofu/backend.tf" in address_fix(workdir)
    refused = failure_message(workdir, Run("tofu", ["init"], 1, "", "dial tcp: connection refused"), "init")
    assert "backend unreachable: http://127.0.0.1:1/states/proxmox did not answer" in str(refused)
    assert "Deploy the state backend" in str(refused)
    (workdir.workdir / "backend.tf").write_text(BUILTIN_BACKEND_MARK + " (default: ...)\n")
    assert address_fix(workdir) == "fix tfstate_url / cloudflare_domain in the cluster vars"


@pytest.mark.parametrize("binary", sorted(REGISTRY_DOWN))
def test_registry_failure_is_not_a_backend_failure(workdir, binary):
    text = REGISTRY_DOWN[binary]
    assert classify(text) == "registry"
    error = failure_message(workdir, Run(binary, ["init"], 1, "", text), "init")
    message = str(error)
    assert error.cause == "registry"
    registry = "registry.terraform.io" if binary == "terraform" else "registry.opentofu.org"
    assert f"provider registry unreachable: {registry} did not answer" in message
    assert "backend unreachable" not in message and "127.0.0.1:1" not in message
    assert "opentofu_command=init" in message


def test_missing_binary_says_how_to_install(workdir):
    error = missing_binary_message(workdir, OpenTofuError("neither tofu nor terraform was found on PATH", "binary"))
    assert error.cause == "binary" and "binary missing: neither tofu" in str(error)
    assert "opentofu_binary" in str(error) and "opentofu_command=init" in str(error)
