"""Class labels: scikit-learn's own checks, with messages that say what is wrong.

Every estimator of cnnfeatures that takes labels (the Keras classifiers, the augmenter)
goes through :func:`check_targets`, so that a missing label, a mix of label types or a
continuous target is refused the same way everywhere, naming the positions at fault.
"""

from __future__ import annotations

from numbers import Number

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

__all__ = ["check_targets"]


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and np.isnan(value))


def _kind(value) -> str:
    if isinstance(value, (str, np.str_, bytes)):
        return "str"
    if isinstance(value, (Number, np.number, np.bool_)):
        return "number"
    return type(value).__name__


def check_targets(y, n_samples: int | None = None, *, name: str = "y") -> np.ndarray:
    """Check classification labels and return them as a 1-D array.

    A column vector ``(n, 1)`` is ravelled with scikit-learn's ``DataConversionWarning``;
    missing labels (``None``, NaN), labels of mixed types (``"a"`` beside ``1``, which
    NumPy would silently turn into strings) and continuous targets are errors.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, 1)
    n_samples : int, optional
        The number of images the labels go with.
    name : str, default="y"
        The argument's name in messages.

    Returns
    -------
    y : ndarray of shape (n_samples,)

    Examples
    --------
    >>> check_targets(["cat", "dog"]).tolist()
    ['cat', 'dog']
    >>> check_targets(["cat", None])
    Traceback (most recent call last):
    ...
    ValueError: y has missing labels (None or NaN) at position(s) [1]: every image needs a class
    """
    # Lists go through an object array first: np.asarray(["a", 1]) would make "1" of 1.
    arr = np.asarray(y) if hasattr(y, "dtype") else np.asarray(y, dtype=object)
    arr = column_or_1d(arr, warn=True)
    if n_samples is not None and len(arr) != n_samples:
        raise ValueError(f"{name} must have one label per image: X has {n_samples} images, "
                         f"{name} has shape {arr.shape}")
    if arr.dtype.kind in "fO":
        missing = [i for i, v in enumerate(arr) if _is_missing(v)]
        if missing:
            raise ValueError(f"{name} has missing labels (None or NaN) at position(s) "
                             f"{missing[:10]}: every image needs a class")
    if arr.dtype == object:
        kinds = {}
        for i, value in enumerate(arr):
            kinds.setdefault(_kind(value), i)
        if len(kinds) > 1:
            examples = ", ".join(f"{arr[i]!r} at position {i}" for i in kinds.values())
            raise ValueError(f"{name} mixes label types ({', '.join(sorted(kinds))}: "
                             f"{examples}); give every label the same type")
        arr = np.asarray(arr.tolist())  # one type now: its natural dtype
    check_classification_targets(arr)
    return arr
