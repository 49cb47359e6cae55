"""Metrics and the report's table layouts (rows N, columns pooling × layer)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from imblearn.metrics import sensitivity_specificity_support
from sklearn.metrics import accuracy_score, balanced_accuracy_score

__all__ = ["classification_metrics", "format_metrics", "scale_table"]


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
    ax.set_xticklabels([f"{p}\n{lay}" for p, lay in table.columns])
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
