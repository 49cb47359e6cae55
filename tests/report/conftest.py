"""Fixtures of the report's tests."""

import pytest

from tests.conftest import write_tint_dataset


@pytest.fixture(scope="session")
def bright_dark(tmp_path_factory):
    """train/ 8 + 8, test/ 4 + 4 PNGs: 'blue' and 'red' images differ in their tint (read
    only: the tests write their outputs elsewhere)."""
    return write_tint_dataset(tmp_path_factory.mktemp("data") / "bright_dark", 8, 4)
