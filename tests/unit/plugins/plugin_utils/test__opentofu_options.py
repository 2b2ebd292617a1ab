# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_opentofu_options: the options' checks and the places they point at."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._argspec import OPENTOFU_SPEC
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import (
    COMMANDS,
    SECRETS_FILE,
    TOFU_DIR,
    OpenTofuError,
    TofuOptions,
)


def test_unknown_command_is_a_usage_error():
    with pytest.raises(OpenTofuError, match="unknown OpenTofu command 'import'; use one of: init, plan") as caught:
        TofuOptions(root=Path("/"), command="import")
    assert caught.value.cause == "usage"


def test_paths_follow_the_options(tmp_path):
    options = TofuOptions(root=tmp_path / "." / "repo", environ={})
    assert options.root == (tmp_path / "repo").resolve()
    assert options.workdir == options.root / TOFU_DIR
    assert options.data_dir == options.workdir / ".terraform"
    options.environ = {"TF_DATA_DIR": "state-data"}
    assert options.data_dir == options.workdir / "state-data"


def test_defaults_match_the_argument_spec():
    assert OPENTOFU_SPEC["command"]["choices"] == list(COMMANDS)
    assert OPENTOFU_SPEC["tofu_dir"]["default"] == TOFU_DIR
    assert OPENTOFU_SPEC["secrets_file"]["default"] == SECRETS_FILE
