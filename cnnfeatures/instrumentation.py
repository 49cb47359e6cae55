"""Counts of the work done, for tests and benchmarks: images forwarded through networks.

Kept apart from the extraction engine, which reports one call per batch here. The counts
are per process (each joblib or dask worker has its own: read them there, e.g. with
``distributed.Client.run``), bounded by the number of distinct networks and sides.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

from .config import get_config

__all__ = ["count_forward", "forward_log_total", "forward_pass_counts",
           "reset_forward_pass_counts"]

_FORWARD_COUNTS: Counter = Counter()
_LOCK = threading.Lock()


def count_forward(backbone: str, fingerprint: str, precision: str, side: int, n: int) -> None:
    """Record that ``n`` images went through a network at input side ``side``.

    With the ``forward_log`` setting (default ``$CNNFEATURES_FORWARD_LOG``, which worker
    processes inherit) naming a file, each record is also appended there as
    a line ``<pid> <backbone> <side> <n>``: the work of every process (joblib or dask
    workers included) can then be added up, as tests and benchmarks do.
    """
    with _LOCK:
        _FORWARD_COUNTS[(backbone, fingerprint, precision, side)] += n
    log = get_config()["forward_log"]
    if log:
        with open(log, "a") as f:  # one short line: appends of several processes interleave
            f.write(f"{os.getpid()} {backbone.replace(' ', '_')} {side} {n}\n")


def forward_pass_counts() -> dict[tuple[str, str, str, int], int]:
    """Images forwarded so far in this process, per (backbone, weights fingerprint,
    precision, input side).

    Examples
    --------
    >>> reset_forward_pass_counts(); count_forward("vgg16", "imagenet", "float32", 224, 8)
    >>> forward_pass_counts()
    {('vgg16', 'imagenet', 'float32', 224): 8}
    """
    with _LOCK:
        return dict(_FORWARD_COUNTS)


def reset_forward_pass_counts() -> None:
    """Set the counts of :func:`forward_pass_counts` back to zero."""
    with _LOCK:
        _FORWARD_COUNTS.clear()


def forward_log_total(path: str | os.PathLike[str], backbone: str | None = None) -> int:
    """Images forwarded by every process that wrote to a ``$CNNFEATURES_FORWARD_LOG`` file."""
    total = 0
    with open(path) as f:
        for line in f:
            _, name, _, n = line.split()
            if backbone is None or name == backbone:
                total += int(n)
    return total
