"""Choosing on the training data only: :class:`CrossValidatedChoice` (Table 12's method,
by cross-validation) and :class:`HeldOutValidation` (a Keras classifier's epochs and, with
two classes, its decision threshold, from a patient-grouped part of train).
"""

from __future__ import annotations

import inspect
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.metaestimators import available_if

from .metrics import evaluation_record

__all__ = ["CrossValidatedChoice", "HeldOutValidation", "accepts_groups", "centre_of_best"]


def accepts_groups(model) -> bool:
    """Whether ``model.fit`` takes ``groups`` (patients, for a group-keeping split)."""
    return "groups" in inspect.signature(model.fit).parameters


class CrossValidatedChoice(ClassifierMixin, BaseEstimator):
    """Pick, by cross-validation on the training data only, one of several candidates.

    Each candidate is ``(name, estimator, grid)``: with a parameter grid, a
    ``GridSearchCV`` chooses its parameters first (``name`` may then hold ``{param}``
    fields, filled with the chosen values); the best candidate by mean CV score is refit
    on all the training data. Table 12 of the report is this choice, made per dataset.

    Parameters
    ----------
    candidates : list of (str, estimator, dict or None)
    cv : int or cross-validation generator
    name_format : callable, optional
        ``name_format(name, best_params) -> str`` for the chosen method's name.

    Attributes
    ----------
    method_ : str
    cv_score_ : float
    cv_scores_ : dict of str to float
        Every candidate's CV score.
    best_estimator_ : estimator
    classes_ : ndarray
    """

    def __init__(self, candidates, cv=3, name_format=None):
        self.candidates = candidates
        self.cv = cv
        self.name_format = name_format

    def fit(self, X, y, groups=None):
        from sklearn.model_selection import GridSearchCV, cross_val_score

        scored = []
        for name, estimator, grid in self.candidates:
            if grid:
                search = GridSearchCV(estimator, grid, cv=self.cv, refit=False)
                search.fit(X, y, groups=groups)
                params, score = search.best_params_, float(search.best_score_)
                if self.name_format is not None:
                    name = self.name_format(name, params)
            else:
                params = {}
                score = float(np.mean(cross_val_score(estimator, X, y, groups=groups,
                                                      cv=self.cv)))
            scored.append((score, name, estimator, params))
        self.cv_scores_ = {name: score for score, name, _, _ in scored}
        score, name, estimator, params = max(scored, key=lambda item: item[0])
        best = clone(estimator).set_params(**params)
        fit_params = {"groups": groups} if accepts_groups(best) else {}
        self.best_estimator_ = best.fit(X, y, **fit_params)
        self.method_, self.cv_score_ = name, score
        self.classes_ = self.best_estimator_.classes_
        return self

    def predict(self, X):
        return self.best_estimator_.predict(X)

    @available_if(lambda self: hasattr(self.best_estimator_, "decision_function"))
    def decision_function(self, X):
        return self.best_estimator_.decision_function(X)

    @available_if(lambda self: hasattr(self.best_estimator_, "predict_proba"))
    def predict_proba(self, X):
        return self.best_estimator_.predict_proba(X)


def centre_of_best(thresholds, scores) -> float:
    """The middle one of the thresholds whose score is the best (the lower middle one of
    an even number).

    A network that nearly separates its held-out images scores the same at every threshold
    between the two classes' probabilities; scikit-learn's ``TunedThresholdClassifierCV``
    then takes the lowest of them, right against one class (the chest X-rays' frozen base
    got 0.02: a NORMAL image a little less clear-cut than those held out crosses it). The
    centre leaves the most room on both sides. Thresholds are in ascending order.

    Examples
    --------
    >>> centre_of_best([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.8, 0.9, 0.9, 0.9, 0.9, 0.7])
    0.3
    """
    thresholds, scores = np.asarray(thresholds, float), np.asarray(scores, float)
    best = np.flatnonzero(np.isclose(scores, scores.max(), rtol=0, atol=1e-12))
    return float(thresholds[best[(len(best) - 1) // 2]])


class HeldOutValidation(ClassifierMixin, BaseEstimator):
    """Train a Keras classifier on part of the training data; the held-out rest decides.

    A share of the training images (patients kept whole when ``groups`` are given; up to 10
    draws until both parts hold every class) is set aside as the classifier's
    ``validation_data``: it stops training at the epoch of the
    lowest validation loss and, with two classes, picks the decision threshold that
    maximises ``scoring`` there (scikit-learn's ``TunedThresholdClassifierCV``; where
    several thresholds score best, the centre of them, see :func:`centre_of_best`).
    Nothing is chosen on a test set. The validation scores are kept as the measure of the choice.

    Parameters
    ----------
    estimator : KerasImageClassifier
        A classifier whose ``fit`` takes ``validation_data``.
    validation_fraction : float, default=0.2
    scoring : str, default="balanced_accuracy"
        What the threshold maximises on the validation images.
    random_state : int, default=0

    Attributes
    ----------
    estimator_ : KerasImageClassifier
        The classifier trained on the rest of the training data.
    threshold_ : float or None
        Probability of the second class from which it is predicted (None: arg-max).
    validation_scores_ : dict
        ``accuracy``, ``balanced_accuracy`` and ``roc_auc`` on the validation images,
        with the chosen threshold (empty when no validation part could be held out: too
        few images, and a :class:`~cnnfeatures.models.SmallDataWarning` says so).
    classes_ : ndarray

    Examples
    --------
    Twelve images of six patients, two per patient: the validation part takes whole
    patients.

    >>> import numpy as np
    >>> from cnnfeatures import FineTunedCNNClassifier
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    >>> labels, patients = np.tile([0, 1], 6), np.repeat(np.arange(6), 2)
    >>> network = FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32,
    ...                                  max_epochs=1, random_state=0)
    >>> model = HeldOutValidation(network, validation_fraction=0.34, random_state=0)
    >>> model = model.fit(images, labels, groups=patients)
    >>> sorted(model.validation_scores_)
    ['accuracy', 'balanced_accuracy', 'roc_auc']
    >>> model.predict(images[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "scoring": [str],
        "random_state": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, estimator, validation_fraction=0.2, scoring="balanced_accuracy",
                 random_state=0):
        self.estimator = estimator
        self.validation_fraction = validation_fraction
        self.scoring = scoring
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None):
        from sklearn.model_selection import TunedThresholdClassifierCV

        from ..images import check_image_sources

        sources = check_image_sources(X)
        y = np.asarray(y)
        split = self._split(y, groups)
        if split is None:
            from ..models import SmallDataWarning

            warnings.warn(
                f"cannot hold out {self.validation_fraction} of {len(y)} images with every "
                "class on both sides: trained on all of them, arg-max decisions, no "
                "validation scores", SmallDataWarning, stacklevel=2)
            self.estimator_ = clone(self.estimator).fit(sources, y)
            self.classes_ = self.estimator_.classes_
            self.threshold_, self.validation_scores_ = None, {}
            return self
        train, val = split
        X_val, y_val = [sources[i] for i in val], y[val]
        self.estimator_ = clone(self.estimator).fit([sources[i] for i in train], y[train],
                                                    validation_data=(X_val, y_val))
        self.classes_ = self.estimator_.classes_
        self.threshold_ = None
        if len(self.classes_) == 2:
            tuned = TunedThresholdClassifierCV(self.estimator_, scoring=self.scoring,
                                               cv="prefit", refit=False,
                                               store_cv_results=True).fit(X_val, y_val)
            self.threshold_ = centre_of_best(tuned.cv_results_["thresholds"],
                                             tuned.cv_results_["scores"])
        codes = np.searchsorted(self.classes_, y_val)
        scores = self._scores(X_val)
        predicted = np.searchsorted(self.classes_, self._classes_from(scores))
        record = evaluation_record(codes, predicted, scores, n_resamples=0)
        self.validation_scores_ = {k: record[k] for k in ("accuracy", "balanced_accuracy",
                                                          "roc_auc") if k in record}
        return self

    def _split(self, y, groups, attempts: int = 10):
        """Train and validation indices with every class on both sides (patients whole
        when ``groups`` are given), or None when ``attempts`` draws find none."""
        from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

        classes = set(np.unique(y).tolist())
        for attempt in range(attempts):
            seed = self.random_state + attempt
            if groups is not None:
                splitter = GroupShuffleSplit(1, test_size=self.validation_fraction,
                                             random_state=seed)
            else:
                splitter = StratifiedShuffleSplit(1, test_size=self.validation_fraction,
                                                  random_state=seed)
            try:
                train, val = next(splitter.split(np.zeros(len(y)), y, groups))
            except ValueError:  # too few images of a class to stratify
                return None
            if set(y[train].tolist()) == set(y[val].tolist()) == classes:
                return train, val
        return None

    def _scores(self, X):
        proba = self.estimator_.predict_proba(X)
        return proba if self.threshold_ is None else proba[:, 1] - self.threshold_

    def _classes_from(self, scores):
        if scores.ndim == 1:  # the sign rule of every binary decision_function
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    def predict(self, X):
        return self._classes_from(self._scores(X))

    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    @available_if(lambda self: len(getattr(self, "classes_", ())) == 2)
    def decision_function(self, X):
        """Probability of the second class minus the threshold (positive: predicted)."""
        return self._scores(X)
