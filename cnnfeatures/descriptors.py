"""A ragged container of local descriptors: a variable number of rows per image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LocalDescriptors"]


class LocalDescriptors(Sequence):
    """Local descriptors of ``n`` images, stored as one 2-D array and row offsets.

    This is what :class:`~cnnfeatures.CNNFeatureExtractor` returns with ``pooling=None``:
    one row per spatial position of the layer's map, for every scale, image by image.
    Rows of image ``i`` are ``data[offsets[i]:offsets[i + 1]]``; ``scales`` gives the scale
    ``n`` each row comes from. ``descriptors[i]`` is that 2-D array, and indexing with a
    slice, a list or an integer array returns a new ``LocalDescriptors`` of the selected
    images, so scikit-learn's cross-validation can split it.

    Parameters
    ----------
    data : ndarray of shape (n_descriptors, n_features)
    offsets : ndarray of shape (n_images + 1,)
        Non-decreasing, starting at 0 and ending at ``len(data)``.
    scales : ndarray of shape (n_descriptors,), optional
    feature_names : array of str, optional

    Examples
    --------
    >>> import numpy as np
    >>> d = LocalDescriptors.from_arrays([np.zeros((2, 3)), np.ones((4, 3))])
    >>> len(d), d.n_features, d[1].shape, d.counts.tolist()
    (2, 3, (4, 3), [2, 4])
    """

    def __init__(self, data, offsets, scales=None, feature_names=None):
        data = np.asarray(data)
        offsets = np.asarray(offsets, dtype=np.int64)
        if data.ndim != 2:
            raise ValueError(f"data must be 2-D (n_descriptors, n_features), got {data.shape}")
        if (
            offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0
            or offsets[-1] != len(data) or np.any(np.diff(offsets) < 0)
        ):
            raise ValueError(
                "offsets must be non-decreasing, start at 0 and end at len(data)"
            )
        self.data = data
        self.offsets = offsets
        self.scales = None if scales is None else np.asarray(scales)
        self.feature_names = None if feature_names is None else np.asarray(feature_names)

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
            raise ValueError(f"all images need the same number of features, got {widths}")
        offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])])
        scales_all = None if scales is None else np.concatenate(scales)
        return cls(np.concatenate(arrays), offsets, scales_all, feature_names)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_features(self) -> int:
        return self.data.shape[1]

    @property
    def counts(self) -> np.ndarray:
        """Number of descriptors of each image."""
        return np.diff(self.offsets)

    @property
    def shape(self) -> tuple[int, ...]:
        # (n_images,) so that len-based checks in scikit-learn see the number of samples.
        return (len(self),)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if i < 0:
                i += len(self)
            if not 0 <= i < len(self):
                raise IndexError(f"image index {index} out of range for {len(self)} images")
            return self.data[self.offsets[i] : self.offsets[i + 1]]
        indices = np.arange(len(self))[index]
        rows = [np.arange(self.offsets[i], self.offsets[i + 1]) for i in indices]
        rows_all = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        scales = None if self.scales is None else self.scales[rows_all]
        return LocalDescriptors(self.data[rows_all], offsets, scales, self.feature_names)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (
            f"LocalDescriptors(n_images={len(self)}, n_descriptors={len(self.data)}, "
            f"n_features={self.n_features})"
        )
