"""Fixtures of the Keras classifiers' tests."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def task():
    """Bright images are class 'b', dark ones class 'a' (string labels on purpose)."""
    rng = np.random.default_rng(0)
    y = np.array(["a", "b"] * 12)
    X = rng.integers(0, 90, (24, 32, 32, 3)).astype(np.uint8)
    X[y == "b"] += 150
    return X, y
