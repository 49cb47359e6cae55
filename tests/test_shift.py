"""LabelShiftAdapter: target priors recovered without labels, posteriors corrected,
scikit-learn's conventions (but the subset invariance a transductive method gives up)."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from cnnfeatures import LabelShiftAdapter
from cnnfeatures.shift import em_priors


def gaussians(rng, counts, means=(-1.0, 1.0, 3.0)):
    X = np.concatenate([rng.normal(m, 1.0, (n, 2)) for m, n in zip(means, counts)])
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    return X, y


@pytest.mark.parametrize("method", ["em", "bbse"])
def test_target_priors_are_recovered_and_accuracy_improves(method):
    # Overlapping classes, 50/50 in training, 10/90 in the target.
    rng = np.random.default_rng(0)
    X, y = gaussians(rng, (500, 500), means=(-0.5, 0.5))
    target, truth = gaussians(rng, (80, 720), means=(-0.5, 0.5))
    adapter = LabelShiftAdapter(LogisticRegression(), method=method).fit(X, y)
    np.testing.assert_allclose(adapter.train_priors_, [0.5, 0.5])
    np.testing.assert_allclose(adapter.estimate_priors(target), [0.1, 0.9], atol=0.05)
    plain = adapter.estimator_.score(target, truth)  # 0.779
    assert adapter.score(target, truth) > plain + 0.1  # 0.908 (em), 0.911 (bbse)


def test_without_a_shift_the_correction_is_small():
    rng = np.random.default_rng(1)
    X, y = gaussians(rng, (400, 400))
    target, _ = gaussians(rng, (400, 400))
    adapter = LabelShiftAdapter(LogisticRegression()).fit(X, y)
    np.testing.assert_allclose(adapter.estimate_priors(target), [0.5, 0.5], atol=0.04)
    changed = adapter.predict(target) != adapter.estimator_.predict(target)
    assert changed.mean() < 0.03


def test_em_by_hand():
    # One iteration from equal priors: the mean posterior; the fixed point for posteriors
    # that are certain is the share of each class.
    proba = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    priors, n_iter = em_priors(proba, np.array([0.5, 0.5]))
    np.testing.assert_allclose(priors, [0.75, 0.25])
    assert n_iter == 2  # the second iteration finds nothing moves


def test_three_classes_and_string_labels():
    rng = np.random.default_rng(2)
    X, y = gaussians(rng, (300, 300, 300))
    names = np.array(["a", "b", "c"])
    target, _ = gaussians(rng, (100, 100, 400))
    adapter = LabelShiftAdapter(LogisticRegression()).fit(X, names[y])
    assert list(adapter.classes_) == ["a", "b", "c"]
    np.testing.assert_allclose(adapter.estimate_priors(target), [1 / 6, 1 / 6, 2 / 3],
                               atol=0.05)
    assert set(adapter.predict(target)) <= {"a", "b", "c"}
    fresh = clone(adapter).get_params()["estimator"]
    assert fresh.get_params() == LogisticRegression().get_params()


@parametrize_with_checks(
    [LabelShiftAdapter(LogisticRegression()),
     LabelShiftAdapter(LogisticRegression(), method="bbse")],
    expected_failed_checks=lambda est: {
        "check_methods_subset_invariance": "transductive: each prediction depends on the "
                                           "batch's estimated priors"})
def test_scikit_learn_conventions(estimator, check):
    check(estimator)
