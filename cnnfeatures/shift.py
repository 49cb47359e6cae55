"""LabelShiftAdapter: a classifier's posteriors corrected for new class priors, estimated
from the unlabeled images it predicts (label shift; transductive).

Under label shift the classes keep their looks, ``p(x | y)``, but not their shares,
``p(y)``: a chest X-ray test split with 62.6% PNEUMONIA scored by a model trained on
74.2%. The posteriors then scale by ``w_y = q(y) / p(y)`` (renormalised), and the target
priors ``q`` can be estimated without labels:

- ``method="em"``: Saerens, Latinne & Decaestecker (2002), expectation–maximisation on
  the classifier's posteriors of the target images. Needs calibrated probabilities (wrap
  the classifier in :class:`~sklearn.calibration.CalibratedClassifierCV`).
- ``method="bbse"``: black-box shift estimation (Lipton, Wang & Smola, 2018), which solves
  ``C w = q̂`` with ``C`` the joint confusion matrix of cross-validated predictions on the
  training data and ``q̂`` the predicted class shares on the target; it needs no
  calibration, only an invertible ``C``.

The correction helps when only the priors moved. Where the looks moved too (covariate
shift: other scanners, other patients), both estimates absorb that change into the priors
and can make predictions worse — measure before trusting it. Because it looks at the
images it predicts, every prediction depends on the whole batch: report its results apart
from inductive ones.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, _fit_context, clone
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metadata_routing import UNUSED, MethodMapping, process_routing
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .wrapping import routing_enabled, wrapped_estimator_router, wrapped_input_tags

__all__ = ["LabelShiftAdapter", "em_priors"]


def em_priors(proba: np.ndarray, train_priors: np.ndarray, max_iter: int = 1000,
              tol: float = 1e-8) -> tuple[np.ndarray, int]:
    """Target class priors by EM on posteriors (Saerens et al. 2002).

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
        Calibrated posteriors of the target samples under the training priors.
    train_priors : ndarray of shape (n_classes,)
    max_iter : int
    tol : float
        Stop when no prior moves by more than this.

    Returns
    -------
    priors : ndarray of shape (n_classes,)
    n_iter : int

    Examples
    --------
    >>> import numpy as np
    >>> proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8]])
    >>> priors, _ = em_priors(proba, np.array([0.5, 0.5]))
    >>> bool(priors[0] > 0.65)
    True
    """
    priors = train_priors.astype(np.float64)
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        weighted = proba * (priors / train_priors)
        weighted /= weighted.sum(axis=1, keepdims=True)
        new = weighted.mean(axis=0)
        done = np.abs(new - priors).max() <= tol
        priors = new
        if done:
            break
    return priors, n_iter


class LabelShiftAdapter(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Correct a classifier for class priors that changed, estimated on the images it
    predicts (transductive; see :mod:`cnnfeatures.shift`).

    Parameters
    ----------
    estimator : classifier with ``predict_proba``
        Fitted on the training data by ``fit`` (a clone). For ``method="em"`` its
        probabilities should be calibrated.
    method : {"em", "bbse"}, default="em"
        How the target priors are estimated.
    cv : int or cross-validation generator, default=5
        ``method="bbse"``: the folds of the cross-validated predictions behind the
        confusion matrix (with a group splitter such as ``GroupKFold``, the ``groups``
        passed to ``fit`` keep patients whole).
    em_max_iter : int, default=1000
        ``method="em"``: iterations at most.
    em_tol : float, default=1e-8
        ``method="em"``: stop when no prior moves by more than this.

    Attributes
    ----------
    estimator_ : classifier
        The fitted clone of ``estimator``.
    classes_ : ndarray
    train_priors_ : ndarray of shape (n_classes,)
        Each class's share of the training labels.
    confusion_ : ndarray of shape (n_classes, n_classes) or None
        ``method="bbse"``: ``confusion_[i, j]`` is the share of training samples predicted
        ``i`` (cross-validated) whose label is ``j``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-1, 1, (200, 1)), rng.normal(1, 1, (200, 1))]
    >>> y = np.r_[np.zeros(200), np.ones(200)]
    >>> target = np.r_[rng.normal(-1, 1, (80, 1)), rng.normal(1, 1, (320, 1))]
    >>> adapter = LabelShiftAdapter(LogisticRegression()).fit(X, y)
    >>> priors = adapter.estimate_priors(target)
    >>> bool(0.7 < priors[1] < 0.9)  # the target's 80% of class 1
    True
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "method": [StrOptions({"em", "bbse"})],
        "cv": ["cv_object"],
        "em_max_iter": [Interval(Integral, 1, None, closed="left")],
        "em_tol": [Interval(Real, 0, None, closed="left")],
    }

    # ``groups`` is for the splitter of ``cv``, which requests it; not a parameter this
    # estimator consumes (as in scikit-learn's RFECV).
    __metadata_request__fit = {"groups": UNUSED}

    def __init__(self, estimator, method: str = "em", cv=5, em_max_iter: int = 1000,
                 em_tol: float = 1e-8):
        self.estimator = estimator
        self.method = method
        self.cv = cv
        self.em_max_iter = em_max_iter
        self.em_tol = em_tol

    def __sklearn_tags__(self):
        return wrapped_input_tags(super().__sklearn_tags__(), self.estimator)

    def get_metadata_routing(self):
        """Metadata routing: ``fit``'s parameters go to ``estimator.fit``, ``groups`` to
        the splitter of ``cv`` (a group splitter requests it)."""
        return wrapped_estimator_router(self).add(
            splitter=check_cv(self.cv),
            method_mapping=MethodMapping().add(caller="fit", callee="split"))

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None, **fit_params):
        """Fit a clone of ``estimator``; record the training priors (and, for ``"bbse"``,
        the cross-validated confusion matrix).

        Returns
        -------
        self : LabelShiftAdapter
        """
        y = column_or_1d(y, warn=True)
        estimator_params, split_params = self._route_fit(groups, fit_params)
        self.estimator_ = clone(self.estimator).fit(X, y, **estimator_params)
        self.classes_ = self.estimator_.classes_
        if hasattr(self.estimator_, "n_features_in_"):  # tabular data; images have none
            self.n_features_in_ = self.estimator_.n_features_in_
        self.train_priors_ = np.array([(y == c).mean() for c in self.classes_])
        self.confusion_ = None
        if self.method == "bbse":
            # Predictions as predict_proba's arg-max, as the target's are read (one pass).
            folds = list(check_cv(self.cv, y, classifier=True).split(X, y, **split_params))
            # fit_params as given: cross_val_predict routes them itself, aliases included.
            proba = cross_val_predict(clone(self.estimator), X, y, cv=folds,
                                      params=fit_params, method="predict_proba")
            predicted = self.classes_[np.argmax(proba, axis=1)]
            self.confusion_ = np.array([[np.mean((predicted == ci) & (y == cj))
                                         for cj in self.classes_] for ci in self.classes_])
        return self

    def _route_fit(self, groups, fit_params: dict) -> tuple[dict, dict]:
        """The parameters of the estimator's ``fit`` and of the splitter's ``split``: routed
        when metadata routing is on; otherwise all of ``fit_params``, and ``groups``."""
        if not routing_enabled():
            return fit_params, {"groups": groups}
        own = {} if groups is None else {"groups": groups}
        routed = process_routing(self, "fit", **fit_params, **own)
        return routed.estimator.fit, routed.splitter.split

    def estimate_priors(self, X) -> np.ndarray:
        """The class priors of the samples ``X``, estimated without their labels."""
        check_is_fitted(self, "estimator_")
        return self._priors(self.estimator_.predict_proba(X))

    def _priors(self, proba: np.ndarray) -> np.ndarray:
        """The target priors from the estimator's posteriors of the target samples."""
        if self.method == "em":
            return em_priors(proba, self.train_priors_, self.em_max_iter, self.em_tol)[0]
        predicted = np.argmax(proba, axis=1)
        shares = np.bincount(predicted, minlength=len(self.classes_)) / len(predicted)
        weights = np.linalg.lstsq(self.confusion_, shares, rcond=None)[0]
        priors = np.clip(weights, 0, None) * self.train_priors_
        return priors / priors.sum()

    def predict_proba(self, X) -> np.ndarray:
        """The estimator's posteriors reweighted by ``estimated / training`` priors, the
        priors estimated on ``X`` itself (every row depends on the whole batch)."""
        check_is_fitted(self, "estimator_")
        proba = self.estimator_.predict_proba(X)  # once: the priors come from it too
        weighted = proba * (self._priors(proba) / self.train_priors_)
        total = weighted.sum(axis=1, keepdims=True)
        # A row whose every class got weight 0 keeps the estimator's posterior.
        return np.where(total > 0, weighted / np.where(total > 0, total, 1), proba)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each sample after the correction."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
