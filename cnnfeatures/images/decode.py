"""Decoding files: Pillow for every mode and format, OpenCV where Pillow loses bits, DICOM.

Pillow represents 16-bit *colour* PNG and TIFF files as 8-bit RGB (the low byte is
dropped), so those go through OpenCV, which keeps 16 bits. Every Pillow mode is first
brought to one of a few (``L``, ``LA``, ``RGB``, ``RGBA``, ``I``, ``F``) that keep the
file's depth and that the rest of the code — Pillow's fast ``reduce`` included — handles.
"""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .arrays import (
    check_image_shape,
    composite_alpha,
    resize_square,
    to_rgb_float,
    widen_to_16_bits,
)
from .dicom import NotDicomError, has_dicom_marker, load_dicom
from .sources import ImageLoadError, ImageSource, pixels, read_image_bytes

__all__ = ["decode_native", "load_image", "load_image_native"]

_DICOM_SUFFIXES = (".dcm", ".dicom")

# Pillow mode -> the mode it is converted to before anything else. Modes absent here are
# kept (L, LA, RGB, RGBA, I, F).
_MODE_TARGET = {
    "1": "L",
    "PA": "RGBA",
    "La": "LA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
    "I;16": "I",
    "I;16L": "I",
    "I;16B": "I",
    "I;16N": "I",
}
_KEPT_MODES = frozenset({"L", "LA", "RGB", "RGBA", "I", "F"})


def _normalise_mode(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("L", "RGB", "P") and "transparency" in img.info:
        # A tRNS colour key (gray, RGB or palette entries): made an alpha channel, so that
        # transparent pixels are composited like those of any other image with alpha.
        return img.convert("LA" if mode == "L" else "RGBA")
    if mode in _KEPT_MODES:
        return img
    if mode == "P":
        return img.convert("RGB")
    return img.convert(_MODE_TARGET.get(mode, "RGB"))


def _check_one_frame(name: str, img: Image.Image) -> None:
    """One image per file: a multi-page TIFF or an animation is refused, not cut to its
    first frame. Two exceptions read as their first frame: camera MPO files (the others are
    previews or a stereo pair's second eye) and TIFF files whose later pages are all smaller
    than the first (a pyramid or thumbnails of it, as scanners and slide formats write)."""
    frames = getattr(img, "n_frames", 1)
    if frames <= 1 or img.format == "MPO":
        return
    if img.format == "TIFF" and _later_pages_smaller(img, frames):
        return
    raise ImageLoadError(
        f"{name}: a {img.format} file of {frames} frames (pages or an animation); "
        "cnnfeatures reads one image per file: save each frame you want as its own file"
    )


def _later_pages_smaller(img: Image.Image, frames: int) -> bool:
    """Whether every page after a TIFF's first is smaller than it (read from the page
    headers only; stops at the first that is not)."""
    width, height = img.size
    try:
        for page in range(1, frames):
            img.seek(page)
            if img.width >= width or img.height >= height:
                return False
    finally:
        img.seek(0)
    return True


def _png_significant_bits(data: bytes) -> tuple[int, ...] | None:
    """The bit counts a PNG's sBIT chunk declares, one per channel, or None."""
    pos = 8  # after the signature: chunks of length, type, data, CRC; sBIT precedes IDAT
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"sBIT":
            return tuple(data[pos + 8:pos + 8 + length]) or None
        if kind in (b"IDAT", b"IEND"):
            return None
        pos += 12 + length
    return None


def _expand_significant_bits(arr: np.ndarray, data: bytes, img: Image.Image) -> np.ndarray:
    """Scale up the channels of a 16-bit PNG that hold unscaled ``b``-bit data, ``b`` < 16
    declared by its sBIT chunk (12-bit detector values, typically).

    The PNG rule is that an encoder scales ``b``-bit samples up to 16 bits itself (a shift,
    or a shift with the high bits replicated), which leaves the low ``16 - b`` bits of any
    value below ``2**b`` at zero. So a channel is taken as unscaled only when its values all
    fit in ``b`` bits *and* some have low bits set; a dark image that followed the rule is
    left as it is."""
    if arr.dtype != np.uint16 or img.format != "PNG":
        return arr
    bits = _png_significant_bits(data)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if bits is None or len(bits) != channels:
        return arr
    out = arr if arr.ndim == 3 else arr[:, :, None]
    scaled = None
    for c, b in enumerate(bits):
        if not 1 <= b < 16:
            continue
        channel = out[:, :, c]
        if int(channel.max()) >= 1 << b or not (channel & ((1 << (16 - b)) - 1)).any():
            continue
        if scaled is None:
            scaled = out.copy()
        scaled[:, :, c] = widen_to_16_bits(channel, b)
    if scaled is None:
        return arr
    return scaled if arr.ndim == 3 else scaled[:, :, 0]


#: EXIF orientation -> the NumPy operation that shows the image as a viewer does (the
#: transposition Pillow's ``ImageOps.exif_transpose`` applies for the same tag).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _orient(arr: np.ndarray, img: Image.Image, data: bytes) -> np.ndarray:
    """Apply the EXIF orientation tag to an array OpenCV decoded (OpenCV's unchanged
    read ignores it)."""
    if img.format == "PNG" and b"eXIf" not in data:
        return arr  # no EXIF; asking Pillow would decode the whole image to look for one
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not hide the pixels, as in _decode_pillow
        return arr
    turn = _ORIENT.get(orientation)
    return arr if turn is None else np.ascontiguousarray(turn(arr))


def _is_deep_colour(img: Image.Image, data: bytes) -> bool:
    """A 16-bit colour (or gray + alpha) PNG/TIFF, which Pillow would cut to 8 bits."""
    if img.format == "PNG" and len(data) > 25:
        # IHDR follows the 8-byte signature: length, type, width, height, depth, colour.
        depth, colour_type = data[24], data[25]
        return depth == 16 and colour_type in (2, 4, 6)
    if img.format == "TIFF":
        bits = getattr(img, "tag_v2", {}).get(258)
        bits = tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)
        return len(bits) > 1 and max(b or 0 for b in bits) > 8
    return False


def _decode_deep_colour(name: str, data: bytes, img: Image.Image) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageLoadError(f"{name}: truncated or corrupt 16-bit colour image data")
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return _orient(arr, img, data)


def _open(name: str, data: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image (Pillow cannot identify its format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            f"{name}: declared size is too large ({exc}); Pillow's decompression-bomb guard "
            "refuses it. Raise PIL.Image.MAX_IMAGE_PIXELS only for files you trust."
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{name}: truncated or corrupt image header ({exc})") from None
    if img.width == 0 or img.height == 0:
        raise ImageLoadError(f"{name}: zero-size image ({img.width}x{img.height})")
    return img


def _decode_pillow(name: str, img: Image.Image, target_side: int | None) -> np.ndarray:
    if target_side is not None and img.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is much smaller: a
        # large photo then costs a fraction of the memory and time. The result stays at
        # least as large as asked, so the final resize only ever shrinks it.
        img.draft(img.mode, (target_side, target_side))
    stored_mode = img.mode
    # A 16-bit gray tRNS key: Pillow's conversion to I drops it, so it becomes alpha below.
    key = img.info.get("transparency") if stored_mode.startswith("I;16") else None
    # Read before the transformations below, whose copies keep neither format nor tags.
    stores_int32 = stored_mode == "I" and img.format == "TIFF" and max(
        np.atleast_1d(getattr(img, "tag_v2", {}).get(258, 0))) > 16
    try:
        img.load()
        img = _normalise_mode(img)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name}: declared size is too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{name}: truncated or corrupt image data ({exc})") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not hide the pixels; orientation stays as stored
        pass
    if target_side is not None and img.format != "JPEG" and key is None:
        # Other formats cannot decode reduced; shrink by an integer factor right away so the
        # float conversion below never holds a huge image. Every normalised mode reduces.
        # (Not with a colour key: averaged pixels would no longer match it.)
        factor = min(img.width, img.height) // (2 * target_side)
        if factor >= 2:
            img = img.reduce(factor)
    arr = _pil_to_array(img, name, stored_mode, stores_int32)
    if isinstance(key, int) and arr.dtype == np.uint16 and arr.ndim == 2:
        alpha = np.where(arr == key, 0, 65535).astype(np.uint16)
        arr = np.dstack([arr, alpha])
    return arr


def _pil_to_array(img: Image.Image, name: str, stored_mode: str,
                  stores_int32: bool) -> np.ndarray:
    arr = np.asarray(img)
    if img.mode == "I":
        # Pillow's 32-bit integer mode, which 16-bit gray files are brought to. A file that
        # stores 32-bit integers carries no scale: values above 255 can only be on the
        # 16-bit one, but 0-240 may be an 8-bit image as well as a dark 16-bit one.
        top = int(arr.max()) if arr.size else 0
        if stores_int32 and 0 < top <= 255 and int(arr.min()) >= 0:
            raise ImageLoadError(
                f"{name}: 32-bit integer pixels all in [{int(arr.min())}, {top}]: on the "
                "8-bit scale, or a dark image on the 16-bit one? Save it as 8-bit or 16-bit "
                "unsigned integers (or pass a uint8/uint16 array) so that its scale is known"
            )
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageLoadError(
                f"{name}: integer pixels (Pillow mode {stored_mode}) in "
                f"[{int(arr.min())}, {int(arr.max())}]; expected unsigned 8- or 16-bit values "
                "(0-65535): convert it first"
            )
        arr = arr.astype(np.uint16)
    elif img.mode == "F":
        arr = arr.astype(np.float32)
    return arr


def _is_dicom(name: str, data: bytes) -> bool:
    """DICOM by content: the DICM marker; a ``.dcm`` file is DICOM unless Pillow knows it."""
    if has_dicom_marker(data):
        return True
    if not name.lower().endswith(_DICOM_SUFFIXES):
        return False
    try:
        Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return True  # a bare data set without preamble, or not DICOM at all (said there)
    except Exception:
        return False  # Pillow knows the format; its own errors will say what is wrong
    return False


def decode_native(source: ImageSource, target_side: int | None = None, *,
                  name: str | None = None, data: bytes | None = None) -> np.ndarray:
    """Decode a source to an array in its own depth: ``uint8``, ``uint16`` or ``float32``.

    Gray is ``(H, W)``, gray + alpha ``(H, W, 2)``, colour ``(H, W, 3)`` or ``(H, W, 4)``;
    DICOM files come windowed as float32 RGB (see :func:`load_dicom`). With
    ``target_side``, large files may be decoded reduced (never below ``target_side``).
    Arrays are returned as they are.
    """
    return _decode(source, target_side, name, data)[0]


def _decode(source: ImageSource, target_side: int | None, name: str | None,
            data: bytes | None) -> tuple[np.ndarray, bool]:
    """:func:`decode_native`'s array, and whether it is a windowed DICOM image (float on
    the 0–255 scale by construction, however dark)."""
    source = pixels(source)
    if isinstance(source, np.ndarray):
        return source, False
    if not isinstance(source, (str, os.PathLike)):
        raise ImageLoadError(
            f"{name or 'image'}: expected a path or a NumPy array, got {type(source).__name__}"
        )
    label = name or os.fspath(source)
    if data is None:
        data = read_image_bytes(source)
    if _is_dicom(label, data):
        try:
            return load_dicom(data, name=label), True
        except NotDicomError as exc:  # a .dcm name on bytes that Pillow did not know either
            raise ImageLoadError(f"{exc}, nor an image format Pillow recognises") from None
    with _open(label, data) as img:
        _check_one_frame(label, img)
        arr = (_decode_deep_colour(label, data, img) if _is_deep_colour(img, data)
               else _decode_pillow(label, img, target_side))
        return _expand_significant_bits(arr, data, img), False


def load_image(
    source: ImageSource,
    side: int | None = None,
    *,
    name: str | None = None,
    data: bytes | None = None,
) -> np.ndarray:
    """Load one image source as float32 RGB on the 0–255 scale.

    Parameters
    ----------
    source : str, Path or ndarray
        A file path or an image array (see :mod:`cnnfeatures.images` for accepted shapes
        and dtypes).
    side : int, optional
        When given, resize to ``(side, side)`` with :func:`resize_square`; files much
        larger than ``side`` are decoded reduced.
    name : str, optional
        How to name the source in errors (defaults to the path, or "array image").
    data : bytes, optional
        The file's bytes when the caller has already read them (to hash them, say).

    Returns
    -------
    image : ndarray of shape (H, W, 3) or (side, side, 3), dtype float32

    Raises
    ------
    ImageLoadError
        With the file name and the problem: missing, not a regular file, too large,
        unreadable, empty, not an image, truncated, zero size, unsupported dtype or shape,
        NaN/inf values, float values that look scaled to [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> load_image(np.zeros((5, 7), dtype=np.uint8), side=4).shape
    (4, 4, 3)
    """
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike))
                     else "array image")
    arr, from_dicom = _decode(source, side, label, data)
    # A decoded DICOM image is float RGB on 0-255 by construction, however dark: not put
    # through the checks that guess the scale of user arrays.
    rgb = arr if from_dicom else to_rgb_float(arr, label)
    if side is not None:
        rgb = resize_square(rgb, side)
    return rgb


def load_image_native(source: ImageSource, *, name: str | None = None) -> np.ndarray:
    """Load an image keeping its bit depth: ``uint8`` or ``uint16``, gray ``(H, W)`` or RGB.

    For steps that work on integer histograms (CLAHE). Alpha is composited onto black in the
    image's own depth; float arrays (on the 0–255 scale, see :func:`to_rgb_float`) and
    DICOM files (windowed, see :func:`load_dicom`) are rounded to ``uint8``.

    Examples
    --------
    >>> import numpy as np
    >>> load_image_native(np.zeros((2, 3, 1), np.uint16)).shape
    (2, 3)
    """
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike))
                     else "array image")
    arr, from_dicom = _decode(source, None, label, None)
    if arr.dtype not in (np.uint8, np.uint16):
        rgb = np.rint(arr if from_dicom else to_rgb_float(arr, label)).astype(np.uint8)
        # Gray stays gray, as an integer gray image does: CLAHE then equalises it as it is.
        return rgb[:, :, 0] if arr.ndim == 2 or arr.shape[2] in (1, 2) else rgb
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    check_image_shape(arr, label)
    return composite_alpha(arr)
