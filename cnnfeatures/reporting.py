"""Metrics with confidence intervals, and the report's table layouts.

Every table of the report has a function here that turns records (one dict per measured
configuration) into a ``pandas.DataFrame`` in that table's layout:

========================  =====================================================
Tables 1–4                :func:`scale_table` — rows N, columns pooling × layer
Tables 5–7                :func:`vlad_table` — rows k, columns layer
Table 8                   :func:`frozen_table` — one row per frozen set
Tables 9–11               :func:`dataset_table` — one row per dataset
Table 12                  :func:`best_table` — the best method per dataset
========================  =====================================================

:func:`write_table` saves any of them as Markdown, CSV and (numeric tables) a heatmap PNG.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from imblearn.metrics import sensitivity_specificity_support
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

__all__ = [
    "bootstrap_interval",
    "classification_metrics",
    "evaluation_record",
    "format_metrics",
    "scale_table",
    "vlad_table",
    "frozen_table",
    "dataset_table",
    "best_table",
    "to_markdown",
    "write_table",
    "save_heatmap",
]


def classification_metrics(y_true, y_pred, labels: Sequence | None = None) -> dict:
    """Accuracy, balanced accuracy, and per-class sensitivity (recall) and specificity.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
    labels : sequence, optional
        Class order for the per-class entries (defaults to the sorted union of labels).

    Returns
    -------
    metrics : dict
        ``accuracy``, ``balanced_accuracy``, ``n_samples`` and ``per_class``: a dict from
        label to {"sensitivity", "specificity", "support"}.

    Examples
    --------
    >>> m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1])
    >>> m["accuracy"], m["per_class"][0]["sensitivity"], m["per_class"][0]["specificity"]
    (0.75, 0.5, 1.0)
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if labels is None:
        labels = np.unique(np.concatenate([y_true, y_pred]))
    sens, spec, support = sensitivity_specificity_support(
        y_true, y_pred, labels=labels, average=None
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "n_samples": int(len(y_true)),
        "per_class": {
            label: {"sensitivity": float(se), "specificity": float(sp), "support": int(n)}
            for label, se, sp, n in zip(labels, sens, spec, support)
        },
    }


def format_metrics(metrics: dict, names: Sequence[str] | None = None) -> str:
    """Render :func:`classification_metrics` as an aligned plain-text block."""
    lines = [
        f"accuracy           {metrics['accuracy']:.4f}",
        f"balanced accuracy  {metrics['balanced_accuracy']:.4f}",
        f"test images        {metrics['n_samples']}",
        "",
        f"{'class':<20} {'sensitivity':>11} {'specificity':>11} {'support':>8}",
    ]
    for label, m in metrics["per_class"].items():
        name = names[label] if names is not None else str(label)
        lines.append(
            f"{name:<20} {m['sensitivity']:>11.4f} {m['specificity']:>11.4f} {m['support']:>8}"
        )
    return "\n".join(lines)


def scale_table(records: Sequence[dict], value: str = "score"):
    """Lay out per-configuration scores as Tables 1–4 of the report.

    Parameters
    ----------
    records : sequence of dict
        Each with keys ``scale`` (int N), ``pooling``, ``layer`` and ``value``.
    value : str, default="score"
        The key holding the number to show.

    Returns
    -------
    table : pandas.DataFrame
        Rows ``N=<scale>``; columns a MultiIndex (pooling, layer) in first-seen order.

    Examples
    --------
    >>> t = scale_table([{"scale": 0, "pooling": "mean", "layer": "fc1", "score": 0.8}])
    >>> float(t.loc["N=0", ("mean", "fc1")])
    0.8
    """
    import pandas as pd

    frame = pd.DataFrame(records)
    poolings = list(dict.fromkeys(frame["pooling"]))
    layers = list(dict.fromkeys(frame["layer"]))
    table = frame.pivot_table(index="scale", columns=["pooling", "layer"], values=value)
    columns = [(p, lay) for p in poolings for lay in layers if (p, lay) in table.columns]
    table = table[columns]
    table.index = [f"N={n}" for n in table.index]
    return table


def params_record(params: dict, score: float, prefix: str = "cnnfeatureextractor__") -> dict:
    """One table record (scale, pooling, layer, score) from a grid candidate's parameters.

    A multi-scale candidate's ``scale`` is the tuple written out, a layer list is joined by
    ``+``.
    """
    scales = tuple(params.get(prefix + "scales", (0,)))
    layer = params.get(prefix + "layer")
    return {
        "scale": scales[0] if len(scales) == 1 else str(scales),
        "pooling": params.get(prefix + "pooling"),
        "layer": layer if isinstance(layer, str) else "+".join(layer),
        "score": float(score),
    }


def cv_results_records(cv_results: dict, prefix: str = "cnnfeatureextractor__") -> list[dict]:
    """Turn ``GridSearchCV.cv_results_`` over layer × pooling × scales into records."""
    return [params_record(params, score, prefix)
            for params, score in zip(cv_results["params"], cv_results["mean_test_score"])]


def save_heatmap(table, path: str, title: str = "") -> None:
    """Save a table of scores as an annotated heatmap PNG (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.3 * values.shape[1] + 2, 0.7 * values.shape[0] + 1.8))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(values.shape[1]))
    ax.set_xticklabels(["\n".join(map(str, c)) if isinstance(c, tuple) else str(c)
                        for c in table.columns])
    ax.set_yticks(range(values.shape[0]))
    ax.set_yticklabels(table.index)
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.3f}", ha="center", va="center",
                    color="black" if v > middle else "white")
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- intervals


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
        interval), ``roc_auc`` (when scores are given and it is defined), and per class
        ``recall <name>`` and ``specificity <name>``; ``n_test``.

    Examples
    --------
    >>> r = evaluation_record([0, 0, 1, 1], [0, 1, 1, 1], names=["a", "b"], n_resamples=0)
    >>> r["accuracy"], r["recall b"], r["specificity b"]
    (0.75, 1.0, 0.5)
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = np.unique(np.concatenate([y_true, y_pred]))
    m = classification_metrics(y_true, y_pred, labels=labels)
    record: dict = {"accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"]}
    if n_resamples:
        for key, metric in (("accuracy", accuracy_score),
                            ("balanced_accuracy", balanced_accuracy_score)):
            low, high = bootstrap_interval(y_true, y_pred, metric, n_resamples=n_resamples,
                                           random_state=random_state)
            record[f"{key}_low"], record[f"{key}_high"] = low, high
    auc = _roc_auc(y_true, scores, labels)
    if auc is not None:
        record["roc_auc"] = auc
    for label, values in m["per_class"].items():
        name = names[label] if names is not None else str(label)
        record[f"recall {name}"] = values["sensitivity"]
        record[f"specificity {name}"] = values["specificity"]
    record["n_test"] = m["n_samples"]
    return record


# --------------------------------------------------------------------------- layouts


def _pivot(records: Sequence[dict], index: str, columns: str, value: str):
    import pandas as pd

    frame = pd.DataFrame(records)
    missing = {index, columns, value} - set(frame.columns)
    if missing:
        raise ValueError(f"records lack the key(s) {sorted(missing)}")
    order = list(dict.fromkeys(frame[columns]))
    table = frame.pivot_table(index=index, columns=columns, values=value, sort=False)
    return table[[c for c in order if c in table.columns]]


def vlad_table(records: Sequence[dict], value: str = "accuracy"):
    """Tables 5–7: rows ``k=<k>``, one column per layer.

    Examples
    --------
    >>> t = vlad_table([{"k": 64, "layer": "block5_pool", "accuracy": 0.9}])
    >>> float(t.loc["k=64", "block5_pool"])
    0.9
    """
    table = _pivot(records, "k", "layer", value)
    table.index = [f"k={k}" for k in table.index]
    table.columns.name = None
    return table


def frozen_table(records: Sequence[dict], columns: Sequence[str] = (
        "accuracy", "recall", "epochs", "trainable parameters")):
    """Table 8: one row per frozen set (``frozen``; ``"-"`` for none), given columns.

    Examples
    --------
    >>> t = frozen_table([{"frozen": "blocks", "accuracy": 0.8, "recall": 0.9,
    ...                    "epochs": 3, "trainable parameters": 10}])
    >>> t.loc["blocks", "epochs"]
    np.int64(3)
    """
    import pandas as pd

    frame = pd.DataFrame(records)
    return frame.set_index("frozen")[[c for c in columns if c in frame.columns]]


def dataset_table(records: Sequence[dict], columns: str = "method", value: str = "accuracy"):
    """Tables 9–11: one row per dataset, one column per method (or condition).

    Examples
    --------
    >>> t = dataset_table([{"dataset": "a", "method": "x", "accuracy": 0.5},
    ...                    {"dataset": "a", "method": "y", "accuracy": 0.7}])
    >>> list(t.columns), float(t.loc["a", "y"])
    (['x', 'y'], 0.7)
    """
    table = _pivot(records, "dataset", columns, value)
    table.columns.name = None
    return table


def best_table(records: Sequence[dict], select: str = "cv_score",
               columns: Sequence[str] = ("method", "accuracy", "recall",
                                         "balanced_accuracy", "cpu_minutes")):
    """Table 12: for each dataset, the record with the highest ``select`` value.

    Select on a cross-validation score measured on the training split, never on the
    test score that the table shows.

    Examples
    --------
    >>> t = best_table([{"dataset": "a", "method": "x", "cv_score": 0.6, "accuracy": 0.7},
    ...                 {"dataset": "a", "method": "y", "cv_score": 0.8, "accuracy": 0.65}],
    ...                columns=("method", "accuracy"))
    >>> t.loc["a", "method"]
    'y'
    """
    import pandas as pd

    frame = pd.DataFrame(records)
    best = frame.loc[frame.groupby("dataset", sort=False)[select].idxmax()]
    return best.set_index("dataset")[[c for c in columns if c in best.columns]]


def to_markdown(table, digits: int = 3) -> str:
    """A DataFrame as a GitHub Markdown table (no extra dependency).

    Examples
    --------
    >>> import pandas as pd
    >>> print(to_markdown(pd.DataFrame({"acc": [0.91234]}, index=["N=0"])))
    |  | acc |
    |---|---|
    | N=0 | 0.912 |
    """

    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    def label(c) -> str:
        return " / ".join(map(str, c)) if isinstance(c, tuple) else str(c)

    head = "|  | " + " | ".join(label(c) for c in table.columns) + " |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    rows = [f"| {label(i)} | " + " | ".join(cell(v) for v in row) + " |"
            for i, row in zip(table.index, table.itertuples(index=False))]
    return "\n".join([head, rule, *rows])


def write_table(table, directory: str, name: str, title: str = "") -> list[str]:
    """Save a table as ``<name>.md``, ``<name>.csv`` and, when numeric, ``<name>.png``.

    Returns the paths written. The heatmap needs matplotlib; without it only the text
    files are written.
    """
    import os

    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, name)
    with open(base + ".md", "w") as f:
        f.write((f"**{title}**\n\n" if title else "") + to_markdown(table) + "\n")
    table.to_csv(base + ".csv")
    paths = [base + ".md", base + ".csv"]
    numeric = table.select_dtypes("number")
    if numeric.shape == table.shape and table.size > 1:
        try:
            save_heatmap(table, base + ".png", title)
            paths.append(base + ".png")
        except ImportError:
            pass
    return paths
