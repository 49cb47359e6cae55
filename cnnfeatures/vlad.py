"""VLADEncoder: PCA + k-means + VLAD aggregation of local descriptors, in bounded memory."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import pairwise_distances_argmin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array, check_is_fitted

from .descriptors import LocalDescriptors

__all__ = ["VLADEncoder"]


def _is_image_sequence(X) -> bool:
    """A sequence (list, tuple, or lazy) whose first item is a 2-D array: one per image."""
    if isinstance(X, np.ndarray) or hasattr(X, "columns") or not hasattr(X, "__len__"):
        return False
    try:
        first = X[0] if len(X) else None
    except (TypeError, KeyError, IndexError):
        return False
    return isinstance(first, np.ndarray) and first.ndim == 2


def as_local_descriptors(X, name: str = "X") -> LocalDescriptors:
    """Accept LocalDescriptors, a sequence of 2-D arrays (one per image), or a 2-D array.

    A sequence of per-image arrays — a list, or any object with ``len`` and indexing that
    builds them on demand — is wrapped without copying (see
    :meth:`LocalDescriptors.from_sequence`), so memory stays bounded however large it is.
    A 2-D numeric array is read as one descriptor per image (a degenerate but valid case
    that lets scikit-learn's estimator checks run on VLADEncoder); a 3-D array as images
    with the same number of descriptors.
    """
    if isinstance(X, LocalDescriptors):
        return X
    if _is_image_sequence(X):
        return LocalDescriptors.from_sequence(X)
    # Anything else array-like (an ndarray, a DataFrame, nested lists). check_array gives
    # scikit-learn's own messages for 1-D, complex, NaN and empty input.
    arr = check_array(X, dtype=[np.float32, np.float64], allow_nd=True, input_name=name)
    if arr.ndim == 2:  # one descriptor per image
        return LocalDescriptors(arr, np.arange(len(arr)), np.ones(len(arr), dtype=np.int64))
    if arr.ndim == 3:  # images with the same number of descriptors
        return LocalDescriptors.from_arrays(list(arr))
    raise ValueError(
        f"{name}: expected local descriptors (LocalDescriptors, a list of 2-D arrays, or "
        f"a 2-D/3-D array), got an array of shape {arr.shape}"
    )


def _vlad(x: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Sum of residuals x - c over the descriptors assigned to each centre: (k, d)."""
    k = len(centers)
    onehot = np.zeros((len(x), k), dtype=np.float32)
    onehot[np.arange(len(x)), labels] = 1.0
    sums = onehot.T @ x
    return sums - onehot.sum(axis=0)[:, None] * centers


class VLADEncoder(TransformerMixin, BaseEstimator):
    """Vector of Locally Aggregated Descriptors of each image (report §4.2, Tables 5–7).

    ``fit`` learns a PCA (optional) and ``k`` centres from a seeded random subsample of at
    most ``max_fit_descriptors`` descriptors; ``transform`` assigns each descriptor of an
    image to its nearest centre and sums the residuals ``x - c`` per centre, giving a
    ``k × d`` vector per image, normalised as asked.

    Parameters
    ----------
    k : int, default=64
        Number of k-means centres (visual words).
    pca_components : int or None, default=128
        Dimensions kept by PCA before clustering; None skips PCA.
    power_normalize : bool, default=False
        Signed square root of every component (Jégou et al.; Arandjelović & Zisserman).
    intra_normalize : bool, default=False
        L2-normalise each centre's residual sum before the rest ("All about VLAD", 2013):
        bursty descriptors then cannot dominate one centre.
    l2_normalize : bool, default=True
        Final L2 normalisation of the whole vector (the report's variant with the defaults).
    max_fit_descriptors : int, default=100_000
        Bound on the descriptors used by ``fit`` (drawn uniformly over all images).
    batch_size : int, default=64
        Images encoded at a time by ``transform``.
    random_state : int, RandomState or None, default=None
        Seeds the subsample, PCA and k-means; the same seed gives the same output.

    Attributes
    ----------
    pca_ : PCA or None
    cluster_centers_ : ndarray of shape (k, d)
        Centres in the (PCA-reduced) descriptor space.
    n_features_in_ : int
        Width of the input descriptors.
    n_fit_descriptors_ : int
        Descriptors used by ``fit``.

    Notes
    -----
    Memory: ``fit`` holds at most ``max_fit_descriptors × n_features_in_`` float32 values
    (205 MB for 100,000 descriptors of 512) plus their PCA projection; ``transform`` holds
    ``batch_size`` images' descriptors and the output (``n_images × k × d`` float32). Neither
    depends on the total number of descriptors, which stay wherever the input keeps them
    (:class:`~cnnfeatures.LocalDescriptors` moves large sets to a file).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnfeatures import VLADEncoder
    >>> rng = np.random.default_rng(0)
    >>> images = [rng.normal(size=(50, 8)) for _ in range(4)]
    >>> vlad = VLADEncoder(k=3, pca_components=4, random_state=0).fit(images)
    >>> vlad.transform(images).shape
    (4, 12)
    """

    _parameter_constraints: dict = {
        "k": [Interval(Integral, 1, None, closed="left")],
        "pca_components": [Interval(Integral, 1, None, closed="left"), None],
        "power_normalize": ["boolean"],
        "intra_normalize": ["boolean"],
        "l2_normalize": ["boolean"],
        "max_fit_descriptors": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        k: int = 64,
        pca_components: int | None = 128,
        power_normalize: bool = False,
        intra_normalize: bool = False,
        l2_normalize: bool = True,
        max_fit_descriptors: int = 100_000,
        batch_size: int = 64,
        random_state=None,
    ):
        self.k = k
        self.pca_components = pca_components
        self.power_normalize = power_normalize
        self.intra_normalize = intra_normalize
        self.l2_normalize = l2_normalize
        self.max_fit_descriptors = max_fit_descriptors
        self.batch_size = batch_size
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _check_input(self, X, reset: bool) -> LocalDescriptors:
        descriptors = as_local_descriptors(X)
        if len(descriptors) == 0:
            raise ValueError("X holds no image")
        empty = np.flatnonzero(descriptors.counts == 0)
        if len(empty):
            raise ValueError(
                f"image(s) {empty[:10].tolist()} of X have no local descriptors; VLAD needs "
                "at least one per image"
            )
        if reset:
            self.n_features_in_ = descriptors.n_features
        elif descriptors.n_features != self.n_features_in_:
            raise ValueError(
                f"X has {descriptors.n_features} features, but VLADEncoder is expecting "
                f"{self.n_features_in_} features as input (per descriptor)"
            )
        return descriptors

    def _sample(self, descriptors: LocalDescriptors, rng) -> np.ndarray:
        """A uniform random subsample of the rows, read image by image."""
        total = descriptors.n_descriptors
        n = min(total, self.max_fit_descriptors)
        chosen = np.sort(rng.choice(total, size=n, replace=False))
        offsets = descriptors.offsets
        owner = np.searchsorted(offsets, chosen, side="right") - 1
        parts = []
        for i in np.unique(owner):
            rows = descriptors[int(i)]
            parts.append(rows[chosen[owner == i] - offsets[i]])
        sample = check_array(np.concatenate(parts), dtype=[np.float32, np.float64],
                             input_name="X descriptors")
        return sample.astype(np.float32, copy=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn the PCA and the k centres from a bounded subsample of descriptors.

        Parameters
        ----------
        X : LocalDescriptors, list of 2-D arrays, or 2-D array
            Local descriptors per image (a 2-D array is one descriptor per image).
        y : ignored

        Returns
        -------
        self : VLADEncoder
        """
        descriptors = self._check_input(X, reset=True)
        rng = check_random_state(self.random_state)
        sample = self._sample(descriptors, rng)
        self.n_fit_descriptors_ = len(sample)
        self.pca_ = None
        if self.pca_components is not None:
            limit = min(sample.shape)
            if self.pca_components > limit:
                raise ValueError(
                    f"pca_components={self.pca_components} must be <= min(n_descriptors, "
                    f"n_features) = {limit} of the fitted descriptors"
                )
            self.pca_ = PCA(self.pca_components, random_state=rng.randint(2**31 - 1))
            sample = self.pca_.fit_transform(sample).astype(np.float32)
        if self.k > len(sample):
            raise ValueError(
                f"k={self.k} centres need at least {self.k} descriptors; X has {len(sample)}"
                f" (one sample has only as many descriptors as its image has positions)"
            )
        kmeans = KMeans(self.k, n_init=1, random_state=rng.randint(2**31 - 1)).fit(sample)
        self.cluster_centers_ = kmeans.cluster_centers_.astype(np.float32)
        self.inertia_ = float(kmeans.inertia_)
        return self

    def _project(self, rows: np.ndarray) -> np.ndarray:
        rows = check_array(rows, dtype=[np.float32, np.float64], input_name="X descriptors")
        rows = rows.astype(np.float32, copy=False)
        if self.pca_ is not None:
            rows = self.pca_.transform(rows).astype(np.float32)
        return rows

    def _encode_batch(self, images: list[np.ndarray]) -> np.ndarray:
        """VLAD vectors of a few images: one PCA and one assignment call for all rows."""
        x = self._project(np.concatenate(images))
        labels = pairwise_distances_argmin(x, self.cluster_centers_)
        bounds = np.cumsum([0] + [len(a) for a in images])
        out = np.empty((len(images), self.cluster_centers_.size), dtype=np.float32)
        for j in range(len(images)):
            lo, hi = bounds[j], bounds[j + 1]
            v = _vlad(x[lo:hi], labels[lo:hi], self.cluster_centers_)
            if self.intra_normalize:
                v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            if self.power_normalize:
                v = np.sign(v) * np.sqrt(np.abs(v))
            v = v.ravel()
            if self.l2_normalize:
                v /= max(float(np.linalg.norm(v)), 1e-12)
            out[j] = v
        return out

    def transform(self, X) -> np.ndarray:
        """VLAD vector of each image.

        Parameters
        ----------
        X : LocalDescriptors, list of 2-D arrays, or 2-D array

        Returns
        -------
        vlad : ndarray of shape (n_images, k * d), float32
            ``d`` is ``pca_components`` (or the descriptor width without PCA); the vector
            lists centre 0's residual sum, then centre 1's, and so on.
        """
        check_is_fitted(self, "cluster_centers_")
        descriptors = self._check_input(X, reset=False)
        out = np.empty((len(descriptors), self.cluster_centers_.size), dtype=np.float32)
        for start in range(0, len(descriptors), self.batch_size):
            stop = min(len(descriptors), start + self.batch_size)
            out[start:stop] = self._encode_batch([descriptors[i] for i in range(start, stop)])
        return out

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """``vlad_c<centre>_<dimension>`` for each output column."""
        check_is_fitted(self, "cluster_centers_")
        k, d = self.cluster_centers_.shape
        return np.asarray([f"vlad_c{c}_{j}" for c in range(k) for j in range(d)], dtype=object)
