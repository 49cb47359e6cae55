"""The project's image-estimator checks on every public estimator, with small networks;
scikit-learn's full suite where it applies (VLADEncoder, in test_vlad.py)."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline

from cnnfeatures import (
    CLAHETransformer,
    CNNFeatureExtractor,
    FineTunedCNNClassifier,
    HybridSepConvClassifier,
    ImageAugmenter,
    RegionCropper,
    SeedEnsembleClassifier,
    TestTimeAugmentationClassifier,
    VLADEncoder,
)
from cnnfeatures.estimator_checks import (
    check_fit_subset,
    check_image_estimator,
    image_estimator_checks,
)
from cnnfeatures.images import image_input_tags

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
LABELS = np.array([0, 1] * 4)
DESCRIPTORS = [RNG.normal(size=(20, 6)).astype(np.float32) for _ in range(8)]
FIXED = dict(backbone="vgg16", layer="block2_pool", pooling="mean", weights=None)
KERAS = dict(backbone="vgg16", weights=None, input_side=32, head_units=(8, 4),
             max_epochs=2, validation_fraction=0.5, random_state=0)

ESTIMATORS = [  # (estimator, X, whether fit learns from the images)
    (CNNFeatureExtractor(backbone="vgg16", layer="block2_pool", pooling="mean",
                         weights=None), IMAGES, False),  # a fixed network
    (VLADEncoder(k=2, pca_components=4, random_state=0), DESCRIPTORS, None),
    (CLAHETransformer(), IMAGES, None),
    (RegionCropper(region="center"), IMAGES, None),
    (ImageAugmenter(n_copies=1, random_state=0), IMAGES, None),
    (FineTunedCNNClassifier(**KERAS), IMAGES, None),
    (HybridSepConvClassifier(filters=8, **KERAS), IMAGES, None),
    (TestTimeAugmentationClassifier(make_pipeline(CNNFeatureExtractor(**FIXED),
                                                  LogisticRegression()),
                                    views=["identity", "hflip", "crop_center"]), IMAGES, None),
    (SeedEnsembleClassifier(make_pipeline(CNNFeatureExtractor(**FIXED),
                                          SGDClassifier(loss="log_loss")),
                            n_members=2, random_state=0), IMAGES, None),
]
CASES = [pytest.param(est, X, check, id=f"{type(est).__name__}-{name}")
         for est, X, learns in ESTIMATORS
         for name, check in image_estimator_checks(est, X, LABELS, learns_from_data=learns)]


@pytest.mark.parametrize("estimator, X, check", CASES)
def test_image_estimator_check(estimator, X, check):
    check()


def test_every_estimator_runs_every_check():
    names = {name for name, _ in image_estimator_checks(ESTIMATORS[0][0], IMAGES)}
    assert len(names) == 11
    assert len(CASES) == 11 * len(ESTIMATORS)


class MeanColour(TransformerMixin, BaseEstimator):
    """Someone else's image step: each image's mean colour, learning nothing."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.stack([np.asarray(x, dtype=float).reshape(-1, 3).mean(axis=0) for x in X])

    def get_feature_names_out(self, input_features=None):
        return np.asarray(["red", "green", "blue"], dtype=object)

    def __sklearn_tags__(self):
        tags = image_input_tags(super().__sklearn_tags__())
        tags.requires_fit = False
        return tags


def test_checks_take_any_image_estimator():
    assert check_image_estimator(MeanColour(), IMAGES, LABELS) == [
        name for name, _ in image_estimator_checks(MeanColour(), IMAGES)]


def test_a_fit_that_learns_when_it_should_not_is_caught():
    class Drifting(MeanColour):
        def fit(self, X, y=None):
            self.offset_ = float(len(X))  # learns from how many images it saw
            return self

        def transform(self, X):
            return super().transform(X) + self.offset_

    with pytest.raises(AssertionError):
        check_fit_subset(Drifting(), IMAGES, LABELS, learns_from_data=False)
