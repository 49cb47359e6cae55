"""A ragged container of local descriptors: a variable number of rows per image.

Local CNN descriptors are large (VGG ``block5_pool`` at scales 0, 1 and 2 gives about 1,070
rows of 512 floats per image: 11 GB for the chest X-ray set), so the rows may live in memory
or in a temporary file that is read image by image — never mapped whole — which keeps the
memory of a pipeline bounded whatever the number of images.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Sequence

import numpy as np

from .config import get_config

__all__ = ["DescriptorWriter", "LocalDescriptors"]

#: A DescriptorWriter keeps rows in memory up to this many bytes, then moves them to a file.
SPILL_BYTES = 128 << 20


class _FileRows:
    """Rows of a float32 matrix in a raw file, read with plain file I/O.

    ``np.memmap`` would leave every page it touched resident in the process; reading with
    ``np.fromfile`` keeps only the rows being used. The file is deleted when the last
    container using it is garbage collected.
    """

    def __init__(self, path: str, n_features: int, n_rows: int, owned: bool = True):
        self.path = path
        self.n_features = n_features
        self.n_rows = n_rows
        if owned:
            self._finalizer = weakref.finalize(self, _unlink, path)

    def read(self, start: int, stop: int) -> np.ndarray:
        itemsize = np.dtype(np.float32).itemsize
        count = (stop - start) * self.n_features
        out = np.fromfile(self.path, dtype=np.float32, count=count,
                          offset=start * self.n_features * itemsize)
        return out.reshape(stop - start, self.n_features)

    def __reduce__(self):
        # Pickling (joblib workers, dumps) carries the rows themselves, not a path that
        # another process or machine may not have.
        return (_rows_from_array, (self.read(0, self.n_rows),))


def _rows_from_array(array: np.ndarray) -> np.ndarray:
    return array


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _SequenceRows:
    """Rows held by a sequence of per-image 2-D arrays, read one image at a time.

    The sequence may compute its items on demand (a lazy loader): nothing is concatenated,
    so holding a :class:`LocalDescriptors` over it costs only the row counts.
    """

    def __init__(self, images, counts: np.ndarray, n_features: int):
        self.images = images
        self.counts = counts
        self.n_features = n_features
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.n_rows = int(self.offsets[-1])

    def image(self, i: int) -> np.ndarray:
        rows = np.asarray(self.images[i])
        expected = (int(self.counts[i]), self.n_features)
        if rows.shape != expected:
            raise ValueError(
                f"X[{i}] has shape {rows.shape} now but had {expected} when first read: a "
                "sequence of descriptors must give the same arrays each time"
            )
        return rows

    def read(self, start: int, stop: int) -> np.ndarray:
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        parts = []
        i, position = first, start
        while position < stop:
            rows = self.image(i)
            lo = position - int(self.offsets[i])
            hi = min(stop, int(self.offsets[i + 1])) - int(self.offsets[i])
            parts.append(rows[lo:hi])
            position = int(self.offsets[i]) + hi
            i += 1
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_features), np.float32)


def _read(storage, start: int, stop: int) -> np.ndarray:
    if isinstance(storage, np.ndarray):
        return storage[start:stop]
    return storage.read(start, stop)


class LocalDescriptors(Sequence):
    """Local descriptors of ``n`` images: a 2-D array of rows and each image's row range.

    This is what :class:`~cnnfeatures.CNNFeatureExtractor` returns with ``pooling=None``:
    one row per spatial position of the layer's map, for every scale, image by image.
    ``descriptors[i]`` is image ``i``'s 2-D array; indexing with a slice, a list or an integer
    array returns a new ``LocalDescriptors`` of the selected images that shares the rows, so
    scikit-learn's cross-validation can split it without copying.

    Parameters
    ----------
    data : ndarray of shape (n_rows, n_features), or file-backed rows
    starts, counts : ndarray of shape (n_images,)
        Image ``i`` owns rows ``starts[i]`` to ``starts[i] + counts[i]``.
    scales : ndarray of shape (n_rows,), optional
        The scale ``n`` each row comes from.
    feature_names : array of str, optional

    Examples
    --------
    >>> import numpy as np
    >>> d = LocalDescriptors.from_arrays([np.zeros((2, 3)), np.ones((4, 3))])
    >>> len(d), d.n_features, d[1].shape, d.counts.tolist()
    (2, 3, (4, 3), [2, 4])
    >>> d[[1]].counts.tolist()
    [4]
    """

    def __init__(self, data, starts, counts, scales=None, feature_names=None):
        starts = np.asarray(starts, dtype=np.int64)
        counts = np.asarray(counts, dtype=np.int64)
        if isinstance(data, np.ndarray) and data.ndim != 2:
            raise ValueError(f"data must be 2-D (n_rows, n_features), got shape {data.shape}")
        if starts.shape != counts.shape or starts.ndim != 1:
            raise ValueError("starts and counts must be 1-D arrays of the same length")
        n_rows = data.shape[0] if isinstance(data, np.ndarray) else data.n_rows
        if np.any(counts < 0) or np.any(starts < 0) or np.any(starts + counts > n_rows):
            raise ValueError("every image's rows must lie within data")
        self._data = data
        self.starts = starts
        self.counts = counts
        self._scales = None if scales is None else np.asarray(scales)
        self.feature_names = None if feature_names is None else np.asarray(feature_names)

    @classmethod
    def from_sequence(cls, images: Sequence[np.ndarray], feature_names=None
                      ) -> LocalDescriptors:
        """Wrap a sequence of per-image 2-D arrays without copying or concatenating them.

        ``images`` may be a list or any object with ``len`` and indexing that builds each
        array on demand (read from disk, computed): one pass reads every item once to
        learn its number of rows, then items are read again only when used, so memory
        holds a few images at a time whatever the total.

        Examples
        --------
        >>> import numpy as np
        >>> d = LocalDescriptors.from_sequence([np.zeros((2, 3)), np.ones((4, 3))])
        >>> d.counts.tolist(), d[1].shape, d.in_memory
        ([2, 4], (4, 3), False)
        """
        if len(images) == 0:
            raise ValueError("at least one image's descriptors are required")
        counts = []
        n_features = None
        for i in range(len(images)):
            rows = np.asarray(images[i])
            if rows.ndim != 2:
                raise ValueError(f"descriptors of image {i} must be 2-D, got shape {rows.shape}")
            if n_features is None:
                n_features = rows.shape[1]
            elif rows.shape[1] != n_features:
                raise ValueError(f"all images need the same number of features: image 0 has "
                                 f"{n_features}, image {i} has {rows.shape[1]}")
            counts.append(len(rows))
        counts = np.asarray(counts, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return cls(_SequenceRows(images, counts, n_features), starts, counts,
                   feature_names=feature_names)

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], scales=None, feature_names=None):
        """Build from one 2-D array per image (all with the same number of columns)."""
        arrays = [np.asarray(a) for a in arrays]
        if not arrays:
            raise ValueError("at least one image's descriptors are required")
        for i, a in enumerate(arrays):
            if a.ndim != 2:
                raise ValueError(f"descriptors of image {i} must be 2-D, got shape {a.shape}")
        widths = {a.shape[1] for a in arrays}
        if len(widths) > 1:
            raise ValueError(f"all images need the same number of features, got {sorted(widths)}")
        counts = np.array([len(a) for a in arrays])
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        scales_all = None if scales is None else np.concatenate(scales)
        return cls(np.concatenate(arrays), starts, counts, scales_all, feature_names)

    # -- sizes
    def __len__(self) -> int:
        return len(self.starts)

    @property
    def n_features(self) -> int:
        return self._data.shape[1] if isinstance(self._data, np.ndarray) else self._data.n_features

    @property
    def n_descriptors(self) -> int:
        return int(self.counts.sum())

    @property
    def shape(self) -> tuple[int, ...]:
        # (n_images,): scikit-learn's length checks then see the number of samples.
        return (len(self),)

    @property
    def in_memory(self) -> bool:
        return isinstance(self._data, np.ndarray)

    # -- rows
    @property
    def offsets(self) -> np.ndarray:
        """Row offsets of the images in :attr:`data` (``n_images + 1`` values)."""
        return np.concatenate([[0], np.cumsum(self.counts)])

    @property
    def data(self) -> np.ndarray:
        """All rows, image after image (loads file-backed rows into memory)."""
        if self.in_memory and len(self) and np.array_equal(
            self.starts, self.offsets[:-1] + self.starts[0]
        ):
            return self._data[self.starts[0] : self.starts[0] + self.n_descriptors]
        return np.concatenate([self[i] for i in range(len(self))]) if len(self) else \
            np.zeros((0, self.n_features), np.float32)

    @property
    def scales(self) -> np.ndarray | None:
        """The scale of each row of :attr:`data`."""
        if self._scales is None:
            return None
        return np.concatenate([self._scales[s : s + c] for s, c in zip(self.starts, self.counts)])

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if i < 0:
                i += len(self)
            if not 0 <= i < len(self):
                raise IndexError(f"image index {index} out of range for {len(self)} images")
            start = int(self.starts[i])
            return _read(self._data, start, start + int(self.counts[i]))
        selected = np.arange(len(self))[index]
        return LocalDescriptors(self._data, self.starts[selected], self.counts[selected],
                                self._scales, self.feature_names)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        where = "memory" if self.in_memory else "file"
        return (
            f"LocalDescriptors(n_images={len(self)}, n_descriptors={self.n_descriptors}, "
            f"n_features={self.n_features}, in {where})"
        )


class DescriptorWriter:
    """Collect descriptors image by image; past ``spill_bytes`` they go to a temporary file.

    Parameters
    ----------
    n_features : int
    spill_bytes : int, default=SPILL_BYTES
        Rows kept in memory before moving everything to a file in ``directory``.
    directory : str, optional
        Where the temporary file goes (default: the ``tmp_dir`` setting, see
        :func:`~cnnfeatures.set_config`, or the system's).

    Examples
    --------
    >>> import numpy as np
    >>> w = DescriptorWriter(2)
    >>> w.append(np.ones((3, 2), np.float32)); w.append(np.zeros((1, 2), np.float32))
    >>> w.finish().counts.tolist()
    [3, 1]
    """

    def __init__(self, n_features: int, spill_bytes: int = SPILL_BYTES,
                 directory: str | None = None):
        self.n_features = n_features
        self.spill_bytes = spill_bytes
        self.directory = directory or get_config()["tmp_dir"]
        self._chunks: list[np.ndarray] = []
        self._scales: list[np.ndarray] = []
        self._counts: list[int] = []
        self._bytes = 0
        self._file = None
        self._path: str | None = None

    def append(self, rows: np.ndarray, scales: np.ndarray | None = None) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got {rows.shape}")
        self._counts.append(len(rows))
        if scales is not None:
            self._scales.append(np.asarray(scales, dtype=np.int16))
        if self._file is not None:
            rows.tofile(self._file)
            return
        self._chunks.append(rows)
        self._bytes += rows.nbytes
        if self._bytes > self.spill_bytes:
            fd, self._path = tempfile.mkstemp(prefix="cnnfeatures-descriptors-", suffix=".f32",
                                              dir=self.directory)
            self._file = os.fdopen(fd, "wb")
            for chunk in self._chunks:
                chunk.tofile(self._file)
            self._chunks = []

    def finish(self, feature_names=None) -> LocalDescriptors:
        counts = np.asarray(self._counts, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
        scales = np.concatenate(self._scales) if self._scales else None
        if self._file is not None:
            self._file.close()
            data = _FileRows(self._path, self.n_features, int(counts.sum()))
        else:
            data = (np.concatenate(self._chunks) if self._chunks
                    else np.zeros((0, self.n_features), np.float32))
        return LocalDescriptors(data, starts, counts, scales, feature_names)
