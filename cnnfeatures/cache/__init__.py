"""Content-keyed activation cache shared by every clone of an extractor.

``GridSearchCV`` clones the extractor for every candidate and fold, so a cache on the
instance would be thrown away each time. This cache lives in the process — one memory LRU
per process, bounded in real bytes whatever the number of cache directories — and,
optionally, in a directory that several processes can share (``n_jobs > 1``, dask workers,
later runs).

Keys are built by the caller from *content* — the image's digest, backbone, weights identity,
precision, input side, layer and pooling — never from a path alone, so an edited file is a
miss.

The directory belongs to the cache only in part: the cache writes there only when the
directory is new, empty, or already marked as a cnnfeatures cache (a ``CACHEDIR.TAG`` file,
the standard marker that also tells backup tools to skip it), and it reads, writes and
deletes nothing but its own entries, ``<2 hex>/<40 hex>.npy``, and their temporary files.
Entries are written to a temporary name and renamed atomically (a killed process leaves no
half-written entry; two processes writing one entry write the same bytes). They are read
only from regular files whose ``.npy`` header holds the expected shape and dtype, checked
before anything is allocated; any other file in an entry's place is a miss, replaced on the
next write. A directory that cannot be written (read-only, full, no permission) gives one
warning naming it, and the work goes on from memory.

Its rooms: :mod:`~cnnfeatures.cache.memory` (the process's byte-bounded memory LRU),
:mod:`~cnnfeatures.cache.directory` (a directory of entries: marker, atomic files, claims,
maintenance), :mod:`~cnnfeatures.cache.activations` (:class:`ActivationCache`, memory in
front of an optional directory) and :mod:`~cnnfeatures.cache.session` (which cache
``cache=True`` means, one per directory per process).
"""

from .activations import CACHE_FORMAT, ActivationCache, CacheInfo, CacheWriteWarning, make_key
from .directory import CLAIM_SECONDS, MARKER_NAME, NotACacheError, is_cache_directory
from .memory import MemoryLRU, clear_memory_cache, memory_cache
from .session import (
    SESSION_VARIABLE,
    SessionCacheOnClone,
    cache_for,
    default_cache_dir,
    get_cache,
    session_cache_dir,
)

__all__ = [
    "CACHE_FORMAT",
    "CLAIM_SECONDS",
    "MARKER_NAME",
    "SESSION_VARIABLE",
    "ActivationCache",
    "CacheInfo",
    "CacheWriteWarning",
    "MemoryLRU",
    "NotACacheError",
    "SessionCacheOnClone",
    "cache_for",
    "clear_memory_cache",
    "default_cache_dir",
    "get_cache",
    "is_cache_directory",
    "make_key",
    "memory_cache",
    "session_cache_dir",
]
