"""Fixtures shared by the tests of the tools that run the tiny CLAP on the real frame."""

import pytest
from tool_helpers import frame_overrides, tiny_clap_cfg


@pytest.fixture(scope="module")
def tiny_clap_overrides(tmp_path_factory):
    """Command-line overrides that point a config at the real frame, cached per test module."""
    return frame_overrides(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tiny_clap(tiny_clap_overrides):
    """The tiny CLAP config on the real frame."""
    return tiny_clap_cfg(tiny_clap_overrides)
