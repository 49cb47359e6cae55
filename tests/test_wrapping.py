"""Metadata routing through the meta-estimators (cnnfeatures.wrapping): with routing on, a
``sample_weight`` reaches the step that requested it through any nesting of our wrappers,
scikit-learn's tuners and pipelines, and one that nobody requested is named; with routing
off, parameters pass as given (the older convention)."""

import numpy as np
import pytest
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, make_scorer
from sklearn.model_selection import GroupKFold, TunedThresholdClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import LinearSVC

from cnnfeatures import LabelShiftAdapter, SeedEnsembleClassifier, TestTimeAugmentationClassifier


def mean_colour(X):
    return np.array([np.asarray(x, dtype=float).mean(axis=(0, 1)) for x in X])


class WeightRecordingLogisticRegression(LogisticRegression):
    """LogisticRegression that keeps every sample_weight its fits were given."""

    def fit(self, X, y, sample_weight=None):
        self.weights_seen_ = None if sample_weight is None else np.asarray(sample_weight)
        return super().fit(X, y, sample_weight=sample_weight)


def images_and_labels(n=12):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 6, 6, 3)).astype(np.uint8)
    labels = np.arange(n) % 2
    images[labels == 1] //= 2  # darker: class 1
    return images, labels


def image_model(**request):
    head = WeightRecordingLogisticRegression(random_state=0)
    if request:
        head.set_fit_request(**request)
    return make_pipeline(FunctionTransformer(mean_colour), head)


WRAPPERS = {
    "views": lambda model: TestTimeAugmentationClassifier(model, views=["identity", "hflip"]),
    "seeds": lambda model: SeedEnsembleClassifier(model, n_members=2, random_state=0),
    "label shift": lambda model: LabelShiftAdapter(model),
}


def fitted_heads(wrapper):
    """The recording heads inside a fitted wrapper."""
    fitted = wrapper.estimators_ if hasattr(wrapper, "estimators_") else [wrapper.estimator_]
    return [pipeline[-1] for pipeline in fitted]


@pytest.mark.parametrize("kind", WRAPPERS)
def test_routed_sample_weight_reaches_the_requesting_step(kind):
    images, labels = images_and_labels()
    weights = np.linspace(1, 2, len(labels))
    with sklearn.config_context(enable_metadata_routing=True):
        model = WRAPPERS[kind](image_model(sample_weight=True)).fit(
            images, labels, sample_weight=weights)
    for head in fitted_heads(model):
        np.testing.assert_array_equal(head.weights_seen_, weights)


@pytest.mark.parametrize("kind", WRAPPERS)
def test_routed_sample_weight_that_nobody_requested_is_named(kind):
    images, labels = images_and_labels()
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(ValueError, match="sample_weight"):
            WRAPPERS[kind](image_model()).fit(images, labels, sample_weight=np.ones(12))


@pytest.mark.parametrize("kind", WRAPPERS)
def test_without_routing_parameters_go_to_the_estimator_as_given(kind):
    images, labels = images_and_labels()
    features = mean_colour(images)
    head = WeightRecordingLogisticRegression(random_state=0)
    model = WRAPPERS[kind](head).fit(features, labels, sample_weight=np.full(12, 3.0))
    for fitted in (model.estimators_ if hasattr(model, "estimators_") else [model.estimator_]):
        np.testing.assert_array_equal(fitted.weights_seen_, np.full(12, 3.0))


def test_weights_reach_a_calibrated_head_through_tuner_views_and_seeds():
    # The composition of docs/shift.md: a tuned threshold around test-time views around
    # a seed ensemble of image pipelines; the weights must reach both the SVM and the
    # calibrator (CalibratedClassifierCV passes them on to each when it is given them).
    images, labels = images_and_labels(16)
    weights = np.where(labels == 1, 0.5, 1.5)
    with sklearn.config_context(enable_metadata_routing=True):
        svm = LinearSVC(random_state=0).set_fit_request(sample_weight=True)
        head = CalibratedClassifierCV(svm, cv=2)
        inner = make_pipeline(FunctionTransformer(mean_colour),
                              head.set_fit_request(sample_weight=True))
        balanced = make_scorer(balanced_accuracy_score)  # balanced already: unweighted
        model = TunedThresholdClassifierCV(
            TestTimeAugmentationClassifier(SeedEnsembleClassifier(inner, n_members=2,
                                                                  random_state=0)),
            cv=2, scoring=balanced.set_score_request(sample_weight=False)).fit(
                images, labels, sample_weight=weights)
        unweighted = TunedThresholdClassifierCV(
            TestTimeAugmentationClassifier(SeedEnsembleClassifier(
                make_pipeline(FunctionTransformer(mean_colour),
                              CalibratedClassifierCV(LinearSVC(random_state=0), cv=2)),
                n_members=2, random_state=0)),
            cv=2, scoring="balanced_accuracy").fit(images, labels)
    weighted_members = model.estimator_.estimator_.estimators_
    plain_members = unweighted.estimator_.estimator_.estimators_
    for weighted, plain in zip(weighted_members, plain_members):
        # the calibrator's sigmoid saw the weights: its parameters differ from the plain fit
        assert not np.allclose(weighted[-1].calibrated_classifiers_[0].calibrators[0].a_,
                               plain[-1].calibrated_classifiers_[0].calibrators[0].a_)


def test_label_shift_groups_reach_bbse_folds_under_routing():
    images, labels = images_and_labels(16)
    groups = np.repeat(np.arange(8), 2)  # two images per patient
    features = mean_colour(images)
    with sklearn.config_context(enable_metadata_routing=True):
        adapter = LabelShiftAdapter(LogisticRegression(), method="bbse", cv=GroupKFold(4))
        adapter.fit(features, labels, groups=groups)
    without = LabelShiftAdapter(LogisticRegression(), method="bbse", cv=GroupKFold(4))
    np.testing.assert_allclose(adapter.confusion_,
                               without.fit(features, labels, groups=groups).confusion_)
