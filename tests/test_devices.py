"""The ``device`` parameter: checked names, the network built and run where it says."""

import numpy as np
import pytest

from cnnfeatures import CNNFeatureExtractor, FineTunedCNNClassifier
from cnnfeatures.backend import available_devices
from cnnfeatures.devices import check_device


def missing_gpu() -> str:
    """A GPU name the backend does not see (any machine has one)."""
    return next(f"gpu:{i}" for i in range(99) if f"gpu:{i}" not in available_devices())


def test_names_are_checked_against_what_the_backend_sees():
    assert check_device("auto") == "auto"
    assert check_device("cpu") == check_device("cpu:0") == "cpu:0"
    with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu', 'gpu' or 'gpu:N', "
                                         r"got 'cuda'"):
        check_device("cuda")
    missing = missing_gpu()
    with pytest.raises(ValueError, match=rf"device='{missing}': the Keras backend \(\w+\) "
                                         rf"sees no {missing}; it sees \[.*'cpu:0'"):
        check_device(missing)


def test_extractor_on_the_cpu_gives_the_features_of_auto(tiny_vgg_backbone, rng):
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    params = dict(backbone="tiny_vgg", weights=None, random_state=0, cache=False)
    auto = CNNFeatureExtractor(**params).fit_transform(images)
    ext = CNNFeatureExtractor(**params, device="cpu").fit(images)
    assert ext.settings_.device == "cpu:0"
    assert ext.feature_network().device == "cpu:0"
    np.testing.assert_allclose(ext.transform(images), auto, rtol=1e-5, atol=1e-6)


def test_a_device_the_backend_does_not_see_is_an_error_at_fit(tiny_vgg_backbone, rng):
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    missing = missing_gpu()
    ext = CNNFeatureExtractor(backbone="tiny_vgg", weights=None, device=missing)
    with pytest.raises(ValueError, match=f"device='{missing}'"):
        ext.fit(images)
    clf = FineTunedCNNClassifier(backbone="tiny_vgg", weights=None, input_side=32,
                                 max_epochs=1, device=missing)
    with pytest.raises(ValueError, match=f"device='{missing}'"):
        clf.fit(images, [0, 1, 0, 1])


def test_classifier_reads_its_device_again_when_it_predicts(tiny_vgg_backbone, rng):
    images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    clf = FineTunedCNNClassifier(backbone="tiny_vgg", weights=None, input_side=32,
                                 max_epochs=1, validation_fraction=0.5, device="cpu",
                                 random_state=0).fit(images, [0, 1] * 4)
    proba = clf.predict_proba(images)
    np.testing.assert_allclose(clf.set_params(device="auto").predict_proba(images), proba,
                               rtol=1e-5, atol=1e-6)
    missing = missing_gpu()
    with pytest.raises(ValueError, match=f"device='{missing}'"):
        clf.set_params(device=missing).predict(images)
