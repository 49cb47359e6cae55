"""Data augmentation (report §4.6): policies on OpenCV/NumPy and an imbalanced-learn step.

scikit-learn pipelines cannot add samples; imbalanced-learn's can, at fit time only. So
:class:`ImageAugmenter` is a *sampler* (``fit_resample``): inside
``imblearn.pipeline.make_pipeline(ImageAugmenter(...), CNNFeatureExtractor(...), LinearSVC())``
the classifier trains on the originals plus their augmented copies, and ``predict`` sees the
originals only.

:class:`AugmentationPolicy` holds the random transformations themselves; the Keras
estimators reuse it to show a new view of every image at every epoch.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields
from numbers import Integral, Real

import cv2
import numpy as np
from imblearn.base import BaseSampler
from imblearn.utils import check_sampling_strategy
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .images import check_image_sources, image_input_tags, image_name, load_image, transient
from .targets import check_targets

__all__ = ["AUGMENTATION_SETTINGS", "AugmentationPolicy", "ImageAugmenter", "augmentation_grid"]


def _setting(default, constraint, help_text: str):
    """A transformation setting, declared once: its default, its scikit-learn parameter
    constraint and its help text serve the policy, ImageAugmenter and the CLI alike."""
    return field(default=default, metadata={"constraint": constraint, "help": help_text})


@dataclass(frozen=True)
class AugmentationPolicy:
    """Random label-preserving transformations of a float32 RGB image (0–255).

    Each call draws new parameters from ``rng``. Geometric changes are composed into one
    affine warp (reflected borders, so no black corners appear), then the optional elastic
    distortion, then photometric changes; the result is clipped to [0, 255].

    Parameters
    ----------
    horizontal_flip, vertical_flip : bool
        Flip with probability 1/2.
    rotation : float
        Maximum rotation in degrees (uniform in ±rotation).
    zoom : float
        Scale drawn uniformly in ``[1 - zoom, 1 + zoom]`` (> 1 zooms in).
    shift : float
        Maximum translation, as a fraction of the side.
    shear : float
        Maximum shear angle in degrees.
    crop : float
        Crop a random window whose sides are at least ``1 - crop`` of the image's, then
        resize it back (0 disables).
    brightness : float
        Add a uniform offset in ``±brightness × 255``.
    contrast : float
        Scale deviations from the image mean by a factor in ``[1 - contrast, 1 + contrast]``.
    gamma : float
        Apply ``255 (x / 255) ** g`` with ``log g`` uniform in ``±gamma``.
    elastic_alpha, elastic_sigma : float
        Elastic distortion (Simard et al. 2003): a random displacement field smoothed by a
        Gaussian of ``elastic_sigma`` pixels, scaled to ``elastic_alpha`` pixels (0 disables).

    Examples
    --------
    >>> import numpy as np
    >>> policy = AugmentationPolicy(rotation=10, brightness=0.1)
    >>> out = policy(np.full((32, 32, 3), 100, np.float32), np.random.RandomState(0))
    >>> out.shape, out.dtype
    ((32, 32, 3), dtype('float32'))
    """

    horizontal_flip: bool = _setting(True, "boolean", "flip left-right with probability 1/2")
    vertical_flip: bool = _setting(False, "boolean", "flip upside down with probability 1/2")
    rotation: float = _setting(15.0, Interval(Real, 0, 180, closed="both"),
                               "maximum rotation in degrees")
    zoom: float = _setting(0.1, Interval(Real, 0, 1, closed="left"),
                           "scale drawn in [1 - zoom, 1 + zoom]")
    shift: float = _setting(0.05, Interval(Real, 0, 1, closed="left"),
                            "maximum translation, as a fraction of the side")
    shear: float = _setting(0.0, Interval(Real, 0, 89, closed="both"),
                            "maximum shear angle in degrees")
    crop: float = _setting(0.0, Interval(Real, 0, 1, closed="left"),
                           "random crop keeping at least 1 - crop of each side (0: off)")
    brightness: float = _setting(0.1, Interval(Real, 0, 1, closed="both"),
                                 "offset up to +-brightness x 255")
    contrast: float = _setting(0.1, Interval(Real, 0, 1, closed="both"),
                               "contrast factor in [1 - contrast, 1 + contrast]")
    gamma: float = _setting(0.0, Interval(Real, 0, None, closed="left"),
                            "gamma with log g in +-gamma (0: off)")
    elastic_alpha: float = _setting(0.0, Interval(Real, 0, None, closed="left"),
                                    "elastic distortion in pixels (0: off)")
    elastic_sigma: float = _setting(6.0, Interval(Real, 0, None, closed="neither"),
                                    "smoothness of the elastic field, in pixels")

    def __call__(self, image: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        out = np.asarray(image, dtype=np.float32)
        if self.horizontal_flip and rng.rand() < 0.5:
            out = out[:, ::-1]
        if self.vertical_flip and rng.rand() < 0.5:
            out = out[::-1]
        out = self._crop(out, rng)
        out = self._affine(out, rng)
        out = self._elastic(out, rng)
        return self._photometric(out, rng)

    def _crop(self, image, rng):
        if self.crop <= 0:
            return image
        h, w = image.shape[:2]
        ch = max(1, int(round(h * rng.uniform(1 - self.crop, 1))))
        cw = max(1, int(round(w * rng.uniform(1 - self.crop, 1))))
        top, left = rng.randint(0, h - ch + 1), rng.randint(0, w - cw + 1)
        window = np.ascontiguousarray(image[top : top + ch, left : left + cw])
        return cv2.resize(window, (w, h), interpolation=cv2.INTER_LINEAR)

    def _affine(self, image, rng):
        angle = rng.uniform(-self.rotation, self.rotation) if self.rotation else 0.0
        scale = rng.uniform(1 - self.zoom, 1 + self.zoom) if self.zoom else 1.0
        shear = math.radians(rng.uniform(-self.shear, self.shear)) if self.shear else 0.0
        h, w = image.shape[:2]
        tx = rng.uniform(-self.shift, self.shift) * w if self.shift else 0.0
        ty = rng.uniform(-self.shift, self.shift) * h if self.shift else 0.0
        if angle == 0 and scale == 1 and shear == 0 and tx == 0 and ty == 0:
            return np.ascontiguousarray(image)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        # Shear about the centre: x' = x + tan(shear) * (y - cy).
        shear_m = np.array([[1, math.tan(shear), -math.tan(shear) * h / 2], [0, 1, 0],
                            [0, 0, 1]])
        matrix = (np.vstack([matrix, [0, 0, 1]]) @ shear_m)[:2]
        matrix[:, 2] += (tx, ty)
        return cv2.warpAffine(np.ascontiguousarray(image), matrix, (w, h),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    def _elastic(self, image, rng):
        if self.elastic_alpha <= 0:
            return image
        h, w = image.shape[:2]
        fields = []
        for _ in range(2):
            noise = rng.uniform(-1, 1, (h, w)).astype(np.float32)
            smooth = cv2.GaussianBlur(noise, (0, 0), self.elastic_sigma)
            peak = float(np.abs(smooth).max()) or 1.0
            fields.append(smooth / peak * self.elastic_alpha)
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32),
                                     np.arange(h, dtype=np.float32))
        return cv2.remap(image, grid_x + fields[0], grid_y + fields[1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)

    def _photometric(self, image, rng):
        out = image
        if self.contrast:
            factor = rng.uniform(1 - self.contrast, 1 + self.contrast)
            mean = out.mean(axis=(0, 1), keepdims=True)
            out = (out - mean) * factor + mean
        if self.brightness:
            out = out + rng.uniform(-self.brightness, self.brightness) * 255.0
        out = np.clip(out, 0.0, 255.0)
        if self.gamma:
            g = math.exp(rng.uniform(-self.gamma, self.gamma))
            out = 255.0 * (out / 255.0) ** g
        return out.astype(np.float32, copy=False)


#: The transformation settings, in order: (name, default, constraint, help), declared once
#: in AugmentationPolicy's fields.
AUGMENTATION_SETTINGS = tuple(
    (f.name, f.default, f.metadata["constraint"], f.metadata["help"])
    for f in fields(AugmentationPolicy)
)
_POLICY_FIELDS = tuple(name for name, *_ in AUGMENTATION_SETTINGS)


class ImageAugmenter(BaseSampler):
    """Add augmented copies of the training images, at fit time only (an imblearn sampler).

    Every transformation of :class:`AugmentationPolicy` is a parameter of its own, so a
    grid search can tune them. ``fit_resample(X, y)`` returns the originals followed by
    ``n_copies`` augmented copies of each (and, with ``balance=True``, extra copies of
    minority-class images as imbalanced-learn's ``sampling_strategy`` asks: by default
    until every class has as many images as the largest). Copies are ``uint8`` RGB images
    marked transient (:class:`~cnnfeatures.images.TransientImage`), so the extractor's
    cache does not keep them.

    It goes in an imbalanced-learn pipeline (``imblearn.pipeline.make_pipeline``), whose
    samplers act at fit time only; in scikit-learn's ``Pipeline``, which cannot add
    samples, fitting is an error that says so.

    Parameters
    ----------
    n_copies : int, default=1
        Augmented copies per image (0: none, e.g. to balance only).
    balance : bool, default=False
        Oversample classes with augmented copies (an image oversampler: new views instead
        of repeated images), by ``sampling_strategy``.
    horizontal_flip, vertical_flip, rotation, zoom, shift, shear, crop, brightness, \
contrast, gamma, elastic_alpha, elastic_sigma
        See :class:`AugmentationPolicy` (keyword only).
    sampling_strategy : str, float, dict or callable, default="auto"
        With ``balance=True``: how many images each class gets, as imbalanced-learn's
        over-samplers read it (``"auto"``: every class up to the majority's count).
    random_state : int, RandomState or None, default=None

    Attributes
    ----------
    sample_indices_ : ndarray of shape (n_samples_resampled,)
        Index in ``X`` of the image each output sample comes from.
    sampling_strategy_ : dict
        Images added per class by balancing, per original image set (before copies).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnfeatures import ImageAugmenter
    >>> X = np.zeros((3, 16, 16, 3), np.uint8)
    >>> X_res, y_res = ImageAugmenter(n_copies=2, random_state=0).fit_resample(X, [0, 1, 1])
    >>> len(X_res), y_res.tolist()
    (9, [0, 1, 1, 0, 1, 1, 0, 1, 1])
    """

    _sampling_type = "over-sampling"

    _parameter_constraints: dict = {
        "n_copies": [Interval(Integral, 0, None, closed="left")],
        "balance": ["boolean"],
        **{name: [constraint] for name, _, constraint, _ in AUGMENTATION_SETTINGS},
        "sampling_strategy": [Interval(Real, 0, 1, closed="right"),
                              StrOptions({"auto", "minority", "not minority", "not majority",
                                          "all"}), dict, callable],
        "random_state": ["random_state"],
    }

    # The transformations' defaults are AugmentationPolicy's (a test holds them equal).
    def __init__(self, n_copies: int = 1, balance: bool = False, *,
                 horizontal_flip: bool = True, vertical_flip: bool = False,
                 rotation: float = 15.0, zoom: float = 0.1, shift: float = 0.05,
                 shear: float = 0.0, crop: float = 0.0, brightness: float = 0.1,
                 contrast: float = 0.1, gamma: float = 0.0, elastic_alpha: float = 0.0,
                 elastic_sigma: float = 6.0, sampling_strategy="auto", random_state=None):
        super().__init__(sampling_strategy=sampling_strategy)
        self.n_copies = n_copies
        self.balance = balance
        self.horizontal_flip, self.vertical_flip = horizontal_flip, vertical_flip
        self.rotation, self.zoom, self.shift, self.shear = rotation, zoom, shift, shear
        self.crop, self.brightness, self.contrast = crop, brightness, contrast
        self.gamma, self.elastic_alpha, self.elastic_sigma = gamma, elastic_alpha, elastic_sigma
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = image_input_tags(super().__sklearn_tags__())
        tags.input_tags.sparse = False
        tags.target_tags.required = True
        return tags

    @property
    def policy(self) -> AugmentationPolicy:
        """The :class:`AugmentationPolicy` these parameters describe."""
        return AugmentationPolicy(**{f: getattr(self, f) for f in _POLICY_FIELDS})

    def _check_X_y(self, X, y, accept_sparse=None):
        sources = check_image_sources(X)
        return sources, check_targets(y, len(sources)), False

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_resample(self, X, y, **params):
        """Return the originals and their augmented copies, with their labels.

        Parameters
        ----------
        X : sequence of image sources
        y : array-like of shape (n_images,)

        Returns
        -------
        X_resampled : list
            The original sources (unchanged), then ``uint8`` RGB copies.
        y_resampled : ndarray
        """
        sources, y, _ = self._check_X_y(X, y)
        self.sampling_strategy_ = check_sampling_strategy(self.sampling_strategy, y,
                                                          self._sampling_type)
        return self._fit_resample(sources, y)

    def _fit_resample(self, X, y):
        rng = check_random_state(self.random_state)
        copies = np.tile(np.arange(len(X)), self.n_copies)
        if self.balance:
            copies = np.concatenate([copies, self._balancing(y, rng)])
        policy = self.policy
        augmented = [
            transient(np.rint(policy(load_image(X[i], name=image_name(X[i], i)), rng))
                      .astype(np.uint8))
            for i in copies
        ]
        self.sample_indices_ = np.concatenate([np.arange(len(X)), copies]).astype(int)
        return list(X) + augmented, y[self.sample_indices_]

    @property
    def transform(self):
        """Not a transformer: used in scikit-learn's ``Pipeline``, a clear error at fit.

        scikit-learn's ``Pipeline`` accepts a step that has ``transform`` and then calls
        it on every step but the last, where an augmenter cannot act (samples are added
        at fit time only); imbalanced-learn's pipeline refuses a step that has both
        ``transform`` and ``fit_resample``. So the attribute exists for everyone but
        imbalanced-learn, and calling it raises an error that says which pipeline to use.
        """
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.split(".")[0] == "imblearn":
            raise AttributeError("ImageAugmenter is a sampler: it has no transform")
        return self._refuse_transform

    @staticmethod
    def _refuse_transform(X=None):
        raise TypeError(
            "ImageAugmenter adds augmented images at fit time, which scikit-learn's "
            "Pipeline cannot do: build the pipeline with imblearn.pipeline.make_pipeline "
            "(same signature) instead of sklearn.pipeline.make_pipeline"
        )

    def _balancing(self, y, rng) -> np.ndarray:
        """Indices of the images to copy so that each class gets ``sampling_strategy_``'s
        count, scaled by the ``n_copies + 1`` views every image already has."""
        extra = []
        for label, need in self.sampling_strategy_.items():
            need = int(need) * (self.n_copies + 1)
            members = np.flatnonzero(y == label)
            if need == 0 or len(members) == 0:
                continue
            # Cycle through the class in a random order: every image is copied before any
            # is copied twice.
            order = np.concatenate([rng.permutation(members)
                                    for _ in range(-(-need // len(members)))])
            extra.append(order[:need].astype(int))
        return np.concatenate(extra) if extra else np.zeros(0, dtype=int)


def augmentation_grid(image, augmenter: ImageAugmenter | AugmentationPolicy | None = None,
                      n: int = 8, columns: int = 4, side: int = 224,
                      random_state=None) -> np.ndarray:
    """A picture of ``n`` augmented views of one image beside the original (Figures 34–35).

    Returns
    -------
    grid : ndarray of uint8, shape (rows × side, columns × side, 3)
        The original first, then the views, left to right and top to bottom.
    """
    policy = augmenter.policy if isinstance(augmenter, ImageAugmenter) else (
        augmenter or AugmentationPolicy())
    rng = check_random_state(random_state)
    original = load_image(image)
    tiles = [original] + [policy(original, rng) for _ in range(n)]
    rows = -(-len(tiles) // columns)
    grid = np.zeros((rows * side, columns * side, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        small = cv2.resize(tile, (side, side), interpolation=cv2.INTER_AREA)
        grid[r * side : (r + 1) * side, c * side : (c + 1) * side] = np.rint(small)
    return grid
