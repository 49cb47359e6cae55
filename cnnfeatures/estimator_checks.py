"""Checks of scikit-learn citizenship for estimators that take images.

scikit-learn's ``check_estimator`` feeds numeric 2-D arrays; estimators whose ``X`` is a
sequence of images (tags ``two_d_array=False``) pass only a check or two of it. This suite
asks the same questions with images, the way imbalanced-learn keeps its own checks for
samplers: cloning, parameters, fitting twice, a subset against the whole, one image against
many, pickling, parallel cross-validation, output containers, feature names, bad parameters
named at ``fit``, and unfitted use.

Use it on your own image estimators::

    for name, check in image_estimator_checks(MyImageStep(), X, y):
        check()

Which of scikit-learn's own checks do not apply to image inputs, and why, is in
docs/reliability.md.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils import get_tags

__all__ = ["check_image_estimator", "image_estimator_checks"]


def _kind(estimator) -> str:
    if hasattr(estimator, "fit_resample"):
        return "sampler"
    if is_classifier(estimator):
        return "classifier"
    return "transformer"


def _output(estimator, X, y):
    """What an estimator gives for X, as a list of arrays (comparable whatever its form)."""
    kind = _kind(estimator)
    if kind == "sampler":
        X_res, y_res = estimator.fit_resample(X, y)
        return [np.asarray(x) for x in X_res] + [np.asarray(y_res)]
    if kind == "classifier":
        return [np.asarray(estimator.predict_proba(X))]
    out = estimator.transform(X)
    if isinstance(out, list) or hasattr(out, "n_descriptors"):
        return [np.asarray(x) for x in out]  # images, or each image's local descriptors
    return [np.asarray(out)]


def _same(a: list, b: list, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    assert len(a) == len(b), f"{len(a)} outputs, then {len(b)}"
    for x, z in zip(a, b):
        np.testing.assert_allclose(np.asarray(x, dtype=float), np.asarray(z, dtype=float),
                                   rtol=rtol, atol=atol)


def _fit(estimator, X, y):
    if _kind(estimator) == "sampler":
        return estimator  # fit_resample is its fit
    return estimator.fit(X, y)


def _subset(X, idx):
    return X[idx] if isinstance(X, np.ndarray) else [X[i] for i in idx]


# --------------------------------------------------------------------------- checks


def check_clone(estimator, X, y) -> None:
    """``clone`` gives an unfitted estimator with equal parameters."""
    fitted = _fit(clone(estimator), X, y)
    twin = clone(fitted)
    assert twin.get_params() == estimator.get_params() or all(
        repr(twin.get_params()[k]) == repr(v) for k, v in estimator.get_params().items())
    fitted_names = [k for k in vars(twin) if k.endswith("_") and not k.startswith("_")]
    assert not fitted_names, f"clone kept fitted attributes {fitted_names}"


def check_get_set_params(estimator, X, y) -> None:
    """``set_params(**get_params())`` is a no-op; an unknown name is an error naming it."""
    est = clone(estimator)
    params = est.get_params(deep=False)
    est.set_params(**params)
    assert repr(est.get_params(deep=False)) == repr(params)
    try:
        est.set_params(no_such_parameter=1)
    except ValueError as exc:
        assert "no_such_parameter" in str(exc), str(exc)
    else:
        raise AssertionError("set_params accepted an unknown parameter")


def check_fit_idempotent(estimator, X, y) -> None:
    """Fitting twice on the same data gives the same outputs."""
    est = clone(estimator)
    first = _output(_fit(est, X, y), X, y)
    second = _output(_fit(est, X, y), X, y)
    _same(first, second)


def check_fit_subset(estimator, X, y, learns_from_data: bool | None = None) -> None:
    """Fitted on a subset, it works on the whole; when fit learns nothing from the images
    (``learns_from_data=False``; None: what scikit-learn's ``requires_fit`` tag says),
    the outputs are those of a fit on all."""
    n = len(X)
    idx = np.arange(n)[: max(4, n - 2)]
    est = _fit(clone(estimator), _subset(X, idx), None if y is None else np.asarray(y)[idx])
    if _kind(est) == "sampler":
        return
    out = _output(est, X, y)
    assert len(out[0]) == n or len(out) == n
    if learns_from_data is None:
        learns_from_data = get_tags(estimator).requires_fit
    if not learns_from_data:
        _same(out, _output(_fit(clone(estimator), X, y), X, y))


def check_one_vs_many(estimator, X, y) -> None:
    """Each image's output does not depend on the others given with it."""
    est = _fit(clone(estimator), X, y)
    if _kind(est) == "sampler":
        return
    many = _output(est, X, y)
    for i in (0, len(X) - 1):
        one = _output(est, _subset(X, [i]), y)
        if len(many) == 1:  # one array with a row per image
            _same([one[0][0]], [many[0][i]], rtol=1e-3, atol=1e-4)
        else:  # one array per image
            _same(one, [many[i]], rtol=1e-3, atol=1e-4)


def check_pickle(estimator, X, y) -> None:
    """A fitted estimator pickles and gives the same outputs after loading."""
    est = _fit(clone(estimator), X, y)
    before = _output(est, X, y)
    _same(_output(pickle.loads(pickle.dumps(est)), X, y), before)


def check_n_jobs(estimator, X, y) -> None:
    """Cross-validated in two worker processes, it scores as in one."""
    from imblearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.preprocessing import FunctionTransformer

    if _kind(estimator) == "classifier":
        model = clone(estimator)
    else:
        model = make_pipeline(clone(estimator), FunctionTransformer(_flat_features),
                              LogisticRegression())
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    one = cross_val_score(model, X, y, cv=cv, n_jobs=1)
    two = cross_val_score(model, X, y, cv=cv, n_jobs=2)
    np.testing.assert_allclose(two, one, atol=1e-6)


def _flat_features(X) -> np.ndarray:
    """Images or features to one fixed-length row each (the n_jobs check's classifier
    input): the mean over all axes but the last."""
    rows = []
    for x in (list(X) if hasattr(X, "n_descriptors") else X):
        a = np.asarray(x, dtype=np.float64)
        rows.append(a.mean(axis=tuple(range(a.ndim - 1))) if a.ndim > 1 else a)
    return np.stack(rows)


def check_set_output(estimator, X, y) -> None:
    """``set_output(transform="pandas")`` gives a DataFrame named by the feature names, or
    leaves images as they are (image-to-image steps)."""
    if _kind(estimator) != "transformer":
        return
    import pandas as pd

    est = _fit(clone(estimator).set_output(transform="pandas"), X, y)
    out = est.transform(X)
    if isinstance(out, list):
        return
    if hasattr(out, "n_descriptors"):
        return  # ragged local descriptors: refused by a named error instead
    assert isinstance(out, pd.DataFrame), type(out)
    assert list(out.columns) == list(est.get_feature_names_out())


def check_feature_names(estimator, X, y) -> None:
    """``get_feature_names_out`` names every output column (image steps pass names on)."""
    if _kind(estimator) != "transformer":
        return
    est = _fit(clone(estimator), X, y)
    names = est.get_feature_names_out()
    out = est.transform(X)
    if isinstance(out, list):
        assert names is None
        return
    width = out.n_features if hasattr(out, "n_descriptors") else np.asarray(out).shape[1]
    assert len(names) == width and len(set(names)) == width


def check_bad_parameters_named(estimator, X, y) -> None:
    """Each parameter set to a nonsense value is refused at fit, naming the parameter."""
    for name in getattr(estimator, "_parameter_constraints", {}):
        est = clone(estimator).set_params(**{name: object()})
        try:
            est.fit_resample(X, y) if _kind(est) == "sampler" else est.fit(X, y)
        except (ValueError, TypeError) as exc:
            assert repr(name) in str(exc) or name in str(exc), f"{name}: {exc}"
        else:
            raise AssertionError(f"parameter {name}=object() was accepted")


def check_unfitted(estimator, X, y) -> None:
    """Using an unfitted estimator is a NotFittedError naming it (unless it needs no fit)."""
    if _kind(estimator) == "sampler" or not get_tags(estimator).requires_fit:
        return
    est = clone(estimator)
    method = est.predict_proba if _kind(est) == "classifier" else est.transform
    try:
        method(X)
    except NotFittedError as exc:
        assert type(est).__name__ in str(exc), str(exc)
    else:
        raise AssertionError("an unfitted estimator gave outputs")


_CHECKS: tuple[Callable, ...] = (
    check_clone,
    check_get_set_params,
    check_fit_idempotent,
    check_fit_subset,
    check_one_vs_many,
    check_pickle,
    check_n_jobs,
    check_set_output,
    check_feature_names,
    check_bad_parameters_named,
    check_unfitted,
)


def image_estimator_checks(estimator, X, y=None, *, learns_from_data: bool | None = None
                           ) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(name, check)``: each check runs the estimator on ``X`` (images) and ``y``.

    Any estimator whose ``X`` is a sequence of images (or of per-image arrays) can be
    checked. ``learns_from_data=False`` says that ``fit`` learns nothing from the images
    (a fixed network, a stateless step), so a fit on a subset must give the outputs of a
    fit on all; None takes scikit-learn's ``requires_fit`` tag for it.

    Examples
    --------
    >>> from cnnfeatures import CLAHETransformer
    >>> [name for name, _ in image_estimator_checks(CLAHETransformer(), [])][:3]
    ['check_clone', 'check_get_set_params', 'check_fit_idempotent']
    """
    for check in _CHECKS:
        extra = {"learns_from_data": learns_from_data} if check is check_fit_subset else {}
        yield check.__name__, (lambda c=check, kw=extra: c(estimator, X, y, **kw))


def check_image_estimator(estimator, X, y=None, *, learns_from_data: bool | None = None
                          ) -> list[str]:
    """Run every check (see :func:`image_estimator_checks`); return the names of those that
    ran (an AssertionError stops)."""
    names = []
    for name, check in image_estimator_checks(estimator, X, y,
                                              learns_from_data=learns_from_data):
        check()
        names.append(name)
    return names
