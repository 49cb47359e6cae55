"""The report's table layouts, and writing tables as Markdown, CSV and heatmap PNG.

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

from collections.abc import Sequence

import numpy as np

from ..extraction import Scales

__all__ = [
    "best_table",
    "cv_results_records",
    "dataset_table",
    "frozen_table",
    "params_record",
    "save_heatmap",
    "scale_table",
    "to_markdown",
    "vlad_table",
    "write_table",
]


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
    scales = Scales.of(params.get(prefix + "scales", (0,)))
    layer = params.get(prefix + "layer")
    return {
        "scale": scales[0] if len(scales) == 1 else scales.label,
        "pooling": params.get(prefix + "pooling"),
        "layer": layer if isinstance(layer, str) else "+".join(layer),
        "score": float(score),
    }


def cv_results_records(cv_results: dict, prefix: str = "cnnfeatureextractor__") -> list[dict]:
    """Turn ``GridSearchCV.cv_results_`` over layer × pooling × scales into records."""
    return [params_record(params, score, prefix)
            for params, score in zip(cv_results["params"], cv_results["mean_test_score"])]


def save_heatmap(table, path: str, title: str = "") -> None:
    """Save a table of scores as an annotated heatmap PNG (needs matplotlib).

    Draws on a bare ``Figure`` (no pyplot): the process's matplotlib backend is left as
    the user set it.
    """
    from matplotlib.figure import Figure

    values = table.to_numpy(dtype=float)
    fig = Figure(figsize=(1.3 * values.shape[1] + 2, 0.7 * values.shape[0] + 1.8))
    ax = fig.subplots()
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
