"""A directory of activation-cache entries, and only of them.

The cache writes into a directory only when it is new, empty, or already marked as a
cnnfeatures cache (a ``CACHEDIR.TAG`` file, the standard marker that also tells backup
tools to skip it), and it reads, writes and deletes nothing but its own entries,
``<2 hex>/<40 hex>.npy``, their temporary files and claims. Entries are written to a
temporary name and renamed atomically; they are read only from regular files whose
``.npy`` header holds the expected shape and dtype, checked before anything is allocated.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["CLAIM_SECONDS", "MARKER_NAME", "MARKER_TEXT", "CacheDirectory", "NotACacheError",
           "is_cache_directory", "read_entry"]

#: Bumped whenever what a key means changes (decoding, resizing, pooling code), so that
#: entries written by older versions are never read back.
CACHE_FORMAT = 2

#: The standard cache-directory tag (https://bford.info/cachedir/), plus our own line.
MARKER_NAME = "CACHEDIR.TAG"
_MARKER_OWNER = "# This directory is a cnnfeatures activation cache"
MARKER_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    f"{_MARKER_OWNER} (format {CACHE_FORMAT}).\n"
    "# cnnfeatures reads, writes and deletes only <2 hex>/<40 hex>.npy entries here.\n"
)
SHARD = re.compile(r"^[0-9a-f]{2}$")
_ENTRY = re.compile(r"^[0-9a-f]{40}\.npy$")
_TEMP = re.compile(r"^[0-9a-f]{40}\.[A-Za-z0-9_]+\.tmp$")
_CLAIM = re.compile(r"^[0-9a-f]{40}\.claim$")
_MARKER_TEMP = re.compile(r"^\.cnnfeatures-marker\.[A-Za-z0-9_]+\.tmp$")

#: A claim older than this is taken to be abandoned (a killed process on another host).
CLAIM_SECONDS = 600.0


class NotACacheError(ValueError):
    """A directory is not a cnnfeatures cache (no marker): nothing in it is touched."""


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


def read_entry(path: Path, shape: tuple[int, ...] | None, dtype) -> np.ndarray | None:
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


class CacheDirectory:
    """The entries of one cache directory: read, written atomically, claimed, pruned.

    Writing marks the directory first (adopting only a new or empty one); deleting
    (:meth:`delete_entries`, :meth:`prune`) needs the marker. Errors are the caller's to
    handle: :class:`NotACacheError` for a foreign directory, ``OSError`` for one that
    cannot take files.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._marked = False

    def entry_path(self, key: str) -> Path:
        return self.path / key[:2] / f"{key}.npy"

    def read(self, key: str, shape: tuple[int, ...] | None, dtype) -> np.ndarray | None:
        return read_entry(self.entry_path(key), shape, dtype)

    def write(self, key: str, value: np.ndarray) -> None:
        self.mark()
        path = self.entry_path(key)
        path.parent.mkdir(exist_ok=True)
        # Write to a unique temporary file in the same folder, then rename: readers see
        # either no entry or a whole one, whatever happens to this process.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, value, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise

    def mark(self) -> None:
        """Make sure the directory exists and is marked as ours (adopting only empty ones)."""
        if self._marked:
            return
        directory = self.path
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
        """Claim the work behind ``key``; False when another live process holds it.

        A claim is a small file, created exclusively (``O_EXCL``) beside the entries and
        naming its host and process; a claim whose process is gone (same host) or older
        than :data:`CLAIM_SECONDS` is taken over.
        """
        self.mark()
        path = self.entry_path(key).with_suffix(".claim")
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

    def release(self, key: str) -> None:
        _unlink(str(self.entry_path(key).with_suffix(".claim")))

    def is_claimed(self, key: str) -> bool:
        path = self.entry_path(key).with_suffix(".claim")
        return path.exists() and not _abandoned(path)

    # -- maintenance: only our own files, only in a marked directory
    def own_files(self) -> Iterator[tuple[str, os.DirEntry]]:
        """("entry" | "temp", dir entry) for every file of ours; never follows links."""
        try:
            shards = [e for e in os.scandir(self.path)
                      if SHARD.match(e.name) and e.is_dir(follow_symlinks=False)]
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

    def check_owned(self) -> bool:
        """Whether there is a directory to maintain; NotACacheError if it is not ours."""
        if not self.path.is_dir():
            return False
        if not is_cache_directory(self.path):
            raise NotACacheError(
                f"{self.path} has no {MARKER_NAME} marker of a cnnfeatures cache: "
                "nothing was deleted (the cache deletes only in directories it marked)"
            )
        return True

    def delete_entries(self) -> None:
        """Delete every entry, temporary file and claim (NotACacheError if not ours)."""
        if self.check_owned():
            for _, entry in self.own_files():
                _unlink(entry.path)

    def prune(self, max_bytes: int) -> int:
        """Delete the least recently written entries until at most ``max_bytes`` remain,
        and leftover temporary files of killed writers; the number of entries deleted."""
        if not self.check_owned():
            return 0
        entries = []
        for kind, entry in self.own_files():
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

    def usage(self) -> tuple[int, int]:
        """Entries and bytes on disk (regular files only)."""
        count = size = 0
        if self.path.is_dir():
            for kind, entry in self.own_files():
                st = _lstat(entry)
                if kind == "entry" and st is not None and stat.S_ISREG(st.st_mode):
                    count += 1
                    size += st.st_size
        return count, size


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
