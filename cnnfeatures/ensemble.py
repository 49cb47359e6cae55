"""Posteriors averaged over views of each image, or over fits that differ by their seed.

Two meta-estimators that lower the variance of a classifier without changing what it
learns from:

- :class:`TestTimeAugmentationClassifier` averages a fitted classifier's posteriors over
  views of every image it predicts — flips, quarter turns, corner and centre crops — so a
  decision no longer hangs on one framing of the picture.
- :class:`SeedEnsembleClassifier` fits one estimator several times, each with its own
  ``random_state`` (a network's initial weights, batch order, dropout, augmentation), and
  averages the members' posteriors. Runs of one training setting can differ by several
  points of accuracy from their seed alone; their average does not depend on any one.

An ensemble of *different* models — two backbones, say — is scikit-learn's
:class:`~sklearn.ensemble.VotingClassifier` with ``voting="soft"``: it hands ``X`` to its
members as it is, so pipelines that take image paths compose in it unchanged.

Both take what their estimator takes (image sources, or a feature matrix for the seed
ensemble) and compose with ``Pipeline``, ``clone``, pickling and ``GridSearchCV``
(parameters of the inner estimator read ``estimator__<name>``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from .images import check_image_sources, map_native_images
from .wrapping import fit_params_for_estimator, wrapped_estimator_router, wrapped_input_tags

__all__ = ["VIEWS", "SeedEnsembleClassifier", "TestTimeAugmentationClassifier", "view_image"]

#: Images decoded at once by a view: bounds memory for long lists of large X-rays, while
#: the estimator still sees batches big enough to keep a network busy.
CHUNK = 256

_CROP_CORNERS = {"crop_center": (0.5, 0.5), "crop_top_left": (0.0, 0.0),
                 "crop_top_right": (0.0, 1.0), "crop_bottom_left": (1.0, 0.0),
                 "crop_bottom_right": (1.0, 1.0)}

#: The named views; ``crop_*`` keep ``crop_fraction`` of each side at that place.
VIEWS = ("identity", "hflip", "vflip", "rot90", "rot180", "rot270", *_CROP_CORNERS)


def view_image(image: np.ndarray, view: str, crop_fraction: float = 0.875) -> np.ndarray:
    """One named view of an image array ``(H, W)`` or ``(H, W, C)``.

    Parameters
    ----------
    image : ndarray
    view : str
        One of :data:`VIEWS`: ``"hflip"`` mirrors left-right, ``"vflip"`` top-bottom,
        ``"rotK"`` turns by K degrees counter-clockwise, ``"crop_<place>"`` keeps
        ``crop_fraction`` of the height and of the width at the centre or a corner.
    crop_fraction : float, default=0.875
        The share of each side a crop keeps.

    Returns
    -------
    view : ndarray
        A contiguous array of the image's dtype (rotations by 90 and 270 degrees swap the
        height and the width).

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(16).reshape(4, 4)
    >>> view_image(image, "hflip")[0].tolist()
    [3, 2, 1, 0]
    >>> view_image(image, "crop_bottom_right", crop_fraction=0.5).tolist()
    [[10, 11], [14, 15]]
    """
    if view in _CROP_CORNERS:
        height, width = image.shape[:2]
        keep_h, keep_w = (max(1, round(side * crop_fraction)) for side in (height, width))
        row, col = _CROP_CORNERS[view]
        top, left = round((height - keep_h) * row), round((width - keep_w) * col)
        out = image[top:top + keep_h, left:left + keep_w]
    elif view == "identity":
        out = image
    elif view == "hflip":
        out = image[:, ::-1]
    elif view == "vflip":
        out = image[::-1]
    elif view in ("rot90", "rot180", "rot270"):
        out = np.rot90(image, int(view[3:]) // 90)
    else:
        raise ValueError(f"unknown view {view!r}; expected one of {list(VIEWS)} or a callable")
    return np.ascontiguousarray(out)


def _resolve_views(views, crop_fraction: float) -> list[tuple[str, Callable | None]]:
    """(name, function) for every view; ``None`` for the identity, whose sources pass
    through undecoded (a path stays a path, and keeps its place in a path-keyed cache)."""
    if isinstance(views, str) or not isinstance(views, Sequence) or len(views) == 0:
        raise ValueError(f"views must be a non-empty list of view names {list(VIEWS)} or "
                         f"callables, got {views!r}")
    resolved = []
    for view in views:
        if callable(view):
            resolved.append((getattr(view, "__name__", repr(view)), view))
        elif view == "identity":
            resolved.append((view, None))
        elif view in VIEWS:
            resolved.append((view, partial(view_image, view=view, crop_fraction=crop_fraction)))
        else:
            raise ValueError(f"views: unknown view {view!r}; expected one of {list(VIEWS)} "
                             f"or a callable taking and returning an image array")
    return resolved


def _view(sources: list, function: Callable | None, start: int) -> list:
    """One view of each source; the identity passes the sources through undecoded."""
    if function is None:
        return sources
    return map_native_images(sources, lambda image, _name: function(image), start)


def _mean_proba(probas) -> np.ndarray:
    """The mean of posteriors arriving one array at a time (only a running sum is kept)."""
    total, count = None, 0
    for proba in probas:
        total = np.asarray(proba, dtype=np.float64) if total is None else total + proba
        count += 1
    return total / count


class TestTimeAugmentationClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A classifier whose posteriors are averaged over views of each image it predicts.

    ``fit`` fits a clone of ``estimator`` on the images as they are (augmenting the
    training images is :class:`~cnnfeatures.ImageAugmenter`'s work); ``predict_proba``
    asks it for the posteriors of every view of every image and returns their mean, one
    row per image. The estimator sees decoded image arrays for every view but
    ``"identity"``, which passes the sources through unchanged.

    Parameters
    ----------
    estimator : classifier with ``predict_proba``, taking image sources
        E.g. a pipeline ``CNNFeatureExtractor -> CalibratedClassifierCV(LinearSVC())``, or
        a :class:`~cnnfeatures.FineTunedCNNClassifier`.
    views : list of str or callable, default=("identity", "hflip")
        Names from :data:`VIEWS`, or functions from an image array to an image array.
        Choose views the class does not depend on: a left-right flip suits scenes and
        cells; for chest X-rays it moves the heart to the other side (an image the model
        never saw in training), so measure before keeping it.
    crop_fraction : float, default=0.875
        The share of each side the ``crop_*`` views keep.

    Attributes
    ----------
    estimator_ : classifier
        The fitted clone of ``estimator``.
    classes_ : ndarray
    views_ : list of (str, callable or None)
        Each view's name and function (``None``: the identity).

    See Also
    --------
    SeedEnsembleClassifier : posteriors averaged over fits with different seeds.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> mean_colour = FunctionTransformer(
    ...     lambda X: np.stack([np.asarray(x, float).mean(axis=(0, 1)) for x in X]))
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
    >>> model = TestTimeAugmentationClassifier(
    ...     make_pipeline(mean_colour, LogisticRegression()), views=["identity", "vflip"])
    >>> model.fit(images, [0, 1, 0, 1, 0, 1]).predict_proba(images).shape
    (6, 2)
    """

    __test__ = False  # its name starts with "Test": pytest must not collect it

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "views": [list, tuple],
        "crop_fraction": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(self, estimator, views: Sequence[str | Callable] = ("identity", "hflip"),
                 crop_fraction: float = 0.875):
        self.estimator = estimator
        self.views = views
        self.crop_fraction = crop_fraction

    def __sklearn_tags__(self):
        return wrapped_input_tags(super().__sklearn_tags__(), self.estimator)

    def get_metadata_routing(self):
        """Metadata routing: ``fit``'s parameters go to ``estimator.fit``
        (:func:`~cnnfeatures.wrapping.fit_params_for_estimator`)."""
        return wrapped_estimator_router(self)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, **fit_params):
        """Check the views, then fit a clone of ``estimator`` on ``X`` as it is.

        Returns
        -------
        self : TestTimeAugmentationClassifier
        """
        self.views_ = _resolve_views(self.views, self.crop_fraction)
        self.estimator_ = clone(self.estimator).fit(
            X, y, **fit_params_for_estimator(self, fit_params))
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        """The estimator's posteriors, averaged over the views of each image.

        Parameters
        ----------
        X : sequence of image sources

        Returns
        -------
        proba : ndarray of shape (n_images, n_classes)
        """
        check_is_fitted(self, "estimator_")
        sources = check_image_sources(X)
        chunks = []
        for start in range(0, len(sources), CHUNK):
            chunk = [sources[i] for i in range(start, min(start + CHUNK, len(sources)))]
            chunks.append(_mean_proba(
                self.estimator_.predict_proba(_view(chunk, function, start))
                for _, function in self.views_))
        return np.concatenate(chunks)

    def predict(self, X) -> np.ndarray:
        """The class of highest mean posterior for each image."""
        proba = self.predict_proba(X)  # first: unfitted, it raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]


def _random_state_keys(estimator) -> list[str]:
    """The parameters named ``random_state`` in an estimator and its nested estimators."""
    return [key for key in estimator.get_params(deep=True)
            if key == "random_state" or key.endswith("__random_state")]


def _fit_member(member, X, y, fit_params):
    return member.fit(X, y, **fit_params)


class SeedEnsembleClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fits of one estimator that differ only by their seed, their posteriors averaged.

    Member ``i`` is a clone of ``estimator`` whose every ``random_state`` parameter — its
    own and those of the steps and estimators nested in it — is set to ``seeds_[i]``, drawn
    from ``random_state``. Each member fits on all of ``X``; predictions average the
    members' posteriors (soft voting), so the ensemble's result no longer depends on one
    seed's luck, and the spread of the members (``estimators_``) measures that luck.

    Parameters
    ----------
    estimator : classifier with ``predict_proba`` and a ``random_state`` parameter
        E.g. :class:`~cnnfeatures.FineTunedCNNClassifier` or a pipeline ending in one.
    n_members : int, default=5
        How many fits.
    random_state : int, RandomState instance or None, default=None
        Draws the members' seeds.
    n_jobs : int or None, default=None
        Members fitted at once (joblib). Each fit of a Keras network already uses every
        core: keep ``None`` for them, raise it for light estimators.

    Attributes
    ----------
    estimators_ : list of classifiers
        The fitted members.
    seeds_ : ndarray of int
        Each member's seed.
    classes_ : ndarray

    See Also
    --------
    TestTimeAugmentationClassifier : posteriors averaged over views of each image.
    sklearn.ensemble.VotingClassifier : an ensemble of different models (``voting="soft"``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import SGDClassifier
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(40, 3)), np.repeat([0, 1], 20)
    >>> ensemble = SeedEnsembleClassifier(SGDClassifier(loss="log_loss"), n_members=3,
    ...                                   random_state=0).fit(X, y)
    >>> len(ensemble.estimators_), len(set(ensemble.seeds_.tolist()))
    (3, 3)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "n_members": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(self, estimator, n_members: int = 5, random_state=None,
                 n_jobs: int | None = None):
        self.estimator = estimator
        self.n_members = n_members
        self.random_state = random_state
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        return wrapped_input_tags(super().__sklearn_tags__(), self.estimator)

    def get_metadata_routing(self):
        """Metadata routing: ``fit``'s parameters go to ``estimator.fit``
        (:func:`~cnnfeatures.wrapping.fit_params_for_estimator`)."""
        return wrapped_estimator_router(self)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, **fit_params):
        """Fit ``n_members`` clones of ``estimator``, each with its own seed.

        Returns
        -------
        self : SeedEnsembleClassifier
        """
        keys = _random_state_keys(self.estimator)
        if not keys:
            raise ValueError(
                f"estimator: {type(self.estimator).__name__} has no random_state parameter, "
                f"so every member would be the same fit; pass an estimator whose fit is "
                f"random and seeded by random_state")
        self.seeds_ = check_random_state(self.random_state).randint(
            np.iinfo(np.int32).max, size=self.n_members)
        members = (clone(self.estimator).set_params(**dict.fromkeys(keys, int(seed)))
                   for seed in self.seeds_)
        params = fit_params_for_estimator(self, fit_params)
        self.estimators_ = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_member)(member, X, y, params) for member in members)
        self.classes_ = self.estimators_[0].classes_
        if hasattr(self.estimators_[0], "n_features_in_"):  # tabular data; images have none
            self.n_features_in_ = self.estimators_[0].n_features_in_
        return self

    def predict_proba(self, X) -> np.ndarray:
        """The members' posteriors, averaged.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self, "estimators_")
        return _mean_proba(member.predict_proba(X) for member in self.estimators_)

    def predict(self, X) -> np.ndarray:
        """The class of highest mean posterior for each sample."""
        proba = self.predict_proba(X)  # first: unfitted, it raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]
