"""Metrics with confidence intervals: the one path every table and command goes through.

:func:`evaluation_record` measures a classifier's test predictions — accuracy and balanced
accuracy with percentile-bootstrap intervals, ROC AUC from scores, recall and specificity
per class — and :func:`format_record` prints it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial

import numpy as np
from imblearn.metrics import sensitivity_specificity_support
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

__all__ = ["bootstrap_interval", "evaluation_record", "format_record"]


def bootstrap_interval(y_true, y_pred, metric=accuracy_score, *, n_resamples: int = 1000,
                       confidence: float = 0.95, random_state=0) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric over the test samples.

    Test sets of a few hundred images leave several points of accuracy to chance; the
    interval says how many. Samples are drawn with replacement ``n_resamples`` times (the
    same draws for every metric with the same ``random_state``).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        ``y_pred`` may also be scores (for ``roc_auc_score``).
    metric : callable, default=sklearn.metrics.accuracy_score
        ``metric(y_true, y_pred) -> float``. Resamples where it is undefined (one class
        only, for ROC AUC) are skipped.
    n_resamples : int, default=1000
    confidence : float, default=0.95
    random_state : int, RandomState or None, default=0

    Returns
    -------
    (low, high) : tuple of float

    Examples
    --------
    >>> low, high = bootstrap_interval([0, 1] * 50, [0, 1] * 45 + [1, 0] * 5)
    >>> low < 0.9 < high
    True
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
    values = []
    with warnings.catch_warnings():
        # Small resamples may miss a class; sklearn warns each time, the interval is fine.
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(n_resamples):
            idx = rng.randint(0, len(y_true), len(y_true))
            try:
                values.append(metric(y_true[idx], y_pred[idx]))
            except ValueError:  # e.g. ROC AUC of a resample holding one class
                continue
    if not values:
        raise ValueError(f"{getattr(metric, '__name__', metric)} is undefined on every "
                         "resample")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _roc_auc(y_true, scores, labels) -> float | None:
    """ROC AUC from decision scores or probabilities; None when it cannot be computed.

    Several classes: the mean of the one-vs-rest AUCs of each class's score column (what
    sklearn's ``multi_class="ovr"`` computes, without needing probabilities).
    """
    if scores is None:
        return None
    scores = np.asarray(scores, dtype=float)
    try:
        if len(labels) == 2:
            positive = scores[:, 1] if scores.ndim == 2 else scores
            return float(roc_auc_score(y_true == labels[1], positive))
        if scores.ndim != 2 or scores.shape[1] != len(labels):
            return None
        return float(np.mean([roc_auc_score(y_true == label, scores[:, j])
                              for j, label in enumerate(labels)]))
    except ValueError:  # a class absent from y_true
        return None


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
        intervals when there are two classes); ``n_test``.

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
    if n_resamples:
        for key, metric in (("accuracy", accuracy_score),
                            ("balanced_accuracy", balanced_accuracy_score)):
            low, high = bootstrap_interval(y_true, y_pred, metric, n_resamples=n_resamples,
                                           random_state=random_state)
            record[f"{key}_low"], record[f"{key}_high"] = low, high
    auc = _roc_auc(y_true, scores, labels)
    if auc is not None:
        record["roc_auc"] = auc
        if n_resamples:
            record["roc_auc_low"], record["roc_auc_high"] = bootstrap_interval(
                y_true, np.asarray(scores, dtype=float), partial(_defined_auc, labels=labels),
                n_resamples=n_resamples, random_state=random_state)
    recall, specificity, _ = sensitivity_specificity_support(y_true, y_pred, labels=labels,
                                                             average=None)
    for label, se, sp in zip(labels, recall, specificity):
        name = names[label] if names is not None else str(label)
        record[f"recall {name}"] = float(se)
        record[f"specificity {name}"] = float(sp)
        if n_resamples and len(labels) == 2:  # binary: the figures a clinician reads
            for key, rate in ((f"recall {name}", _rate_of(label, True)),
                              (f"specificity {name}", _rate_of(label, False))):
                record[f"{key}_low"], record[f"{key}_high"] = bootstrap_interval(
                    y_true, y_pred, rate, n_resamples=n_resamples, random_state=random_state)
    record["n_test"] = int(len(y_true))
    return record


def _defined_auc(y_true, scores, labels) -> float:
    auc = _roc_auc(y_true, scores, labels)
    if auc is None:
        raise ValueError("ROC AUC undefined on this resample")
    return auc


def _rate_of(label, positive: bool):
    """Recall (``positive``) or specificity of one class, undefined (ValueError) on a
    resample without such cases."""
    def rate(y_true, y_pred):
        cases = (y_true == label) if positive else (y_true != label)
        if not cases.any():
            raise ValueError("no cases in this resample")
        return float(np.mean((y_pred[cases] == label) == positive))

    return rate


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
    return "\n".join(lines)
