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
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import os
import re
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import get_config
from .memo import Memo
from .messages import warn_once

__all__ = [
    "CLAIM_SECONDS",
    "SESSION_VARIABLE",
    "ActivationCache",
    "CacheInfo",
    "CacheWriteWarning",
    "MemoryLRU",
    "NotACacheError",
    "clear_memory_cache",
    "default_cache_dir",
    "session_cache_dir",
    "get_cache",
    "is_cache_directory",
    "memory_cache",
]

#: Bumped whenever what a key means changes (decoding, resizing, pooling code), so that
#: entries written by older versions are never read back.
CACHE_FORMAT = 2

DEFAULT_MEMORY_BYTES = 2 << 30  # 2 GiB of pooled vectors and local maps per process

#: The standard cache-directory tag (https://bford.info/cachedir/), plus our own line.
MARKER_NAME = "CACHEDIR.TAG"
_MARKER_OWNER = "# This directory is a cnnfeatures activation cache"
MARKER_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    f"{_MARKER_OWNER} (format {CACHE_FORMAT}).\n"
    "# cnnfeatures reads, writes and deletes only <2 hex>/<40 hex>.npy entries here.\n"
)
_SHARD = re.compile(r"^[0-9a-f]{2}$")
_ENTRY = re.compile(r"^[0-9a-f]{40}\.npy$")
_TEMP = re.compile(r"^[0-9a-f]{40}\.[A-Za-z0-9_]+\.tmp$")
_CLAIM = re.compile(r"^[0-9a-f]{40}\.claim$")

#: A claim older than this is taken to be abandoned (a killed process on another host).
CLAIM_SECONDS = 600.0
_MARKER_TEMP = re.compile(r"^\.cnnfeatures-marker\.[A-Za-z0-9_]+\.tmp$")

# Bytes a memory entry costs beyond its array object and key: the LRU's nodes and hash
# slots and the allocator's rounding (measured: 200,000 entries of 64 float32 take ~580
# bytes each, of which 368 are the array and 89 the key).
_ENTRY_OVERHEAD = 128
_KEY_BYTES = sys.getsizeof("0" * 40)

# A directory that cannot take files at all: stop trying after the first failure.
_DIRECTORY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC,
                     getattr(errno, "EDQUOT", errno.ENOSPC)}


class CacheWriteWarning(UserWarning):
    """A cache directory could not be written; the work goes on from memory."""


class NotACacheError(ValueError):
    """A directory is not a cnnfeatures cache (no marker): nothing in it is touched."""


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


# --------------------------------------------------------------------------- memory


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

    def __init__(self, max_bytes: int = DEFAULT_MEMORY_BYTES,
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


# --------------------------------------------------------------------------- disk


def is_cache_directory(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds the marker of a cnnfeatures cache."""
    marker = Path(directory) / MARKER_NAME
    try:
        if not stat.S_ISREG(os.lstat(marker).st_mode):
            return False
        with open(marker, encoding="utf-8", errors="replace") as f:
            return _MARKER_OWNER in f.read(4096)
    except OSError:
        return False


def _read_entry(path: Path, shape: tuple[int, ...] | None, dtype) -> np.ndarray | None:
    """An entry's array, or None unless ``path`` is a regular file holding exactly the
    expected array (shape and dtype checked in the header, before any allocation)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # missing, a symbolic link (ELOOP), no permission
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode):  # a directory, FIFO or device in the entry's place
        os.close(fd)
        return None
    size = st.st_size
    with os.fdopen(fd, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                stored_shape, fortran, stored_dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                stored_shape, fortran, stored_dtype = np.lib.format.read_array_header_2_0(f)
            else:
                return None
            if fortran or stored_dtype != np.dtype(dtype) or stored_dtype.hasobject:
                return None
            if shape is not None and tuple(stored_shape) != tuple(shape):
                return None
            nbytes = int(np.prod(stored_shape, dtype=np.int64)) * stored_dtype.itemsize
            if f.tell() + nbytes != size:  # truncated, padded, or a forged header
                return None
            data = f.read(nbytes)
        except (ValueError, OSError, EOFError, SyntaxError, TypeError):
            return None
    if len(data) != nbytes:
        return None
    return np.frombuffer(data, dtype=stored_dtype).reshape(stored_shape)


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
        self.max_entry_bytes = max_entry_bytes
        self.memory = (MemoryLRU(max_memory_bytes, name=f"activations of {self.directory}")
                       if max_memory_bytes is not None else memory_cache())
        # Each directory has its own names in the shared memory LRU: an entry held in
        # memory for one cache is then still written to (and found in) another's directory.
        shared = self.memory is memory_cache() and self.directory is not None
        self._namespace = f"{self.directory}:" if shared else ""
        self._lock = threading.Lock()
        self._disk_writable = True
        self._marked = False
        self.hits = 0
        self.misses = 0

    @property
    def max_memory_bytes(self) -> int:
        return self.memory.max_bytes

    # -- paths
    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, key: str, shape: tuple[int, ...] | None = None,
            dtype=np.float32) -> np.ndarray | None:
        """Return the array stored under ``key``, or None.

        ``shape`` and ``dtype`` are what the caller expects: a disk entry holding anything
        else is a miss (and is replaced on the next :meth:`put`).
        """
        value = self.memory.get(self._namespace + key)
        if value is not None and (shape is None or value.shape == tuple(shape)):
            with self._lock:
                self.hits += 1
            return value
        if self.directory is not None:
            value = _read_entry(self._path(key), shape, dtype)
            if value is not None:
                self.memory.put(self._namespace + key, value)
                with self._lock:
                    self.hits += 1
                return value
        with self._lock:
            self.misses += 1
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        """Store an array (a read-only copy is kept) in memory and on disk."""
        value = np.array(value, copy=True)
        value.flags.writeable = False
        self.memory.put(self._namespace + key, value)
        if self.directory is None or not self._disk_writable:
            return
        if self.max_entry_bytes is not None and value.nbytes > self.max_entry_bytes:
            return  # a large map: kept in memory only (see max_entry_bytes)
        try:
            self._mark()
            self._write(self._path(key), value)
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

    def _mark(self) -> None:
        """Make sure the directory exists and is marked as ours (adopting only empty ones)."""
        if self._marked:
            return
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        if not is_cache_directory(directory):
            foreign = [e.name for e in os.scandir(directory)
                       if not _MARKER_TEMP.match(e.name)]
            if foreign:
                raise NotACacheError(
                    f"{directory} holds files ({', '.join(sorted(foreign)[:3])}, ...) and "
                    f"no {MARKER_NAME} marker: it is not a cnnfeatures cache, and the cache "
                    "writes only into a new, empty or marked directory"
                )
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cnnfeatures-marker.",
                                       suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(MARKER_TEXT)
                try:
                    os.link(tmp, directory / MARKER_NAME)  # atomic: never a half marker
                except FileExistsError:
                    pass  # another process marked it first
            finally:
                os.unlink(tmp)
        self._marked = True

    # -- claims: several processes sharing a directory forward each image once
    def claim(self, key: str) -> bool:
        """Claim the work behind ``key`` for this process; False when another live process
        holds the claim. Always True without a writable directory (nothing to share).

        A claim is a small file, created exclusively (``O_EXCL``) beside the entries and
        naming its host and process; a claim whose process is gone (same host) or older
        than :data:`CLAIM_SECONDS` is taken over.
        """
        if self.directory is None or not self._disk_writable:
            return True
        try:
            self._mark()
            path = self._path(key).with_suffix(".claim")
            path.parent.mkdir(exist_ok=True)
            for _ in range(2):
                try:
                    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    if not _abandoned(path):
                        return False
                    _unlink(str(path))
                    continue
                with os.fdopen(fd, "w") as f:
                    f.write(f"{socket.gethostname()} {os.getpid()}\n")
                return True
            return False
        except (OSError, NotACacheError):
            return True  # the directory cannot be shared: do the work here

    def release(self, key: str) -> None:
        """Drop this process's claim on ``key`` (after writing the entries, or failing)."""
        if self.directory is not None:
            _unlink(str(self._path(key).with_suffix(".claim")))

    def is_claimed(self, key: str) -> bool:
        """Whether a live claim on ``key`` exists."""
        if self.directory is None:
            return False
        path = self._path(key).with_suffix(".claim")
        return path.exists() and not _abandoned(path)

    @staticmethod
    def _write(path: Path, value: np.ndarray) -> None:
        path.parent.mkdir(exist_ok=True)
        # Write to a unique temporary file in the same folder, then rename: readers see
        # either no entry or a whole one, whatever happens to this process.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
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

    # -- maintenance: only our own files, only in a marked directory
    def _own_files(self) -> Iterator[tuple[str, os.DirEntry]]:
        """("entry" | "temp", dir entry) for every file of ours; never follows links."""
        try:
            shards = [e for e in os.scandir(self.directory)
                      if _SHARD.match(e.name) and e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return
        for shard in shards:
            try:
                entries = list(os.scandir(shard.path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    continue
                if _ENTRY.match(entry.name):
                    yield "entry", entry
                elif _TEMP.match(entry.name) or _CLAIM.match(entry.name):
                    yield "temp", entry

    def _check_owned(self) -> bool:
        if self.directory is None or not self.directory.is_dir():
            return False
        if not is_cache_directory(self.directory):
            raise NotACacheError(
                f"{self.directory} has no {MARKER_NAME} marker of a cnnfeatures cache: "
                "nothing was deleted (the cache deletes only in directories it marked)"
            )
        return True

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
        if disk and self._check_owned():
            for _, entry in self._own_files():
                _unlink(entry.path)

    def prune(self, max_bytes: int) -> int:
        """Delete the least recently written disk entries until at most ``max_bytes`` remain.

        Returns the number of entries deleted. Leftover temporary files of killed writers
        are deleted too. Raises :class:`NotACacheError` for an unmarked directory.
        """
        if not self._check_owned():
            return 0
        entries = []
        for kind, entry in self._own_files():
            if kind == "temp":
                _unlink(entry.path)
                continue
            st = _lstat(entry)
            if st is not None:
                entries.append((st.st_mtime, st.st_size, entry.path))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in entries:
            if total <= max_bytes:
                break
            _unlink(path)
            total -= size
            removed += 1
        return removed

    def info(self) -> CacheInfo:
        """Count the entries and bytes held in memory and on disk (regular files only)."""
        disk_entries = disk_bytes = 0
        if self.directory is not None and self.directory.is_dir():
            for kind, entry in self._own_files():
                st = _lstat(entry)
                if kind == "entry" and st is not None and stat.S_ISREG(st.st_mode):
                    disk_entries += 1
                    disk_bytes += st.st_size
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


def _abandoned(path: Path) -> bool:
    """A claim file whose process is gone (same host) or that is too old."""
    try:
        st = os.stat(path)
        host, pid = path.read_text().split()[:2]
    except (OSError, ValueError):
        return False  # being written, or gone: not ours to judge yet
    if time.time() - st.st_mtime > CLAIM_SECONDS:
        return True
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
    return False


def _lstat(entry: os.DirEntry) -> os.stat_result | None:
    try:
        return entry.stat(follow_symlinks=False)
    except FileNotFoundError:  # removed meanwhile by another process
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


#: Directory caches kept per process (each holds only its settings and counters: the
#: arrays are in the one memory cache and on disk).
CACHES = Memo("activation caches", 64)


#: Largest entry the session directory takes (a pooled vector of 64k floats); larger
#: local maps stay in memory, so that no temporary folder fills with VLAD's maps.
SESSION_ENTRY_BYTES = 256 << 10

#: The environment variable naming this process tree's shared cache directory.
SESSION_VARIABLE = "CNNFEATURES_SESSION_CACHE"
_SESSION_LOCK = threading.Lock()


def session_cache_dir() -> str:
    """This process tree's session directory: a temporary folder shared by the process
    that first needs it and the worker processes it starts afterwards (joblib's, for
    ``GridSearchCV(n_jobs=k)``), which inherit its name in ``$CNNFEATURES_SESSION_CACHE``.
    The process that names it removes the cache's files when it exits.

    Nothing is named before it is needed: the estimators ask for it when they are fitted,
    used or cloned (``GridSearchCV`` clones them before it starts its workers).
    """
    with _SESSION_LOCK:
        directory = os.environ.get(SESSION_VARIABLE)
        if directory is None:
            directory = os.path.join(tempfile.gettempdir(), f"cnnfeatures-session-"
                                     f"{os.getpid()}-{os.urandom(4).hex()}")
            os.environ[SESSION_VARIABLE] = directory
            atexit.register(_remove_session_cache, directory)
        return directory


def _remove_session_cache(directory: str) -> None:
    if not os.path.isdir(directory):
        return
    try:
        ActivationCache(directory, max_memory_bytes=1).clear()
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if name == MARKER_NAME:
                os.unlink(path)
            elif _SHARD.match(name) and os.path.isdir(path) and not os.listdir(path):
                os.rmdir(path)
        os.rmdir(directory)
    except (OSError, ValueError):
        pass  # something not ours is there, or another process still writes: leave it


def default_cache_dir() -> str | None:
    """The disk part of ``cache=True``: the ``cache_dir`` setting (see
    :func:`~cnnfeatures.set_config`; default ``$CNNFEATURES_CACHE_DIR``): a directory,
    None (memory only), or ``"session"`` (the default): this process tree's
    :func:`session_cache_dir`, so that ``GridSearchCV(n_jobs=k)`` forwards each image
    once across processes.
    """
    setting = get_config()["cache_dir"]
    return session_cache_dir() if setting == "session" else setting


def get_cache(directory: str | os.PathLike[str] | None = None) -> ActivationCache:
    """The process-wide cache for a directory (None: memory only), created on first use.

    Every such cache shares the process's memory LRU (:func:`memory_cache`).

    Examples
    --------
    >>> get_cache() is get_cache()
    True
    """
    key = os.path.abspath(os.fspath(directory)) if directory is not None else None

    def create() -> ActivationCache:
        session = key is not None and key == os.environ.get(SESSION_VARIABLE)
        return ActivationCache(key, max_entry_bytes=SESSION_ENTRY_BYTES if session else None)

    memory_cache()  # sized by the setting now in effect
    return CACHES.get_or_compute(key, create)
