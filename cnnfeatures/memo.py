"""The one kind of process-wide memo the library keeps: bounded, thread-safe, clearable.

Built networks, pretrained weights read from files, file digests, the activation cache in
memory: each is a :class:`Memo` (a least-recently-used map from cachetools, bounded in
entries or in bytes, behind a lock), registered here by name, so that
:func:`clear_memos` forgets them all and :func:`memo_info` says what each holds.

Examples
--------
>>> from cnnfeatures.memo import Memo, memo_info
>>> squares = Memo("doctest squares", maxsize=2)
>>> [squares.get_or_compute(n, lambda n=n: n * n) for n in (2, 3, 2, 4)]
[4, 9, 4, 16]
>>> memo_info()["doctest squares"]
(2, 2)
>>> squares.forget()
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from functools import wraps

from cachetools import LRUCache

__all__ = ["Memo", "clear_memos", "memo_info", "memoized"]

# Weak: a memo lives as long as its owner (a module, a cache object), not longer.
_MEMOS: weakref.WeakValueDictionary[str, Memo] = weakref.WeakValueDictionary()
_MEMOS_LOCK = threading.Lock()


class Memo:
    """A bounded least-recently-used map, safe across threads.

    Parameters
    ----------
    name : str
        How :func:`memo_info` lists it (a second memo of the same name replaces the first
        in the listing).
    maxsize : int
        The bound: entries, or with ``getsizeof`` the sum of the entries' sizes.
    getsizeof : callable, optional
        ``getsizeof(value) -> int``: an entry's size (bytes, say). An entry larger than
        ``maxsize`` is not kept.
    """

    def __init__(self, name: str, maxsize: int, getsizeof: Callable[[object], int] | None
                 = None):
        self.name = name
        self._getsizeof = getsizeof
        self._cache = LRUCache(maxsize, getsizeof)
        # Reentrant: a value computed under the lock may consult another memo, or this one.
        self._lock = threading.RLock()
        with _MEMOS_LOCK:
            _MEMOS[name] = self

    @property
    def maxsize(self) -> int:
        return int(self._cache.maxsize)

    @property
    def currsize(self) -> int:
        """Entries held, or with ``getsizeof`` the sum of their sizes."""
        return int(self._cache.currsize)

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._cache

    def get(self, key: Hashable, default=None):
        """The value of ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            return self._cache.get(key, default)

    def put(self, key: Hashable, value) -> None:
        """Keep ``value`` (evicting the least recently used entries beyond the bound)."""
        with self._lock:
            try:
                self._cache[key] = value
            except ValueError:  # larger than the whole bound: not kept
                self._cache.pop(key, None)

    def get_or_compute(self, key: Hashable, compute: Callable[[], object]):
        """The value of ``key``, computed once (under the lock: concurrent callers wait
        for the first one's value instead of computing it again)."""
        with self._lock:
            try:
                return self._cache[key]
            except KeyError:
                value = compute()
                self.put(key, value)
                return value

    def locked(self):
        """The memo's lock, to hold while several steps must see no other thread's change
        (``with memo.locked(): ...``; reentrant)."""
        return self._lock

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._cache.pop(key, None)

    def keys(self) -> list:
        with self._lock:
            return list(self._cache.keys())

    def resize(self, maxsize: int) -> None:
        """Change the bound, evicting the least recently used entries beyond it."""
        with self._lock:
            old = self._cache
            self._cache = LRUCache(maxsize, self._getsizeof)
            while old:
                self.put(*old.popitem())  # least recently used first

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def forget(self) -> None:
        """Clear the memo and take it off :func:`memo_info`'s list."""
        self.clear()
        with _MEMOS_LOCK:
            if _MEMOS.get(self.name) is self:
                del _MEMOS[self.name]


def memoized(name: str, maxsize: int):
    """A decorator: the function's results memoised by its (hashable) arguments in a
    :class:`Memo` of ``maxsize`` entries, reachable as ``function.memo``."""
    def decorate(function):
        memo = Memo(name, maxsize)

        @wraps(function)
        def wrapper(*args):
            return memo.get_or_compute(args, lambda: function(*args))

        wrapper.memo = memo
        return wrapper

    return decorate


def clear_memos() -> None:
    """Forget what every memo of this process holds (it is computed again on next use)."""
    with _MEMOS_LOCK:
        memos = list(_MEMOS.values())
    for memo in memos:
        memo.clear()


def memo_info() -> dict[str, tuple[int, int]]:
    """Each memo's ``(current size, bound)``, by name."""
    with _MEMOS_LOCK:
        return {name: (memo.currsize, memo.maxsize) for name, memo in _MEMOS.items()}
