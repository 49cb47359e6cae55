"""Metrics with confidence intervals: the one path every table and command goes through.

:func:`evaluation_record` measures a classifier's test predictions — accuracy and balanced
accuracy with percentile-bootstrap intervals, ROC AUC from scores, recall and specificity
per class — and :func:`format_record` prints it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from imblearn.metrics import sensitivity_specificity_support
from sklearn.metrics import accuracy_score, balanced_accuracy_score

__all__ = ["BootstrapInterval", "bootstrap", "bootstrap_interval", "evaluation_record",
           "format_record"]


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile-bootstrap interval, and on how many resamples it rests.

    Attributes
    ----------
    low, high : float
    n_resamples : int
        Resamples drawn.
    n_undefined : int
        Resamples where the metric is undefined (ROC AUC or a recall of a resample
        without positive cases): left out of the interval, and counted here.
    """

    low: float
    high: float
    n_resamples: int
    n_undefined: int


def bootstrap(y_true, y_pred, metric=accuracy_score, *, n_resamples: int = 1000,
              confidence: float = 0.95, random_state=0) -> BootstrapInterval:
    """Percentile bootstrap interval of a metric over the test samples.

    Test sets of a few hundred images leave several points of accuracy to chance; the
    interval says how many. Samples are drawn with replacement ``n_resamples`` times (the
    same draws for every metric with the same ``random_state``).

    The metrics of :func:`evaluation_record` (accuracy, balanced accuracy, ROC AUC, recall,
    specificity) are computed on every resample at once, with NumPy (a thousand resamples
    of a few hundred images in milliseconds: scikit-learn's metric functions check their
    input at every call, a thousand times slower here); any other metric is called once
    per resample. ``scipy.stats.bootstrap`` is not used: it draws other resamples (every
    interval printed so far would move) and returns NaN when the metric is undefined on
    some resample instead of leaving those out and counting them.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        ``y_pred`` may also be scores (for ``roc_auc_score``).
    metric : callable, default=sklearn.metrics.accuracy_score
        ``metric(y_true, y_pred) -> float``. Resamples where it is undefined (it raises a
        ValueError or returns NaN: one class only, for ROC AUC) are left out, and counted.
    n_resamples : int, default=1000
    confidence : float, default=0.95
    random_state : int, RandomState or None, default=0

    Returns
    -------
    BootstrapInterval

    Raises
    ------
    ValueError
        When the metric is undefined on every resample.

    Examples
    --------
    >>> interval = bootstrap([0, 1] * 50, [0, 1] * 45 + [1, 0] * 5)
    >>> interval.low < 0.9 < interval.high, interval.n_undefined
    (True, 0)
    """
    from sklearn.utils import check_random_state

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if len(y_true) != len(y_pred) or len(y_true) == 0:
        raise ValueError(f"y_true and y_pred must have the same non-zero length, got "
                         f"{len(y_true)} and {len(y_pred)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    rng = check_random_state(random_state)
    # One draw of every resample: the same indices as drawing them one after the other.
    idx = rng.randint(0, len(y_true), (n_resamples, len(y_true)))
    on_rows = metric if isinstance(metric, _OnResamples) else _ON_RESAMPLES.get(metric)
    if on_rows is not None:
        values = np.asarray(on_rows(y_true[idx], y_pred[idx]), dtype=float)
    else:
        values = np.array([_or_nan(metric, y_true[i], y_pred[i]) for i in idx], dtype=float)
    defined = values[~np.isnan(values)]
    if not defined.size:
        raise ValueError(f"{getattr(metric, '__name__', metric)} is undefined on every "
                         "resample")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return BootstrapInterval(float(low), float(high), int(n_resamples),
                             int(n_resamples - defined.size))


def bootstrap_interval(y_true, y_pred, metric=accuracy_score, *, n_resamples: int = 1000,
                       confidence: float = 0.95, random_state=0) -> tuple[float, float]:
    """The ``(low, high)`` of :func:`bootstrap`'s interval.

    Examples
    --------
    >>> low, high = bootstrap_interval([0, 1] * 50, [0, 1] * 45 + [1, 0] * 5)
    >>> low < 0.9 < high
    True
    """
    interval = bootstrap(y_true, y_pred, metric, n_resamples=n_resamples,
                         confidence=confidence, random_state=random_state)
    return interval.low, interval.high


def _or_nan(metric, y_true, y_pred) -> float:
    with warnings.catch_warnings():
        # Small resamples may miss a class; sklearn warns each time, the interval is fine.
        warnings.simplefilter("ignore", UserWarning)
        try:
            return float(metric(y_true, y_pred))
        except ValueError:  # e.g. ROC AUC of a resample holding one class
            return np.nan


# --------------------------------------------------------------------------- on resamples
# Each takes (n_resamples, n) arrays of labels (and predictions or scores) and returns
# one value per resample, NaN where the metric is undefined.


class _OnResamples:
    """A metric on every resample at once (a row each); also callable on one sample."""

    def __init__(self, rows, name: str):
        self.rows, self.__name__ = rows, name

    def __call__(self, y_true, y_pred) -> np.ndarray:
        return self.rows(np.asarray(y_true), np.asarray(y_pred))


def _accuracy_rows(y_true, y_pred) -> np.ndarray:
    return np.mean(y_true == y_pred, axis=-1)


def _balanced_accuracy_rows(y_true, y_pred) -> np.ndarray:
    """The mean recall of the classes present in each resample (scikit-learn's rule)."""
    recalls = []
    for label in np.unique(y_true):
        cases = y_true == label
        n = cases.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(n > 0, (cases & (y_pred == label)).sum(axis=-1) / n,
                                    np.nan))
    return np.nanmean(np.stack(recalls), axis=0)


def _rate_rows(label, positive: bool):
    """Recall (``positive``) or specificity of one class; NaN without such cases."""
    def rows(y_true, y_pred):
        cases = (y_true == label) if positive else (y_true != label)
        right = (y_pred == label) if positive else (y_pred != label)
        n = cases.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, (cases & right).sum(axis=-1) / n, np.nan)

    return _OnResamples(rows, f"{'recall' if positive else 'specificity'} of {label}")


def _binary_auc_rows(positive, scores) -> np.ndarray:
    """ROC AUC of each row by the rank-sum (Mann-Whitney) formula, ties counted half:
    what ``roc_auc_score`` computes; NaN for a row of one class."""
    from scipy.stats import rankdata

    positive = np.atleast_2d(positive)
    n_pos = positive.sum(axis=-1)
    n_neg = positive.shape[-1] - n_pos
    ranks = rankdata(np.atleast_2d(scores), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * positive).sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _auc_rows(labels):
    """ROC AUC as :func:`_roc_auc` computes it (one-vs-rest mean over the classes)."""
    def rows(y_true, scores):
        scores = np.asarray(scores, dtype=float)
        if len(labels) == 2:
            positive = scores[..., 1] if scores.ndim == y_true.ndim + 1 else scores
            return _binary_auc_rows(y_true == labels[1], positive)
        return np.mean([_binary_auc_rows(y_true == label, scores[..., j])
                        for j, label in enumerate(labels)], axis=0)

    return _OnResamples(rows, "ROC AUC")


_ON_RESAMPLES = {accuracy_score: _accuracy_rows, balanced_accuracy_score: _balanced_accuracy_rows}


def _roc_auc(y_true, scores, labels) -> float | None:
    """ROC AUC from decision scores or probabilities; None when it cannot be computed.

    Several classes: the mean of the one-vs-rest AUCs of each class's score column (what
    sklearn's ``multi_class="ovr"`` computes, without needing probabilities).
    """
    if scores is None:
        return None
    scores = np.asarray(scores, dtype=float)
    if len(labels) != 2 and (scores.ndim != 2 or scores.shape[1] != len(labels)):
        return None
    auc = float(_auc_rows(labels)(y_true, scores)[0])
    return None if np.isnan(auc) else auc  # a class absent from y_true


def evaluation_record(y_true, y_pred, scores=None, *, names: Sequence[str] | None = None,
                      n_resamples: int = 1000, random_state=0) -> dict:
    """Every metric a table of the report can show, flat, with 95% bootstrap intervals.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        Integer class indices.
    scores : array-like, optional
        ``decision_function`` (binary) or ``predict_proba`` output, for ROC AUC.
    names : sequence of str, optional
        Class names, indexed by label, for the per-class keys.
    n_resamples : int, default=1000
        Bootstrap resamples (0: no intervals).
    random_state : int, default=0

    Returns
    -------
    record : dict
        ``accuracy``, ``accuracy_low``/``accuracy_high``, ``balanced_accuracy`` (and its
        interval), ``roc_auc`` (when scores are given and it is defined, with its
        interval), and per class ``recall <name>`` and ``specificity <name>`` (with
        intervals when there are two classes); ``n_test``. Where some resamples leave a
        metric undefined (a ROC AUC or a recall of a resample without positive cases),
        ``<metric>_undefined`` counts them: the interval rests on the others.

    Examples
    --------
    >>> r = evaluation_record([0, 0, 1, 1], [0, 1, 1, 1], names=["a", "b"], n_resamples=0)
    >>> r["accuracy"], r["recall b"], r["specificity b"]
    (0.75, 1.0, 0.5)
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred]))
    record: dict = {"accuracy": float(accuracy_score(y_true, y_pred)),
                    "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred))}
    intervals: dict[str, BootstrapInterval] = {}
    if n_resamples:
        for key, metric in (("accuracy", accuracy_score),
                            ("balanced_accuracy", balanced_accuracy_score)):
            intervals[key] = bootstrap(y_true, y_pred, metric, n_resamples=n_resamples,
                                       random_state=random_state)
    auc = _roc_auc(y_true, scores, labels)
    if auc is not None:
        record["roc_auc"] = auc
        if n_resamples:
            intervals["roc_auc"] = bootstrap(y_true, np.asarray(scores, dtype=float),
                                             _auc_rows(labels), n_resamples=n_resamples,
                                             random_state=random_state)
    recall, specificity, _ = sensitivity_specificity_support(y_true, y_pred, labels=labels,
                                                             average=None)
    for label, se, sp in zip(labels, recall, specificity):
        name = names[label] if names is not None else str(label)
        record[f"recall {name}"] = float(se)
        record[f"specificity {name}"] = float(sp)
        if n_resamples and len(labels) == 2:  # binary: the figures a clinician reads
            for key, positive in ((f"recall {name}", True), (f"specificity {name}", False)):
                intervals[key] = bootstrap(y_true, y_pred, _rate_rows(label, positive),
                                           n_resamples=n_resamples, random_state=random_state)
    for key, interval in intervals.items():
        record[f"{key}_low"], record[f"{key}_high"] = interval.low, interval.high
        if interval.n_undefined:  # left out of the interval: say how many
            record[f"{key}_undefined"] = interval.n_undefined
    record["n_test"] = int(len(y_true))
    return record


def format_record(record: dict, names: Sequence[str]) -> str:
    """An :func:`evaluation_record` as an aligned plain-text block (the CLI's output).

    Examples
    --------
    >>> r = evaluation_record([0, 0, 1, 1], [0, 1, 1, 1], names=["a", "b"], n_resamples=0)
    >>> print(format_record(r, ["a", "b"]))
    accuracy           0.7500
    balanced accuracy  0.7500
    test images        4
    <BLANKLINE>
    class                     recall specificity
    a                         0.5000      1.0000
    b                         1.0000      0.5000
    """

    def value(key: str) -> str:
        text = f"{record[key]:.4f}"
        if f"{key}_low" in record:
            text += f"  [{record[key + '_low']:.4f}, {record[key + '_high']:.4f}]"
        return text

    lines = [f"accuracy           {value('accuracy')}",
             f"balanced accuracy  {value('balanced_accuracy')}"]
    if "roc_auc" in record:
        lines.append(f"ROC AUC            {record['roc_auc']:.4f}")
    lines += [f"test images        {record['n_test']}", "",
              f"{'class':<20} {'recall':>11} {'specificity':>11}"]
    for name in names:
        if f"recall {name}" in record:
            lines.append(f"{name:<20} {record[f'recall {name}']:>11.4f} "
                         f"{record[f'specificity {name}']:>11.4f}")
    undefined = [f"{key[:-len('_undefined')].replace('roc_auc', 'ROC AUC')} on {count}"
                 for key, count in record.items() if key.endswith("_undefined")]
    if undefined:
        lines += ["", "resamples left out of an interval (metric undefined): "
                  + ", ".join(undefined)]
    return "\n".join(lines)
