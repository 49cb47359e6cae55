"""Read any image source into a float32 RGB array, and resize it.

Every image step of cnnfeatures takes ``X`` as a *sequence of image sources*:

* a path (``str`` or :class:`os.PathLike`) to a file Pillow can decode;
* a NumPy array of shape ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``
  with dtype ``uint8``, ``uint16`` or floating point;
* or a 4-D array ``(n_images, H, W, C)`` holding images of one size.

Whatever the source, :func:`load_image` returns ``float32`` RGB of shape ``(H, W, 3)`` on
the 0–255 scale that Keras' ``preprocess_input`` functions expect:

* 8-bit values are kept; 16-bit values are scaled by ``255 / 65535`` (the type's range,
  never by the image's own minimum and maximum, never clipped);
* floating-point arrays are taken to be on the 0–255 scale already; values outside
  ``[0, 255]``, NaN and infinity are errors, since guessing a scale would be silently wrong;
* grayscale is repeated on three channels; palette images are expanded; CMYK is converted
  by Pillow;
* an alpha channel is composited onto **black** (``rgb * alpha / max``), so transparent
  pixels read as background zeros, like the black surround of microscopy crops;
* the EXIF orientation tag is applied, so a photo reads the way viewers show it;
* DICOM files (``.dcm``, or any file with the DICM marker; the ``[dicom]`` extra) go
  through the modality LUT, then a window, see :func:`load_dicom`.

Errors are :class:`ImageLoadError` (a :class:`ValueError`) whose message starts with the
file name (or ``X[i]`` for an array) and says what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ImageSource = Union[str, "os.PathLike[str]", np.ndarray]

__all__ = [
    "ImageLoadError",
    "ImageSource",
    "check_image_sources",
    "image_digest",
    "image_name",
    "TransientImage",
    "dicom_tag",
    "load_dicom",
    "load_image",
    "load_image_native",
    "read_image_bytes",
    "resize_square",
    "to_rgb_float",
]

# Extensions treated as images when scanning folders (see datasets.load_image_folder).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm",
     ".dcm", ".dicom"}
)


class ImageLoadError(ValueError):
    """An image source could not be turned into an RGB array.

    The message starts with the source's name (a path, or ``X[i]`` for arrays).
    """


def image_name(source: ImageSource, index: int | None = None) -> str:
    """Name a source in messages: its path, or ``X[index]`` for an array."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"X[{index}]" if index is not None else "array image"


def check_image_sources(X: object, *, name: str = "X") -> Sequence[ImageSource]:
    """Validate a collection of image sources and return it as an indexable sequence.

    Parameters
    ----------
    X : sequence of paths or arrays, or ndarray of shape (n, H, W[, C])
        The images. A 1-D array of paths (e.g. ``Bunch.filenames``) is accepted too.
    name : str, default="X"
        The argument's name, used in error messages.

    Returns
    -------
    sources : sequence
        ``X`` itself when it is a 4-D/3-D image array or a list, else ``list(X)``.

    Raises
    ------
    TypeError
        If ``X`` is a single path or a single image rather than a collection of them.
    ValueError
        If ``X`` is empty or an element is neither a path nor an array.

    Examples
    --------
    >>> import numpy as np
    >>> len(check_image_sources(np.zeros((2, 8, 8, 3), dtype=np.uint8)))
    2
    """
    if isinstance(X, (str, os.PathLike)):
        raise TypeError(
            f"{name} must be a sequence of image sources, got a single path {os.fspath(X)!r}; "
            f"wrap it in a list: [{os.fspath(X)!r}]"
        )
    if isinstance(X, np.ndarray):
        if X.dtype.kind in "OUS":  # array of paths / objects
            if X.ndim != 1:
                raise ValueError(f"{name}: an array of paths must be 1-D, got shape {X.shape}")
            sources: Sequence[ImageSource] = list(X)
        elif X.ndim in (3, 4):
            # (n, H, W) grayscale or (n, H, W, C) images of one size.
            sources = X
        else:
            raise ValueError(
                f"{name}: a numeric array must hold a batch of images with shape (n, H, W) or "
                f"(n, H, W, C); got shape {X.shape}. Pass a single image as [image]."
            )
    else:
        try:
            sources = X if isinstance(X, list) else list(X)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(
                f"{name} must be a sequence of image paths or arrays, got {type(X).__name__}"
            ) from None
    if len(sources) == 0:
        raise ValueError(f"{name} is empty: at least one image is required")
    if not isinstance(sources, np.ndarray):
        for i, s in enumerate(sources):
            if not isinstance(s, (str, os.PathLike, np.ndarray)):
                raise TypeError(
                    f"{name}[{i}] is a {type(s).__name__}; expected a path (str or Path) "
                    "or a NumPy array"
                )
    return sources


def read_image_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a file's bytes, with errors that name the file and the problem."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise ImageLoadError(f"{name}: is a directory, expected an image file")
    try:
        with open(name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: no such file") from None
    except PermissionError:
        raise ImageLoadError(f"{name}: unreadable (permission denied)") from None
    except OSError as exc:
        raise ImageLoadError(f"{name}: unreadable ({exc.strerror or exc})") from None
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes), not an image")
    return data


def image_digest(source: ImageSource, data: bytes | None = None) -> str:
    """A content digest of an image source, for caches keyed by content, never by path.

    Files are hashed by their bytes (pass ``data`` when already read); arrays by dtype,
    shape and values.
    """
    h = hashlib.blake2b(digest_size=20)
    if isinstance(source, np.ndarray):
        arr = np.ascontiguousarray(source)
        h.update(f"array:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.data)
    else:
        h.update(b"file:")
        h.update(data if data is not None else read_image_bytes(source))
    return h.hexdigest()


def _open_decoded(name: str, data: bytes, target_side: int | None) -> Image.Image:
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
    if target_side is not None and img.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is much smaller: a
        # large photo then costs a fraction of the memory and time. The result stays at
        # least as large as asked, so the final resize only ever shrinks it.
        img.draft(img.mode, (target_side, target_side))
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{name}: declared size is too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{name}: truncated or corrupt image data ({exc})") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not hide the pixels; orientation stays as stored
        pass
    if target_side is not None and img.format != "JPEG":
        # Other formats cannot decode reduced; shrink by an integer factor right away so the
        # float conversion below never holds a huge image.
        factor = min(img.width, img.height) // (2 * target_side)
        if factor >= 2:
            img = img.reduce(factor)
    return img


def is_dicom(data: bytes, name: str = "") -> bool:
    """DICOM Part 10 files carry 'DICM' at byte 128; bare data sets are known by extension."""
    return data[128:132] == b"DICM" or name.lower().endswith((".dcm", ".dicom"))


def _dicom_module(name: str):
    try:
        import pydicom
    except ImportError:
        raise ImageLoadError(
            f"{name}: is a DICOM file; reading DICOM needs pydicom: pip install "
            "'cnnfeatures[dicom]'"
        ) from None
    return pydicom


def load_dicom(
    source: str | os.PathLike[str] | bytes,
    *,
    frame: int | None = None,
    window: tuple[float, float] | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Read a DICOM image as float32 RGB on the 0–255 scale (needs the ``[dicom]`` extra).

    Grayscale pixels go through, in this order: the modality LUT (rescale slope and
    intercept, giving e.g. Hounsfield units), then a window — ``window=(centre, width)``
    if given, else the file's first WindowCenter/WindowWidth, else its VOI LUT, else the
    image's own minimum to maximum — mapped linearly to 0–255 and clipped; MONOCHROME1
    images are inverted (0 is white there). Values stay in floating point until this final
    scaling, so 16-bit detail is not lost. Colour images (RGB, YBR) are converted to RGB.

    Parameters
    ----------
    source : path or bytes
    frame : int, optional
        Frame of a multi-frame file (from 0). Multi-frame files without it are an error.
    window : (centre, width), optional
        Overrides the file's window.
    name : str, optional
        How to name the file in errors.

    Returns
    -------
    image : ndarray of shape (H, W, 3), float32
    """
    label = name or (os.fspath(source) if not isinstance(source, bytes) else "DICOM data")
    pydicom = _dicom_module(label)
    data = source if isinstance(source, bytes) else read_image_bytes(source)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many kinds for broken or unsupported files
        raise ImageLoadError(f"{label}: unreadable DICOM pixel data ({exc})") from None
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space

    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if n_frames > 1:
        if frame is None:
            raise ImageLoadError(
                f"{label}: multi-frame DICOM ({n_frames} frames); read one frame with "
                "cnnfeatures.images.load_dicom(path, frame=k)"
            )
        if not 0 <= frame < n_frames:
            raise ImageLoadError(f"{label}: frame {frame} out of range (0..{n_frames - 1})")
        pixels = pixels[frame]
    if samples == 3:
        if photometric.startswith("YBR"):
            pixels = convert_color_space(pixels, photometric, "RGB")
        return to_rgb_float(np.asarray(pixels), label)

    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = ds.WindowCenter, ds.WindowWidth
        centre = float(centre[0] if isinstance(centre, pydicom.multival.MultiValue) else centre)
        width = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        window = (centre, width)
    if window is None and "VOILUTSequence" in ds:
        values = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
    if window is not None:
        centre, width = float(window[0]), float(window[1])
        if width <= 0:
            raise ImageLoadError(f"{label}: window width must be positive, got {width}")
        lo, hi = centre - width / 2, centre + width / 2
    else:
        lo, hi = float(values.min()), float(values.max())
    scaled = np.clip((values - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    gray = (scaled * 255.0).astype(np.float32)
    return np.repeat(gray[:, :, None], 3, axis=2)


def dicom_tag(path: str | os.PathLike[str], keyword: str) -> str | None:
    """One tag of a DICOM file's header (pixels not read), as text; None when absent."""
    pydicom = _dicom_module(os.fspath(path))
    ds = pydicom.dcmread(os.fspath(path), stop_before_pixels=True, force=True)
    value = ds.get(keyword)
    return None if value is None else str(value)


def _pil_to_array(img: Image.Image, name: str) -> np.ndarray:
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        img = img.convert("RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("RGBa", "La"):
        img = img.convert(mode.replace("a", "A"))
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        arr = arr.astype(np.uint16, copy=False)
    elif img.mode == "I":
        # 32-bit integer mode: Pillow uses it for 16-bit grayscale PNG/TIFF. Values must fit
        # the 16-bit range to be scaled without clipping.
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageLoadError(
                f"{name}: 32-bit integer pixels outside the 0-65535 range are not supported"
            )
        arr = arr.astype(np.uint16)
    elif img.mode == "F":
        arr = arr.astype(np.float32)
    return arr


def to_rgb_float(array: np.ndarray, name: str = "array image") -> np.ndarray:
    """Convert an image array to float32 RGB ``(H, W, 3)`` on the 0–255 scale.

    Parameters
    ----------
    array : ndarray of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
        ``uint8`` (kept), ``uint16`` (scaled by 255/65535) or floating point (taken to be
        on the 0–255 scale already). A fourth channel is alpha, composited onto black.
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
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise ImageLoadError(
            f"{name}: expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageLoadError(f"{name}: zero-size image (shape {arr.shape})")
    if arr.dtype == np.uint8:
        scale, max_value = 1.0, 255.0
    elif arr.dtype == np.uint16:
        scale, max_value = 255.0 / 65535.0, 65535.0
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ImageLoadError(f"{name}: contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 255:
            raise ImageLoadError(
                f"{name}: float pixels must lie in [0, 255] (the scale Keras models expect), "
                f"got values in [{lo:g}, {hi:g}]; rescale first (e.g. multiply [0, 1] images "
                "by 255)"
            )
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
        A file path or an image array (see the module docstring for accepted shapes and
        dtypes).
    side : int, optional
        When given, resize to ``(side, side)`` with :func:`resize_square`; JPEG files much
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
        With the file name and the problem: missing, unreadable, empty, not an image,
        truncated, zero size, unsupported dtype or shape, NaN/inf values.

    Examples
    --------
    >>> import numpy as np
    >>> load_image(np.zeros((5, 7), dtype=np.uint8), side=4).shape
    (4, 4, 3)
    """
    if isinstance(source, np.ndarray):
        rgb = to_rgb_float(source, name or "array image")
    elif isinstance(source, (str, os.PathLike)):
        label = name or os.fspath(source)
        if data is None:
            data = read_image_bytes(source)
        if is_dicom(data, label):
            rgb = load_dicom(data, name=label)
        else:
            with _open_decoded(label, data, side) as img:
                rgb = to_rgb_float(_pil_to_array(img, label), label)
    else:
        raise ImageLoadError(
            f"{name or 'image'}: expected a path or a NumPy array, got {type(source).__name__}"
        )
    if side is not None:
        rgb = resize_square(rgb, side)
    return rgb


def load_image_native(source: ImageSource, *, name: str | None = None) -> np.ndarray:
    """Load an image keeping its bit depth: ``uint8`` or ``uint16``, gray ``(H, W)`` or RGB.

    For steps that work on integer histograms (CLAHE). Alpha is composited onto black in the
    image's own depth; float arrays (on the 0–255 scale, see :func:`to_rgb_float`) are
    rounded to ``uint8``.

    Examples
    --------
    >>> import numpy as np
    >>> load_image_native(np.zeros((2, 3, 1), np.uint16)).shape
    (2, 3)
    """
    if isinstance(source, (str, os.PathLike)):
        label = name or os.fspath(source)
        data = read_image_bytes(source)
        if is_dicom(data, label):  # windowed to 8 bits (see load_dicom)
            return np.rint(load_dicom(data, name=label)).astype(np.uint8)
        with _open_decoded(label, data, None) as img:
            arr = _pil_to_array(img, label)
    elif isinstance(source, np.ndarray):
        label = name or "array image"
        arr = source
    else:
        raise ImageLoadError(
            f"{name or 'image'}: expected a path or a NumPy array, got {type(source).__name__}"
        )
    if arr.dtype not in (np.uint8, np.uint16):
        return np.rint(to_rgb_float(arr, label)).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] in (2, 4):  # composite alpha onto black, same depth
        top = np.iinfo(arr.dtype).max
        color = arr[:, :, :-1].astype(np.float64) * (arr[:, :, -1:] / top)
        arr = np.rint(color).astype(arr.dtype)
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
    to_rgb_float(arr[:1, :1], label)  # shape and size checks, same messages as load_image
    return arr


class TransientImage(np.ndarray):
    """An image array that caches must not keep (an augmented copy: new content each time).

    ``np.asarray(img)`` gives the plain array; :class:`~cnnfeatures.CNNFeatureExtractor`
    computes features of such images without storing them.
    """


def transient(image: np.ndarray) -> TransientImage:
    """Mark an image array as not worth caching (see :class:`TransientImage`)."""
    return np.asarray(image).view(TransientImage)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether a file name has one of the image extensions cnnfeatures reads."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
