"""DICOM images (the ``[dicom]`` extra): LUTs, windowing, and the guards Pillow has.

A hospital export holds files of every kind: compressed data sets declaring huge sizes,
floating-point pixels with NaNs, PNGs named ``.dcm``. Each is either read correctly or
refused with an error naming the file.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from scipy.special import expit

from .arrays import to_rgb_float, widen_to_16_bits
from .sources import ImageLoadError, read_image_bytes

__all__ = ["NotDicomError", "dicom_tag", "has_dicom_marker", "load_dicom"]


class NotDicomError(ImageLoadError):
    """Bytes that are not DICOM at all (as opposed to a broken DICOM file)."""


def has_dicom_marker(data: bytes) -> bool:
    """DICOM Part 10 files carry 'DICM' at byte 128."""
    return data[128:132] == b"DICM"


def _pydicom(name: str):
    try:
        import pydicom
    except ImportError:
        raise ImageLoadError(
            f"{name}: is a DICOM file; reading DICOM needs pydicom: pip install "
            "'cnnfeatures[dicom]'"
        ) from None
    return pydicom


def _read_dataset(pydicom, data: bytes, label: str, *, stop_before_pixels: bool = False):
    """Parse a data set; files without the DICM marker must still look like DICOM."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True,
                             stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # pydicom raises many kinds for broken files
        raise ImageLoadError(f"{label}: not a readable DICOM file ({exc})") from None
    if not has_dicom_marker(data) and not _looks_like_data_set(ds):
        # force=True parses any bytes into something; a real bare data set starts with its
        # identifying group (0008) and is ordered by tag.
        raise NotDicomError(
            f"{label}: not a DICOM file (no DICM marker and no DICOM data elements)"
        )
    return ds


def _looks_like_data_set(ds) -> bool:
    try:
        tags = list(ds.keys())
    except Exception:
        return False
    return bool(tags) and min(tag.group for tag in tags) in (0x0002, 0x0008)


def _check_size(pydicom, ds, label: str) -> None:
    """The pixel-count guard Pillow applies to other formats, before any pixel is decoded."""
    from PIL import Image

    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows == 0 or cols == 0:
        return  # no pixel module: pixel_array says so
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    pixels = rows * cols * frames
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None:
        return
    if pixels > 2 * limit:
        raise ImageLoadError(
            f"{label}: declared size is too large ({cols}x{rows}x{frames} = {pixels:,} "
            f"pixels, over twice PIL.Image.MAX_IMAGE_PIXELS = {limit:,}); the "
            "decompression-bomb guard refuses it. Raise PIL.Image.MAX_IMAGE_PIXELS only for "
            "files you trust."
        )
    if pixels > limit:
        warnings.warn(f"{label}: {pixels:,} pixels exceed PIL.Image.MAX_IMAGE_PIXELS "
                      f"({limit:,}): a possible decompression bomb",
                      Image.DecompressionBombWarning, stacklevel=4)


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
    image's own minimum to maximum — mapped linearly to 0–255 and clipped (the file's window
    through a sigmoid where its VOILUTFunction is SIGMOID); MONOCHROME1
    images are inverted (0 is white there). Values stay in floating point until this final
    scaling, so 16-bit detail is not lost. Colour images (RGB, YBR) are converted to RGB,
    12-bit colour scaled by its BitsStored; PALETTE COLOR goes through its colour table.

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

    Raises
    ------
    ImageLoadError
        Naming the file: not DICOM, unreadable pixel data, a declared size over the
        decompression-bomb guard, non-finite (NaN, infinite) pixel values, a bad window.
    """
    label = name or (os.fspath(source) if not isinstance(source, bytes) else "DICOM data")
    pydicom = _pydicom(label)
    data = source if isinstance(source, bytes) else read_image_bytes(source)
    ds = _read_dataset(pydicom, data, label)
    _check_size(pydicom, ds, label)
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many kinds for broken or unsupported files
        raise ImageLoadError(f"{label}: unreadable DICOM pixel data ({exc})") from None
    from pydicom.pixels import (
        apply_color_lut,
        apply_modality_lut,
        apply_voi_lut,
        convert_color_space,
    )

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
    if photometric == "PALETTE COLOR":
        # The pixels are indices into the file's colour table, not gray levels.
        try:
            pixels = apply_color_lut(pixels, ds)
        except Exception as exc:
            raise ImageLoadError(f"{label}: unreadable DICOM palette ({exc})") from None
        return to_rgb_float(np.asarray(pixels), label)
    if samples == 3:
        if photometric.startswith("YBR"):
            pixels = convert_color_space(pixels, photometric, "RGB")
        pixels, bits = np.asarray(pixels), int(getattr(ds, "BitsStored", 0) or 0)
        if pixels.dtype == np.uint16 and 1 <= bits < 16:  # 12-bit colour in 16 bits
            pixels = widen_to_16_bits(pixels, bits)
        return to_rgb_float(pixels, label)

    _check_rescale(ds, label)
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    bad = np.size(values) - int(np.count_nonzero(np.isfinite(values)))
    if bad:
        # A window over NaN gives NaN features (or a black image): refuse, naming the file.
        raise ImageLoadError(f"{label}: {bad} non-finite pixel value(s) (NaN or infinite) "
                             "in the DICOM pixel data")
    files_window = window is None and "WindowCenter" in ds and "WindowWidth" in ds
    if files_window:
        centre, width = ds.WindowCenter, ds.WindowWidth
        centre = float(centre[0] if isinstance(centre, pydicom.multival.MultiValue) else centre)
        width = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        window = (centre, width)
    if window is None and "VOILUTSequence" in ds:
        values = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
    if window is not None:
        centre, width = float(window[0]), float(window[1])
        if not (np.isfinite(centre) and np.isfinite(width)) or width <= 0:
            raise ImageLoadError(f"{label}: window width must be positive and finite, got "
                                 f"centre {centre}, width {width}")
        lo, hi = centre - width / 2, centre + width / 2
    else:
        lo, hi = float(values.min()), float(values.max())
    if files_window and str(ds.get("VOILUTFunction", "")).upper() == "SIGMOID":
        # The file asks for its window as a sigmoid (PS3.3 C.11.2.1.3.2), not a ramp.
        scaled = expit(4.0 * (values - centre) / width)
    elif hi > lo:
        scaled = np.clip((values - lo) / (hi - lo), 0, 1)
    else:
        scaled = np.zeros_like(values)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    gray = (scaled * 255.0).astype(np.float32)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _check_rescale(ds, label: str) -> None:
    """A NaN or infinite rescale slope or intercept would turn every pixel non-finite: say
    so, rather than blame the pixels."""
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        value = ds.get(keyword)
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ImageLoadError(f"{label}: {keyword} {value!r} is not a number") from None
        if not np.isfinite(number):
            raise ImageLoadError(f"{label}: {keyword} is {number}; expected a finite number")


def dicom_tag(path: str | os.PathLike[str], keyword: str) -> str | None:
    """One tag of a DICOM file's header (pixels not read), as text; None when absent.

    Raises
    ------
    ImageLoadError
        When the file is not a readable DICOM file (the message names it).
    """
    label = os.fspath(path)
    pydicom = _pydicom(label)
    ds = _read_dataset(pydicom, read_image_bytes(path), label, stop_before_pixels=True)
    value = ds.get(keyword)
    return None if value is None else str(value)
