"""Counts of the work done, for tests and benchmarks: images forwarded through networks.

Kept apart from the extraction engine, which reports one call per batch here. The counts
are per process (each joblib or dask worker has its own: read them there, e.g. with
``distributed.Client.run``), bounded by the number of distinct networks and sides.
"""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["count_forward", "forward_pass_counts", "reset_forward_pass_counts"]

_FORWARD_COUNTS: Counter = Counter()
_LOCK = threading.Lock()


def count_forward(backbone: str, fingerprint: str, precision: str, side: int, n: int) -> None:
    """Record that ``n`` images went through a network at input side ``side``."""
    with _LOCK:
        _FORWARD_COUNTS[(backbone, fingerprint, precision, side)] += n


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
