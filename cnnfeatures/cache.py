"""Content-keyed activation cache shared by every clone of an extractor.

``GridSearchCV`` clones the extractor for every candidate and fold, so a cache on the
instance would be thrown away each time. This cache lives in the process (an LRU bounded in
bytes) and, optionally, in a directory that several processes can share (``n_jobs > 1``,
dask workers, later runs).

Keys are built by the caller from *content* — the image's digest, backbone, weights identity,
input side, layer and pooling — never from a path alone, so an edited file is a miss.
Entries on disk are ``.npy`` files written to a temporary name then renamed atomically (a
killed process leaves no half-written entry; two processes writing the same entry write the
same bytes), and read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ActivationCache", "CacheInfo", "get_cache"]

#: Bumped whenever what a key means changes (decoding, resizing, pooling code), so that
#: entries written by older versions are never read back.
CACHE_FORMAT = 1

DEFAULT_MEMORY_BYTES = 2 << 30  # 2 GiB of pooled vectors and local maps per process


@dataclass
class CacheInfo:
    """A snapshot of a cache's content and counters."""

    memory_entries: int
    memory_bytes: int
    memory_limit_bytes: int
    disk_entries: int
    disk_bytes: int
    directory: str | None
    hits: int
    misses: int


def make_key(*parts: object) -> str:
    """Digest a tuple of plain values (str, int, float, None) into a cache key."""
    text = repr((CACHE_FORMAT, *parts)).encode()
    return hashlib.blake2b(text, digest_size=20).hexdigest()


class ActivationCache:
    """A memory LRU of arrays, backed by an optional directory of ``.npy`` files.

    Parameters
    ----------
    directory : str or Path, optional
        Where to keep entries on disk; created on first write. None keeps them in memory only.
    max_memory_bytes : int, default=2 GiB
        Bound on the arrays held in memory; least recently used entries are evicted first
        (they stay on disk when a directory is set).

    Examples
    --------
    >>> import numpy as np
    >>> cache = ActivationCache()
    >>> key = make_key("digest", "vgg19", "imagenet", 224, "fc2", "max")
    >>> cache.put(key, np.ones(3, np.float32))
    >>> cache.get(key)
    array([1., 1., 1.], dtype=float32)
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None = None,
        max_memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ):
        self.directory = Path(directory) if directory is not None else None
        self.max_memory_bytes = int(max_memory_bytes)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memory_bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    # -- paths
    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.npy"

    # -- memory LRU
    def _remember(self, key: str, value: np.ndarray) -> None:
        if value.nbytes > self.max_memory_bytes:
            return
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_bytes -= old.nbytes
        self._memory[key] = value
        self._memory_bytes += value.nbytes
        while self._memory_bytes > self.max_memory_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._memory_bytes -= evicted.nbytes

    def get(self, key: str) -> np.ndarray | None:
        """Return the array stored under ``key``, or None."""
        with self._lock:
            value = self._memory.get(key)
            if value is not None:
                self._memory.move_to_end(key)
                self.hits += 1
                return value
        if self.directory is not None:
            try:
                value = np.load(self._path(key), allow_pickle=False)
            except (FileNotFoundError, NotADirectoryError):
                value = None
            except (ValueError, OSError, EOFError):
                # A foreign or damaged file: treat as a miss; it is rewritten on put.
                value = None
            if value is not None:
                value.flags.writeable = False
                with self._lock:
                    self._remember(key, value)
                    self.hits += 1
                return value
        with self._lock:
            self.misses += 1
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        """Store an array (a read-only copy is kept) in memory and on disk."""
        value = np.array(value, copy=True)
        value.flags.writeable = False
        with self._lock:
            self._remember(key, value)
        if self.directory is not None:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write to a unique temporary file in the same folder, then rename: readers see
            # either no entry or a whole one, whatever happens to this process.
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, value, allow_pickle=False)
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise

    def clear(self, disk: bool = True) -> None:
        """Empty the memory part and, with ``disk=True``, delete the entries on disk."""
        with self._lock:
            self._memory.clear()
            self._memory_bytes = 0
            self.hits = self.misses = 0
        if disk and self.directory is not None and self.directory.is_dir():
            for path in self.directory.glob("*/*.npy"):
                path.unlink(missing_ok=True)
            for path in self.directory.glob("*/*.tmp"):
                path.unlink(missing_ok=True)

    def prune(self, max_bytes: int) -> int:
        """Delete the least recently written disk entries until at most ``max_bytes`` remain.

        Returns the number of entries deleted. Leftover temporary files of killed writers
        are deleted too.
        """
        if self.directory is None or not self.directory.is_dir():
            return 0
        for path in self.directory.glob("*/*.tmp"):
            path.unlink(missing_ok=True)
        entries = []
        for path in self.directory.glob("*/*.npy"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in entries:
            if total <= max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed

    def info(self) -> CacheInfo:
        """Count the entries and bytes held in memory and on disk."""
        disk_entries = disk_bytes = 0
        if self.directory is not None and self.directory.is_dir():
            for path in self.directory.glob("*/*.npy"):
                disk_entries += 1
                disk_bytes += path.stat().st_size
        with self._lock:
            return CacheInfo(
                memory_entries=len(self._memory),
                memory_bytes=self._memory_bytes,
                memory_limit_bytes=self.max_memory_bytes,
                disk_entries=disk_entries,
                disk_bytes=disk_bytes,
                directory=str(self.directory) if self.directory is not None else None,
                hits=self.hits,
                misses=self.misses,
            )


_CACHES: dict[str | None, ActivationCache] = {}
_CACHES_LOCK = threading.Lock()


def default_cache_dir() -> str | None:
    """The disk cache used by ``cache=True``: ``$CNNFEATURES_CACHE_DIR``, else memory only."""
    return os.environ.get("CNNFEATURES_CACHE_DIR") or None


def get_cache(directory: str | os.PathLike[str] | None = None) -> ActivationCache:
    """The process-wide cache for a directory (None: memory only), created on first use.

    Examples
    --------
    >>> get_cache() is get_cache()
    True
    """
    key = os.path.abspath(os.fspath(directory)) if directory is not None else None
    with _CACHES_LOCK:
        cache = _CACHES.get(key)
        if cache is None:
            cache = _CACHES[key] = ActivationCache(key)
        return cache
