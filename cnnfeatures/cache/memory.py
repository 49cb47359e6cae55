"""The process's memory cache of activations: one least-recently-used map, bounded in the
bytes its arrays really take, shared by every :class:`~cnnfeatures.cache.ActivationCache`."""

from __future__ import annotations

import sys
import threading

import numpy as np

from ..config import DEFAULT_CACHE_MEMORY_BYTES, get_config
from ..memo import Memo

__all__ = ["MemoryLRU", "clear_memory_cache", "memory_cache"]

# Bytes a memory entry costs beyond its array object and key: the LRU's nodes and hash
# slots and the allocator's rounding (measured: 200,000 entries of 64 float32 take ~580
# bytes each, of which 368 are the array and 89 the key).
_ENTRY_OVERHEAD = 128
_KEY_BYTES = sys.getsizeof("0" * 40)


class MemoryLRU(Memo):
    """A least-recently-used map of read-only arrays, bounded in the bytes they really take
    (a :class:`~cnnfeatures.memo.Memo` sized in bytes).

    Each entry counts its array (data and object header), its key and the map's own
    overhead, so a million tiny vectors are bounded as surely as a few large maps.

    Examples
    --------
    >>> import numpy as np
    >>> lru = MemoryLRU(max_bytes=2000)
    >>> for i in range(10):
    ...     lru.put(f"k{i}", np.zeros(64, np.float32))
    >>> lru.entries, lru.bytes <= 2000, lru.get("k0") is None
    (3, True, True)
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_MEMORY_BYTES,
                 name: str = "activations in memory"):
        super().__init__(name, int(max_bytes), getsizeof=self._value_cost)

    @staticmethod
    def cost(key: str, value: np.ndarray) -> int:
        """Bytes an entry takes in memory."""
        return MemoryLRU._value_cost(value) - _KEY_BYTES + sys.getsizeof(key)

    @staticmethod
    def _value_cost(value: np.ndarray) -> int:
        # Keys are make_key's digests (40 characters): their size is a constant.
        array = sys.getsizeof(value) + (0 if value.flags.owndata else value.nbytes)
        return array + _KEY_BYTES + _ENTRY_OVERHEAD

    @property
    def max_bytes(self) -> int:
        return self.maxsize

    @property
    def bytes(self) -> int:
        return self.currsize

    @property
    def entries(self) -> int:
        return len(self)

    def set_limit(self, max_bytes: int) -> None:
        """Change the bound (evicting at once if it shrinks)."""
        self.resize(int(max_bytes))


# The process's one memory cache, made on first use, and the setting it was sized by.
_MEMORY: dict = {}
_MEMORY_LOCK = threading.Lock()


def memory_cache() -> MemoryLRU:
    """The process's memory cache, shared by every :class:`ActivationCache` of
    :func:`get_cache`, bounded by the ``cache_memory_bytes`` setting (default 2 GiB, see
    :func:`~cnnfeatures.set_config`, which resizes it; ``memory_cache().set_limit(n)``
    does too, until the setting changes again)."""
    setting = get_config()["cache_memory_bytes"]
    with _MEMORY_LOCK:
        if "lru" not in _MEMORY:
            _MEMORY["lru"] = MemoryLRU(setting)
        elif _MEMORY["setting"] != setting:
            _MEMORY["lru"].set_limit(setting)
        _MEMORY["setting"] = setting
        return _MEMORY["lru"]


def clear_memory_cache() -> None:
    """Drop every activation held in this process's memory (disk entries stay)."""
    memory_cache().clear()
