"""Warnings said once per process, and progress that reads well in a terminal or a log.

scikit-learn runs every fit of a search inside ``warnings.catch_warnings()``, which resets
Python's "once per location" memory: a warning about the same weights file would then be
repeated for every candidate and fold. :func:`warn_once` remembers what it said.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections import OrderedDict

__all__ = ["PROGRESS_SECONDS", "Progress", "announce", "is_terminal", "reset_warnings",
           "warn_once"]

#: Seconds between progress lines when standard error is a log file, not a terminal.
PROGRESS_SECONDS = 10.0

_SAID: OrderedDict[tuple, None] = OrderedDict()
_SAID_MAX = 1000  # distinct warnings remembered (oldest forgotten first)
_LOCK = threading.Lock()


def warn_once(message: str, category: type[Warning] = UserWarning, stacklevel: int = 2,
              *, key: str | None = None) -> None:
    """Issue a warning, unless the same one was issued before in this process.

    Parameters
    ----------
    message : str
    category : type of Warning
    stacklevel : int
        As for :func:`warnings.warn`, counted from the caller of ``warn_once``.
    key : str, optional
        What counts as "the same" warning when the message differs from one occurrence to
        the next (it names the first file, say); by default the message itself.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     for _ in range(3):
    ...         warn_once("fc1 is random", UserWarning)
    >>> len(seen)
    1
    >>> reset_warnings()
    """
    key = (category, message if key is None else key)
    with _LOCK:
        if key in _SAID:
            return
        _SAID[key] = None
        while len(_SAID) > _SAID_MAX:
            _SAID.popitem(last=False)
    warnings.warn(message, category, stacklevel=stacklevel + 1)


def reset_warnings() -> None:
    """Forget the warnings :func:`warn_once` said: each may be said once more."""
    with _LOCK:
        _SAID.clear()


def announce(message: str, verbose: int) -> None:
    """One line on standard error, when ``verbose``: what a long step is about to do."""
    if verbose:
        print(f"cnnfeatures: {message}", file=sys.stderr, flush=True)


class Progress:
    """Progress of a long step: a bar on a terminal, a line every ``interval`` seconds in a
    log file (no control characters), nothing when ``verbose`` is 0.

    Parameters
    ----------
    total : int
    desc : str
    unit : str, default="img"
    verbose : int, default=1
    interval : float, optional
        Seconds between lines when standard error is not a terminal (default:
        :data:`PROGRESS_SECONDS`).

    Examples
    --------
    >>> with Progress(3, "images", verbose=0) as progress:
    ...     progress.update(3)
    """

    def __init__(self, total: int, desc: str, unit: str = "img", verbose: int = 1,
                 interval: float | None = None, stream=None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.verbose = verbose
        self.interval = PROGRESS_SECONDS if interval is None else interval
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._start = self._last = time.perf_counter()
        self._bar = None
        if verbose and is_terminal(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if self.verbose and now - self._last >= self.interval:
            self._last = now
            self._line(now)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"cnnfeatures: {self.desc}: {self.done}/{self.total} {self.unit}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {rate:.1f} {self.unit}/s, {elapsed:.0f} s"
        if not final and rate > 0 and self.total > self.done:
            text += f", about {(self.total - self.done) / rate:.0f} s left"
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.verbose and self.done:
            now = time.perf_counter()
            # A closing line for steps long enough to matter: a grid search's many quick
            # transforms (cache hits) would otherwise fill the log.
            if now - self._start >= 1.0 or self._last > self._start:
                self._line(now, final=True)
            self.verbose = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_terminal(stream) -> bool:
    """Whether a stream is a terminal (not a file, a pipe or a closed stream)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
