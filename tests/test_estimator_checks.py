"""The project's image-estimator checks on every public estimator, with small networks;
scikit-learn's full suite where it applies (VLADEncoder, in test_vlad.py)."""

import numpy as np
import pytest

from cnnfeatures import (
    CLAHETransformer,
    CNNFeatureExtractor,
    FineTunedCNNClassifier,
    HybridSepConvClassifier,
    ImageAugmenter,
    VLADEncoder,
)
from cnnfeatures.estimator_checks import image_estimator_checks

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
LABELS = np.array([0, 1] * 4)
DESCRIPTORS = [RNG.normal(size=(20, 6)).astype(np.float32) for _ in range(8)]
KERAS = dict(backbone="vgg16", weights=None, input_side=32, head_units=(8, 4),
             max_epochs=2, validation_fraction=0.5, random_state=0)

ESTIMATORS = [
    (CNNFeatureExtractor(backbone="vgg16", layer="block2_pool", pooling="mean",
                         weights=None), IMAGES),
    (VLADEncoder(k=2, pca_components=4, random_state=0), DESCRIPTORS),
    (CLAHETransformer(), IMAGES),
    (ImageAugmenter(n_copies=1, random_state=0), IMAGES),
    (FineTunedCNNClassifier(**KERAS), IMAGES),
    (HybridSepConvClassifier(filters=8, **KERAS), IMAGES),
]
CASES = [pytest.param(est, X, check, id=f"{type(est).__name__}-{name}")
         for est, X in ESTIMATORS for name, check in image_estimator_checks(est, X, LABELS)]


@pytest.mark.parametrize("estimator, X, check", CASES)
def test_image_estimator_check(estimator, X, check):
    check()


def test_every_estimator_runs_every_check():
    names = {name for name, _ in image_estimator_checks(ESTIMATORS[0][0], IMAGES)}
    assert len(names) == 11
    assert len(CASES) == 11 * len(ESTIMATORS)
