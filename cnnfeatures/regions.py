"""RegionCropper: each image cut (or masked) to the region that matters, before the network.

A model learns from whatever separates the classes in its training images, and in medical
sets that is not only the anatomy: a chest X-ray carries side markers, letters, rulers and
the black border of the detector, and their look changes with the hospital and the year —
exactly what differs between a training split and a test split. Cutting the image to the
region of interest keeps those cues out of the picture.

Two classical regions, no training and no extra dependency (OpenCV):

- ``region="foreground"``: Otsu's threshold of the blurred gray image, a morphological
  opening that cuts thin bridges (a marker touching the body), and the largest connected
  component — the thorax in front of an X-ray's dark background (``polarity="bright"``),
  a lesion darker than the skin around it (``polarity="dark"``). ``mode="mask"`` also
  blacks out what lies outside that component's convex hull inside its box.
- ``region="center"``: a centred box keeping ``fraction`` of each side — the borders of
  the picture, where markers and letters sit, leave it.

:func:`region_overlay` draws what a region kept, for checking by eye.
"""

from __future__ import annotations

import warnings
from numbers import Real

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from .images import ImageStepMixin, check_image_sources, map_native_images

__all__ = ["RegionCropper", "RegionWarning", "center_box", "foreground_region",
           "region_overlay"]


class RegionWarning(UserWarning):
    """Images where no region was found and which were kept whole."""


def _gray_uint8(image: np.ndarray) -> np.ndarray:
    """The image's gray levels on 0-255 (16-bit images scaled, not clipped)."""
    gray = image if image.ndim == 2 else image[:, :, :3].mean(axis=2)
    scale = 255.0 / 65535.0 if image.dtype == np.uint16 else 1.0
    return np.clip(np.rint(gray * scale), 0, 255).astype(np.uint8)


def center_box(shape: tuple[int, ...], fraction: float) -> tuple[int, int, int, int]:
    """The centred box keeping ``fraction`` of each side: ``(top, left, bottom, right)``.

    Examples
    --------
    >>> center_box((100, 200), 0.8)
    (10, 20, 90, 180)
    """
    height, width = shape[:2]
    keep_h, keep_w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = (height - keep_h) // 2, (width - keep_w) // 2
    return top, left, top + keep_h, left + keep_w


def foreground_region(image: np.ndarray, polarity: str = "bright", margin: float = 0.02,
                      min_area: float = 0.1) -> tuple[tuple[int, int, int, int],
                                                      np.ndarray] | None:
    """The largest bright (or dark) component of an image, and its box with a margin.

    Parameters
    ----------
    image : ndarray, ``uint8`` or ``uint16``, gray or RGB
    polarity : {"bright", "dark"}, default="bright"
        Whether the region is brighter (a body in front of a dark background) or darker
        (a lesion on skin) than what surrounds it.
    margin : float, default=0.02
        Added around the component's box on each side, as a share of that side.
    min_area : float, default=0.1
        The component must cover at least this share of the image, else ``None``.

    Returns
    -------
    (box, mask) or None
        ``box`` is ``(top, left, bottom, right)``; ``mask`` a boolean image, ``True`` on
        the component's convex hull.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((100, 100), np.uint8)
    >>> image[20:80, 30:60] = 200  # the body
    >>> image[2:6, 90:98] = 255    # a marker in a corner: smaller, left out
    >>> box, mask = foreground_region(image, margin=0.0)
    >>> box, int(mask.sum())
    ((20, 30, 80, 60), 1796)
    """
    gray = cv2.GaussianBlur(_gray_uint8(image), (5, 5), 0)
    flag = cv2.THRESH_BINARY if polarity == "bright" else cv2.THRESH_BINARY_INV
    _, binary = cv2.threshold(gray, 0, 255, flag | cv2.THRESH_OTSU)
    side = max(3, round(min(gray.shape) * 0.02) | 1)  # odd, about 2% of the short side
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN,
                              cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[largest, cv2.CC_STAT_AREA] < min_area * gray.size:
        return None
    # The mask is the component's convex hull: a thorax's dark lungs that open onto the
    # picture's edge are not holes of the bright component, but lie inside its hull.
    points = cv2.findNonZero((labels == largest).astype(np.uint8))
    filled = cv2.fillConvexPoly(np.zeros(gray.shape, np.uint8), cv2.convexHull(points), 1)
    x, y, w, h = (int(v) for v in stats[largest, :4])
    pad_h, pad_w = round(gray.shape[0] * margin), round(gray.shape[1] * margin)
    box = (max(0, y - pad_h), max(0, x - pad_w), min(gray.shape[0], y + h + pad_h),
           min(gray.shape[1], x + w + pad_w))
    return box, filled.astype(bool)


def region_overlay(image: np.ndarray, box: tuple[int, int, int, int],
                   mask: np.ndarray | None = None, dim: float = 0.35) -> np.ndarray:
    """An RGB ``uint8`` picture of what a region keeps: the rest dimmed, the box outlined.

    Examples
    --------
    >>> import numpy as np
    >>> region_overlay(np.full((10, 10), 200, np.uint8), (2, 2, 8, 8))[0, 0].tolist()
    [70, 70, 70]
    """
    gray = _gray_uint8(image) if image.ndim == 2 or image.dtype == np.uint16 else None
    rgb = (np.stack([gray] * 3, axis=2) if gray is not None
           else np.ascontiguousarray(image[:, :, :3]).astype(np.uint8))
    kept = np.zeros(rgb.shape[:2], bool)
    top, left, bottom, right = box
    kept[top:bottom, left:right] = True if mask is None else mask[top:bottom, left:right]
    out = np.where(kept[:, :, None], rgb, np.rint(rgb * dim).astype(np.uint8))
    thickness = max(1, round(min(rgb.shape[:2]) / 150))
    return cv2.rectangle(np.ascontiguousarray(out), (left, top), (right - 1, bottom - 1),
                         (255, 64, 0), thickness)


class RegionCropper(ImageStepMixin, TransformerMixin, BaseEstimator,
                    auto_wrap_output_keys=None):
    """Cut each image to its region of interest (see :mod:`cnnfeatures.regions`).

    Takes image sources and returns image arrays of their own bit depth, ready for the
    next image step (:class:`~cnnfeatures.CNNFeatureExtractor`, which resizes them).
    ``fit`` learns nothing. An image where ``region="foreground"`` finds nothing large
    enough is kept whole, and a :class:`RegionWarning` names it.

    Parameters
    ----------
    region : {"foreground", "center"}, default="foreground"
        The largest bright (or dark) component, or a centred box.
    mode : {"crop", "mask"}, default="crop"
        ``"mask"`` (foreground only) also blacks out what lies outside the component's
        convex hull inside its box (markers, letters, the detector's edge).
    polarity : {"bright", "dark"}, default="bright"
        Foreground: whether the region is brighter or darker than its surroundings.
    margin : float, default=0.02
        Foreground: added around the component's box, as a share of each side.
    min_area : float, default=0.1
        Foreground: the smallest share of the image the component may cover.
    fraction : float, default=0.8
        Center: the share of each side kept.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnfeatures import RegionCropper
    >>> image = np.zeros((64, 64), np.uint8)
    >>> image[8:56, 16:48] = 180
    >>> [out.shape for out in RegionCropper(margin=0).fit_transform([image])]
    [(48, 32)]
    """

    _parameter_constraints: dict = {
        "region": [StrOptions({"foreground", "center"})],
        "mode": [StrOptions({"crop", "mask"})],
        "polarity": [StrOptions({"bright", "dark"})],
        "margin": [Interval(Real, 0, 0.5, closed="left")],
        "min_area": [Interval(Real, 0, 1, closed="both")],
        "fraction": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(self, region: str = "foreground", mode: str = "crop",
                 polarity: str = "bright", margin: float = 0.02, min_area: float = 0.1,
                 fraction: float = 0.8):
        self.region = region
        self.mode = mode
        self.polarity = polarity
        self.margin = margin
        self.min_area = min_area
        self.fraction = fraction

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Validate the parameters; nothing is learnt.

        Returns
        -------
        self : RegionCropper
        """
        self._check_mode()
        return self

    def _check_mode(self) -> None:
        if self.mode == "mask" and self.region != "foreground":
            raise ValueError(f"mode='mask' needs region='foreground' (a centred box has no "
                             f"shape to mask), got region={self.region!r}")

    def _cut(self, image: np.ndarray) -> np.ndarray | None:
        if self.region == "center":
            top, left, bottom, right = center_box(image.shape, self.fraction)
            return image[top:bottom, left:right]
        found = foreground_region(image, self.polarity, self.margin, self.min_area)
        if found is None:
            return None
        (top, left, bottom, right), mask = found
        if self.mode == "mask":
            image = np.where(mask.reshape(mask.shape + (1,) * (image.ndim - 2)), image, 0)
        return image[top:bottom, left:right]

    def transform(self, X) -> list[np.ndarray]:
        """Cut every image to its region.

        Parameters
        ----------
        X : sequence of image sources

        Returns
        -------
        images : list of ndarray
            ``uint8`` or ``uint16`` arrays.
        """
        self._validate_params()  # stateless: transform works without fit
        self._check_mode()
        whole = []

        def cut(image: np.ndarray, name: str) -> np.ndarray:
            region = self._cut(image)
            if region is None:
                whole.append(name)
                return image
            return region

        out = map_native_images(check_image_sources(X), cut)
        if whole:
            warnings.warn(f"RegionCropper: no {self.polarity} region covering at least "
                          f"{self.min_area:.0%} of the image in {len(whole)} of {len(out)} "
                          f"images, kept whole: {', '.join(whole[:5])}"
                          f"{' ...' if len(whole) > 5 else ''}", RegionWarning, stacklevel=2)
        return out
