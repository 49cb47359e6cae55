"""The same numbers on every Keras backend.

Each installed backend (TensorFlow always; JAX and PyTorch where their packages are, as in
the venvs the README's "Other Keras backends" commands make) runs one script in a process
of its own: a small seeded network read from a weights file, its features (mean and max
pooling, two scales), a pipeline's Grad-CAM maps and integrated gradients. Every backend's
numbers must match TensorFlow's.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import save_tiny_conv_weights

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from cnnfeatures import CNNFeatureExtractor
from cnnfeatures.backend import backend_name
from cnnfeatures.explain import grad_cam, integrated_gradients
from tests.conftest import register_tiny_conv

weights, out = sys.argv[1], sys.argv[2]
register_tiny_conv()
rng = np.random.default_rng(0)
X = rng.integers(0, 256, (6, 40, 40, 3)).astype(np.uint8)
X[3:, :, :, 0] = 255  # a red half: the classes differ
y = np.array([0, 0, 0, 1, 1, 1])
found = {"backend": np.array(backend_name())}
for pooling in ("mean", "max"):
    ext = CNNFeatureExtractor(backbone="tiny_conv", weights=weights, layer="pool",
                              pooling=pooling, scales=(0, 1), cache=False)
    found[pooling] = ext.fit_transform(X)
pipe = make_pipeline(CNNFeatureExtractor(backbone="tiny_conv", weights=weights, layer="pool",
                                         scales=(0, 1), cache=False),
                     LogisticRegression()).fit(X, y)
found["cam"] = np.stack(grad_cam(pipe, X[2:4], layer="conv", target=1))
found["ig"] = np.stack(integrated_gradients(pipe, X[3:4], target=1, steps=4))
np.savez(out, **found)
"""


def _installed(backend: str) -> bool:
    return importlib.util.find_spec({"tensorflow": "tensorflow", "jax": "jax",
                                     "torch": "torch"}[backend]) is not None


def _probe(backend: str, weights: Path, out: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNFEATURES_SESSION")}
    env.update(KERAS_BACKEND=backend, CNNFEATURES_CACHE_DIR="none")
    done = subprocess.run([sys.executable, "-c", PROBE, str(weights), str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parity")
    weights = save_tiny_conv_weights(folder / "tiny.weights.h5", seed=3)
    return weights, _probe("tensorflow", weights, folder / "tensorflow.npz")


def test_tensorflow_probe_is_meaningful(reference):
    """The reference itself: real features and a map that picks the red half's class."""
    _, found = reference
    assert str(found["backend"]) == "tensorflow"
    assert found["mean"].shape == (6, 4) and found["max"].shape == (6, 4)  # 4 filters
    assert not np.allclose(found["mean"], found["max"])
    assert found["cam"].shape == (2, 40, 40) and found["cam"].max() == pytest.approx(1)
    assert found["ig"].shape[0] == 1 and found["ig"].max() == pytest.approx(1)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_matches_tensorflow(backend, reference, tmp_path):
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed here (see the README's 'Other Keras "
                    "backends')")
    weights, expected = reference
    found = _probe(backend, weights, tmp_path / f"{backend}.npz")
    assert str(found["backend"]) == backend
    for key in ("mean", "max"):
        np.testing.assert_allclose(found[key], expected[key], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(found["cam"], expected["cam"], atol=1e-3)
    np.testing.assert_allclose(found["ig"], expected["ig"], atol=1e-3)
