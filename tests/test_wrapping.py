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
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    TunedThresholdClassifierCV,
    cross_validate,
)
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


WRAPPERS = {
    "views": lambda model: TestTimeAugmentationClassifier(model, views=["identity", "hflip"]),
    "seeds": lambda model: SeedEnsembleClassifier(model, n_members=2, random_state=0),
    "label shift": lambda model: LabelShiftAdapter(model),
}


def fitted_heads(wrapper):
    """The fitted estimators inside a fitted wrapper."""
    return wrapper.estimators_ if hasattr(wrapper, "estimators_") else [wrapper.estimator_]


def recording_head(**request):
    head = WeightRecordingLogisticRegression(random_state=0)
    return head.set_fit_request(**request) if request else head


# The wrapped estimator is a bare classifier, not a pipeline, so that the wrapper's own
# routing is what is tested: a pass-through would hand it `case_weight` (a TypeError), or
# the weights it declined.

@pytest.mark.parametrize("kind", WRAPPERS)
def test_routed_weights_reach_the_requesting_estimator_under_its_alias(kind):
    images, labels = images_and_labels()
    weights = np.linspace(1, 2, len(labels))
    with sklearn.config_context(enable_metadata_routing=True):
        model = WRAPPERS[kind](recording_head(sample_weight="case_weight"))
        model.fit(mean_colour(images), labels, case_weight=weights)
    for head in fitted_heads(model):
        np.testing.assert_array_equal(head.weights_seen_, weights)


@pytest.mark.parametrize("kind", WRAPPERS)
def test_routed_weights_the_estimator_declined_are_not_passed(kind):
    images, labels = images_and_labels()
    with sklearn.config_context(enable_metadata_routing=True):
        model = WRAPPERS[kind](recording_head(sample_weight=False))
        with pytest.raises(TypeError, match="sample_weight.*not routed to any object"):
            model.fit(mean_colour(images), labels, sample_weight=np.full(12, 3.0))


@pytest.mark.parametrize("kind", WRAPPERS)
def test_routed_weights_that_nobody_requested_are_named(kind):
    images, labels = images_and_labels()
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(ValueError, match="sample_weight"):
            WRAPPERS[kind](recording_head()).fit(mean_colour(images), labels,
                                                 sample_weight=np.ones(12))


@pytest.mark.parametrize("kind", WRAPPERS)
def test_a_parent_routes_fit_and_score_weights_through_the_wrapper(kind):
    # cross_validate asks the wrapper's router where the weights go: to the estimator's
    # fit, and to the wrapper's own score, which requested them.
    images, labels = images_and_labels(16)
    weights = np.linspace(1, 2, len(labels))
    with sklearn.config_context(enable_metadata_routing=True):
        model = WRAPPERS[kind](make_pipeline(FunctionTransformer(mean_colour),
                                             recording_head(sample_weight=True)))
        model.set_score_request(sample_weight=True)
        result = cross_validate(model, images, labels, cv=2, error_score="raise",
                                params={"sample_weight": weights}, return_estimator=True)
    assert np.all(np.isfinite(result["test_score"]))
    for fitted in result["estimator"]:
        for pipeline in fitted_heads(fitted):
            seen = pipeline[-1].weights_seen_
            assert len(seen) == 8 and set(seen) <= set(weights)  # the training half's


@pytest.mark.parametrize("kind", WRAPPERS)
def test_a_search_routes_score_weights_to_the_wrapper_alone(kind):
    # The estimator inside declines the weights; only the wrapper's score asked for them,
    # which the search finds in the wrapper's router (its own request).
    images, labels = images_and_labels(16)
    with sklearn.config_context(enable_metadata_routing=True):
        model = WRAPPERS[kind](make_pipeline(FunctionTransformer(mean_colour),
                                             recording_head(sample_weight=False)))
        search = GridSearchCV(model.set_score_request(sample_weight=True), {}, cv=2,
                              error_score="raise")
        search.fit(images, labels, sample_weight=np.linspace(1, 2, 16))
    assert all(p[-1].weights_seen_ is None for p in fitted_heads(search.best_estimator_))


@pytest.mark.parametrize("kind", WRAPPERS)
def test_image_pipelines_inside_take_their_weights(kind):
    images, labels = images_and_labels()
    weights = np.linspace(1, 2, len(labels))
    with sklearn.config_context(enable_metadata_routing=True):
        model = WRAPPERS[kind](make_pipeline(FunctionTransformer(mean_colour),
                                             recording_head(sample_weight=True)))
        model.fit(images, labels, sample_weight=weights)
    for pipeline in fitted_heads(model):
        np.testing.assert_array_equal(pipeline[-1].weights_seen_, weights)


@pytest.mark.parametrize("kind", WRAPPERS)
def test_without_routing_parameters_go_to_the_estimator_as_given(kind):
    images, labels = images_and_labels()
    model = WRAPPERS[kind](recording_head()).fit(mean_colour(images), labels,
                                                 sample_weight=np.full(12, 3.0))
    for head in fitted_heads(model):
        np.testing.assert_array_equal(head.weights_seen_, np.full(12, 3.0))


class WeightRecordingLinearSVC(LinearSVC):
    def fit(self, X, y, sample_weight=None):
        self.weights_seen_ = None if sample_weight is None else np.asarray(sample_weight)
        return super().fit(X, y, sample_weight=sample_weight)


class WeightRecordingCalibratedClassifierCV(CalibratedClassifierCV):
    def fit(self, X, y, sample_weight=None, **fit_params):
        self.weights_seen_ = None if sample_weight is None else np.asarray(sample_weight)
        return super().fit(X, y, sample_weight=sample_weight, **fit_params)


def test_weights_reach_a_calibrated_head_through_tuner_views_and_seeds():
    # The composition of docs/shift.md: a tuned threshold around test-time views around
    # a seed ensemble of image pipelines; the weights must reach both the calibrator
    # (which fits its sigmoid with them) and the SVM inside it.
    images, labels = images_and_labels(16)
    weights = np.where(labels == 1, 0.5, 1.5)
    with sklearn.config_context(enable_metadata_routing=True):
        svm = WeightRecordingLinearSVC(random_state=0).set_fit_request(sample_weight=True)
        head = WeightRecordingCalibratedClassifierCV(svm, cv=2)
        inner = make_pipeline(FunctionTransformer(mean_colour),
                              head.set_fit_request(sample_weight=True))
        balanced = make_scorer(balanced_accuracy_score)  # balanced already: unweighted
        model = TunedThresholdClassifierCV(
            TestTimeAugmentationClassifier(SeedEnsembleClassifier(inner, n_members=2,
                                                                  random_state=0)),
            cv=2, scoring=balanced.set_score_request(sample_weight=False)).fit(
                images, labels, sample_weight=weights)
    for member in model.estimator_.estimator_.estimators_:
        calibrated = member[-1]
        np.testing.assert_array_equal(calibrated.weights_seen_, weights)
        for fold in calibrated.calibrated_classifiers_:  # each SVM: its training fold's
            seen = fold.estimator.weights_seen_
            assert len(seen) == 8 and set(seen) == {0.5, 1.5}


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


def test_label_shift_groups_reach_its_folds_from_a_grouped_search():
    # The search routes groups to its own splitter and to the adapter's (no request needed:
    # a group splitter asks for them), as scikit-learn's RFECV takes them.
    images, labels = images_and_labels(16)
    groups = np.repeat(np.arange(8), 2)
    with sklearn.config_context(enable_metadata_routing=True):
        adapter = LabelShiftAdapter(LogisticRegression(), method="bbse", cv=GroupKFold(4))
        search = GridSearchCV(adapter, {"em_tol": [1e-8]}, cv=GroupKFold(2))
        search.fit(mean_colour(images), labels, groups=groups)
    assert search.best_estimator_.confusion_.shape == (2, 2)


def test_label_shift_bbse_folds_take_aliased_weights():
    images, labels = images_and_labels(16)
    weights = np.linspace(1, 2, 16)
    with sklearn.config_context(enable_metadata_routing=True):
        adapter = LabelShiftAdapter(recording_head(sample_weight="case_weight"),
                                    method="bbse", cv=GroupKFold(4))
        adapter.fit(mean_colour(images), labels, groups=np.repeat(np.arange(8), 2),
                    case_weight=weights)
    np.testing.assert_array_equal(adapter.estimator_.weights_seen_, weights)


def test_label_shift_groups_without_a_group_splitter_are_named_under_routing():
    images, labels = images_and_labels(16)
    with sklearn.config_context(enable_metadata_routing=True):
        adapter = LabelShiftAdapter(LogisticRegression(), method="bbse", cv=2)
        with pytest.raises(TypeError, match="groups"):
            adapter.fit(mean_colour(images), labels, groups=np.repeat(np.arange(8), 2))
