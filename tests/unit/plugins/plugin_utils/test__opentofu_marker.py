# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_opentofu_marker: why init must run, the marker that holds no secret, and the warning remembered once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_marker import (
    MARKER_NAME,
    clear_data_dir,
    config_fingerprint,
    data_dir_is_fresh,
    init_reasons,
    remember_warning,
    remembered_warning,
    warning_key,
    write_marker,
)
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_options import TofuOptions
from ansible_collections.cluster.secrets.plugins.plugin_utils._opentofu_secrets import InfraSecrets

PASSWORD = "pw:with 'quotes' #and-more"


def secrets(password: str = PASSWORD) -> InfraSecrets:
    return InfraSecrets(values={"tfstate_username": "terraform", "tfstate_password": password}, mac_key=b"k" * 32)


@pytest.fixture
def workdir(tmp_path: Path) -> TofuOptions:
    options = TofuOptions(root=tmp_path, environ={})
    options.workdir.mkdir(parents=True)
    (options.workdir / "backend.tf").write_text('terraform {\n  backend "http" {}\n}\n')
    return options


def test_marker_round_trip_and_reasons(workdir):
    binary = "/usr/bin/tofu"
    data = secrets()
    assert init_reasons(workdir, binary, data) == ["not initialised yet"]
    workdir.data_dir.mkdir()
    (workdir.data_dir / "terraform.tfstate").write_text('{"backend": {"type": "http"}}')
    assert init_reasons(workdir, binary, data) == ["not initialised by cluster.secrets yet"]
    write_marker(workdir, binary, data)
    marker = (workdir.data_dir / MARKER_NAME).read_text()
    assert PASSWORD not in marker and "terraform\0" not in marker
    assert oct(os.stat(workdir.data_dir / MARKER_NAME).st_mode & 0o777) == "0o600"
    assert init_reasons(workdir, binary, data) == []
    assert init_reasons(workdir, "/usr/bin/terraform", data) == ["the binary changed (tofu -> terraform)"]
    assert init_reasons(workdir, binary, secrets("new")) == ["the backend credentials changed"]
    assert init_reasons(workdir, binary, InfraSecrets(values=data.values)) == ["the backend credentials changed"]  # no key
    (workdir.workdir / "main.tf").write_text("# new\n")
    assert init_reasons(workdir, binary, data) == ["the configuration changed"]
    write_marker(workdir, binary, data)
    (workdir.data_dir / "terraform.tfstate").write_text('{"backend": {"type": "http", "x": 1}}')
    assert init_reasons(workdir, binary, data) == ["the backend settings were changed outside cluster.secrets"]


def test_config_fingerprint_sees_tf_files_only(workdir):
    before = config_fingerprint(workdir.workdir)
    (workdir.workdir / "notes.md").write_text("x")
    assert config_fingerprint(workdir.workdir) == before
    (workdir.workdir / "extra.tf.json").write_text("{}")
    assert config_fingerprint(workdir.workdir) != before


def test_a_warning_is_remembered_by_its_cause_text_and_inputs(workdir):
    key = warning_key("credentials", "rejected by http://127.0.0.1:8080 after 3 tries", ["config", "mac", "tofu"])
    assert key == warning_key("credentials", "rejected by http://127.0.0.1:9090 after 5 tries", ["config", "mac", "tofu"])
    assert key != warning_key("credentials", "rejected by http://127.0.0.1:8080 after 3 tries", ["config", "other", "tofu"])
    assert key != warning_key("unreachable", "rejected by http://127.0.0.1:8080 after 3 tries", ["config", "mac", "tofu"])
    assert remembered_warning(workdir) is None
    remember_warning(workdir, key)
    assert remembered_warning(workdir) == key
    assert oct(os.stat(workdir.data_dir / MARKER_NAME).st_mode & 0o777) == "0o600"
    # A successful init forgets it.
    (workdir.data_dir / "terraform.tfstate").write_text("{}")
    write_marker(workdir, "tofu", secrets())
    assert remembered_warning(workdir) is None
    assert "warned" not in json.loads((workdir.data_dir / MARKER_NAME).read_text())


def test_a_failed_first_init_is_cleared_but_the_marker_kept(workdir):
    assert data_dir_is_fresh(workdir)
    remember_warning(workdir, "k")
    assert data_dir_is_fresh(workdir)
    (workdir.data_dir / "providers").mkdir()
    (workdir.data_dir / "terraform.tfstate").write_text("{}")
    assert not data_dir_is_fresh(workdir)
    clear_data_dir(workdir)
    assert sorted(p.name for p in workdir.data_dir.iterdir()) == [MARKER_NAME]
    (workdir.data_dir / MARKER_NAME).unlink()
    (workdir.data_dir / "terraform.tfstate").write_text("{}")
    clear_data_dir(workdir)
    assert not workdir.data_dir.exists()
