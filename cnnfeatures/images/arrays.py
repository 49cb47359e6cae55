"""Image arrays: any accepted dtype and layout to float32 RGB, and square resizing."""

from __future__ import annotations

import cv2
import numpy as np

from ..messages import warn_once
from .sources import ImageLoadError, LowBitDepthWarning

__all__ = ["check_image_shape", "composite_alpha", "resize_square", "to_rgb_float",
           "widen_to_16_bits"]


def to_rgb_float(array: np.ndarray, name: str = "array image") -> np.ndarray:
    """Convert an image array to float32 RGB ``(H, W, 3)`` on the 0–255 scale.

    Parameters
    ----------
    array : ndarray of shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4)
        ``uint8`` (kept), ``uint16`` (scaled by 255/65535) or floating point on the 0–255
        scale. A last channel after gray (2) or RGB (3) is alpha, composited onto black.
        Float images whose colour values all lie in ``[0, 1]`` (and are not all zero) are
        refused: they look normalised to ``[0, 1]``, and reading them on the 0–255 scale
        would give nearly black images and silently wrong features. So is a float alpha
        channel on ``[0, 1]`` beside colour on 0–255. A ``uint16`` image whose values all
        fit in 12 bits gets a :class:`LowBitDepthWarning` (once per process): it reads
        nearly black on the 16-bit scale.
    name : str
        How to name the image in error messages.

    Returns
    -------
    rgb : ndarray of shape (H, W, 3), dtype float32

    Examples
    --------
    >>> import numpy as np
    >>> to_rgb_float(np.full((2, 2), 65535, dtype=np.uint16))[0, 0]
    array([255., 255., 255.], dtype=float32)
    >>> to_rgb_float(np.full((2, 2), 0.5))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnnfeatures.images.sources.ImageLoadError: array image: float pixels all lie in [0.5, 0.5]: ...
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    check_image_shape(arr, name)
    if arr.dtype == np.uint8:
        scale, max_value = 1.0, 255.0
    elif arr.dtype == np.uint16:
        _check_bit_depth(arr, name)
        scale, max_value = 255.0 / 65535.0, 65535.0
    elif arr.dtype.kind == "f":
        has_alpha = arr.ndim == 3 and arr.shape[2] in (2, 4)
        _check_float_scale(arr[:, :, :-1] if has_alpha else arr, name)
        if has_alpha:
            _check_float_alpha(arr, name)
        scale, max_value = 1.0, 255.0
    else:
        raise ImageLoadError(
            f"{name}: unsupported dtype {arr.dtype}; expected uint8, uint16 or float"
        )
    out = arr.astype(np.float32) * np.float32(scale)
    if out.ndim == 2:
        return np.repeat(out[:, :, None], 3, axis=2)
    if out.shape[2] in (2, 4):  # LA / RGBA: composite onto black
        alpha = arr[:, :, -1].astype(np.float32) / np.float32(max_value)
        color = out[:, :, :-1]
        if color.shape[2] == 1:
            color = np.repeat(color, 3, axis=2)
        return np.ascontiguousarray(color * alpha[:, :, None], dtype=np.float32)
    return out


def check_image_shape(arr: np.ndarray, name: str = "array image") -> None:
    """Refuse, naming the image, an array that is not one image.

    Parameters
    ----------
    arr : ndarray
    name : str
        How to name the image in the message.

    Raises
    ------
    ImageLoadError
        For a shape other than ``(H, W)``, ``(H, W, 1)``, ``(H, W, 2)``, ``(H, W, 3)`` or
        ``(H, W, 4)``, or a zero size.

    Examples
    --------
    >>> import numpy as np
    >>> check_image_shape(np.zeros((2, 3, 4)))
    >>> check_image_shape(np.zeros(5))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnnfeatures.images.sources.ImageLoadError: array image: expected an image of shape ...
    """
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ImageLoadError(
            f"{name}: expected an image of shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or "
            f"(H, W, 4), got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageLoadError(f"{name}: zero-size image (shape {arr.shape})")


def _check_float_scale(arr: np.ndarray, name: str) -> None:
    if not np.isfinite(arr).all():
        raise ImageLoadError(f"{name}: contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 255:
        raise ImageLoadError(
            f"{name}: float pixels must lie in [0, 255] (the scale Keras models expect), "
            f"got values in [{lo:g}, {hi:g}]; rescale first (e.g. multiply [0, 1] images "
            "by 255)"
        )
    if 0 < hi <= 1:
        raise ImageLoadError(
            f"{name}: float pixels all lie in [{lo:g}, {hi:g}]: this looks like an image "
            "scaled to [0, 1], but float images are read on the 0-255 scale; multiply it by "
            "255 (or pass it as uint8, if it really is that dark on the 0-255 scale)"
        )


def _check_float_alpha(arr: np.ndarray, name: str) -> None:
    alpha, color = arr[:, :, -1], arr[:, :, :-1]
    if not np.isfinite(alpha).all():
        raise ImageLoadError(f"{name}: its alpha channel contains NaN or infinite values")
    lo, hi = float(alpha.min()), float(alpha.max())
    if lo < 0 or hi > 255:
        raise ImageLoadError(f"{name}: float alpha must lie in [0, 255] like the colour, got "
                             f"values in [{lo:g}, {hi:g}]")
    if 0 < hi <= 1 and float(color.max()) > 1:  # (all 0: transparent, reads black)
        # Opaque is 1.0 by the float convention, 255 on the scale of the colour: composited
        # as it stands, the image would be 255 times too dark.
        raise ImageLoadError(
            f"{name}: the alpha channel lies in [{lo:g}, {hi:g}] while the colour is on the "
            "0-255 scale; float alpha is read on the colour's scale (255 = opaque): multiply "
            "alpha by 255, or drop it if the image is opaque"
        )


def widen_to_16_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """``bits``-bit values (stored unscaled in a 16-bit container) on the full 16-bit
    range; values above ``2**bits - 1`` (stray high bits) are clipped to it.

    Examples
    --------
    >>> import numpy as np
    >>> widen_to_16_bits(np.array([0, 2048, 4095], np.uint16), 12)
    array([    0, 32776, 65535], dtype=uint16)
    """
    top = (1 << bits) - 1
    return np.rint(np.minimum(values, top) * (65535.0 / top)).astype(np.uint16)


#: A 16-bit image whose maximum is below this fits in 12 bits (4095).
_TWELVE_BITS = 1 << 12


def _check_bit_depth(arr: np.ndarray, name: str) -> None:
    has_alpha = arr.ndim == 3 and arr.shape[2] in (2, 4)
    top = int((arr[:, :, :-1] if has_alpha else arr).max())  # an opaque alpha is 65535
    if 0 < top < _TWELVE_BITS:
        warn_once(
            f"{name}: a 16-bit image whose values all lie in 0-{top} (12 bits or fewer); read "
            f"on the 16-bit scale it is at most {top / 65535:.1%} of full brightness. If the "
            "data are 12-bit detector values stored unscaled, rescale the files to the full "
            "16-bit range (or, for PNG, declare their depth in an sBIT chunk, which is "
            "honoured); CLAHETransformer equalises such images before the network too. Said "
            "once per process; other such images are read the same way.",
            LowBitDepthWarning, stacklevel=4, key="16-bit image within 12 bits")


def composite_alpha(arr: np.ndarray) -> np.ndarray:
    """Composite a trailing alpha channel onto black, keeping an integer image's depth.

    ``(H, W, 2)`` gives ``(H, W)``; ``(H, W, 4)`` gives ``(H, W, 3)``; other shapes are
    returned as they are.
    """
    if arr.ndim != 3 or arr.shape[2] not in (2, 4):
        return arr
    top = np.iinfo(arr.dtype).max
    color = arr[:, :, :-1].astype(np.float64) * (arr[:, :, -1:] / top)
    out = np.rint(color).astype(arr.dtype)
    return out[:, :, 0] if out.shape[2] == 1 else out


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """Resize an ``(H, W, C)`` image to ``(side, side, C)``, ignoring its aspect ratio.

    Squashing (not cropping) follows the report, which feeds whole images of side
    224 + 320·n. Shrinking uses OpenCV's area interpolation (no aliasing), enlarging uses
    bicubic interpolation; the result is clipped to the input's range so bicubic overshoot
    never leaves [0, 255].

    Examples
    --------
    >>> import numpy as np
    >>> resize_square(np.zeros((10, 20, 3), np.float32), 4).shape
    (4, 4, 3)
    """
    if side < 1:
        raise ValueError(f"side must be a positive integer, got {side}")
    h, w = image.shape[:2]
    if (h, w) == (side, side):
        return image
    shrinking = side * side <= h * w
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    out = cv2.resize(image, (side, side), interpolation=interpolation)
    if out.ndim == 2:
        out = out[:, :, None]
    # Bicubic overshoot (and float rounding in area sums) must not leave the input's range.
    return np.clip(out, image.min(), image.max(), out=out)
