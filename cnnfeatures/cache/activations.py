"""An activation cache: the process's memory in front of an optional directory."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..messages import warn_once
from .directory import CACHE_FORMAT, CacheDirectory, NotACacheError
from .memory import MemoryLRU, memory_cache

__all__ = ["CACHE_FORMAT", "ActivationCache", "CacheInfo", "CacheWriteWarning", "make_key"]

# A directory that cannot take files at all: stop trying after the first failure.
_DIRECTORY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC,
                     getattr(errno, "EDQUOT", errno.ENOSPC)}


def make_key(*parts: object) -> str:
    """Digest a tuple of plain values (str, int, float, None) into a cache key."""
    text = repr((CACHE_FORMAT, *parts)).encode()
    return hashlib.blake2b(text, digest_size=20).hexdigest()


class CacheWriteWarning(UserWarning):
    """A cache directory could not be written; the work goes on from memory."""


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


class ActivationCache:
    """A memory LRU of arrays, backed by an optional directory of ``.npy`` files.

    Parameters
    ----------
    directory : str or Path, optional
        Where to keep entries on disk; created (and marked) on first write. It must be
        new, empty or already a cnnfeatures cache. None keeps entries in memory only.
    max_memory_bytes : int, optional
        A private memory bound for this cache. By default the process-wide memory LRU of
        :func:`memory_cache` is used, shared by every cache.
    max_entry_bytes : int, optional
        Entries larger than this stay in memory only (the session directory of
        :func:`default_cache_dir` takes pooled vectors, not local maps).

    Examples
    --------
    >>> import numpy as np
    >>> cache = ActivationCache(max_memory_bytes=10_000)
    >>> key = make_key("digest", "vgg19", "imagenet", 224, "fc2", "max")
    >>> cache.put(key, np.ones(3, np.float32))
    >>> cache.get(key)
    array([1., 1., 1.], dtype=float32)
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None = None,
        max_memory_bytes: int | None = None, max_entry_bytes: int | None = None,
    ):
        self.directory = Path(directory) if directory is not None else None
        self.disk = CacheDirectory(directory) if directory is not None else None
        self.max_entry_bytes = max_entry_bytes
        self.memory = (MemoryLRU(max_memory_bytes, name=f"activations of {self.directory}")
                       if max_memory_bytes is not None else memory_cache())
        # Each directory has its own names in the shared memory LRU: an entry held in
        # memory for one cache is then still written to (and found in) another's directory.
        shared = self.memory is memory_cache() and self.directory is not None
        self._namespace = f"{self.directory}:" if shared else ""
        self._lock = threading.Lock()
        self._disk_writable = True
        self.hits = 0
        self.misses = 0

    @property
    def max_memory_bytes(self) -> int:
        return self.memory.max_bytes

    def get(self, key: str, shape: tuple[int, ...] | None = None,
            dtype=np.float32) -> np.ndarray | None:
        """Return the array stored under ``key``, or None.

        ``shape`` and ``dtype`` are what the caller expects: a disk entry holding anything
        else is a miss (and is replaced on the next :meth:`put`).
        """
        value = self.memory.get(self._namespace + key)
        if value is None or (shape is not None and value.shape != tuple(shape)):
            value = self.disk.read(key, shape, dtype) if self.disk is not None else None
            if value is not None:
                self.memory.put(self._namespace + key, value)
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return value

    def put(self, key: str, value: np.ndarray) -> None:
        """Store an array (a read-only copy is kept) in memory and on disk."""
        value = np.array(value, copy=True)
        value.flags.writeable = False
        self.memory.put(self._namespace + key, value)
        if self.disk is None or not self._disk_writable:
            return
        if self.max_entry_bytes is not None and value.nbytes > self.max_entry_bytes:
            return  # a large map: kept in memory only (see max_entry_bytes)
        try:
            self.disk.write(key, value)
        except NotACacheError as exc:
            self._disk_writable = False
            warn_once(f"{exc}; the disk cache is off, activations stay in memory",
                      CacheWriteWarning, stacklevel=3)
        except OSError as exc:
            if exc.errno in _DIRECTORY_ERRNOS:
                self._disk_writable = False
            warn_once(f"cannot write the activation cache in {self.directory} "
                      f"({exc.strerror or exc}); the work goes on from memory",
                      CacheWriteWarning, stacklevel=3)

    # -- claims: several processes sharing a directory forward each image once
    def claim(self, key: str) -> bool:
        """Claim the work behind ``key`` for this process; False when another live process
        holds the claim (see :meth:`CacheDirectory.claim
        <cnnfeatures.cache.directory.CacheDirectory.claim>`). Always True without a
        writable directory: there is nothing to share."""
        if self.disk is None or not self._disk_writable:
            return True
        try:
            return self.disk.claim(key)
        except (OSError, NotACacheError):
            return True  # the directory cannot be shared: do the work here

    def release(self, key: str) -> None:
        """Drop this process's claim on ``key`` (after writing the entries, or failing)."""
        if self.disk is not None:
            self.disk.release(key)

    def is_claimed(self, key: str) -> bool:
        """Whether a live claim on ``key`` exists."""
        return self.disk is not None and self.disk.is_claimed(key)

    # -- maintenance: only our own files, only in a marked directory
    def clear(self, disk: bool = True) -> None:
        """Empty the memory cache and, with ``disk=True``, delete this cache's disk entries.

        Raises
        ------
        NotACacheError
            If the directory is not marked as a cnnfeatures cache (nothing is deleted).
        """
        self.memory.clear()
        with self._lock:
            self.hits = self.misses = 0
        if disk and self.disk is not None:
            self.disk.delete_entries()

    def prune(self, max_bytes: int) -> int:
        """Delete the least recently written disk entries until at most ``max_bytes`` remain.

        Returns the number of entries deleted. Leftover temporary files of killed writers
        are deleted too. Raises :class:`NotACacheError` for an unmarked directory.
        """
        return self.disk.prune(max_bytes) if self.disk is not None else 0

    def info(self) -> CacheInfo:
        """Count the entries and bytes held in memory and on disk (regular files only)."""
        disk_entries, disk_bytes = self.disk.usage() if self.disk is not None else (0, 0)
        with self._lock:
            hits, misses = self.hits, self.misses
        return CacheInfo(
            memory_entries=self.memory.entries,
            memory_bytes=self.memory.bytes,
            memory_limit_bytes=self.memory.max_bytes,
            disk_entries=disk_entries,
            disk_bytes=disk_bytes,
            directory=str(self.directory) if self.directory is not None else None,
            hits=hits,
            misses=misses,
        )
