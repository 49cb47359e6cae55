"""Image sources: what ``X`` may hold, reading files safely, and content digests.

Files are read only when they are regular files (a FIFO would block forever, a link to
``/dev/zero`` would read until memory runs out) and only up to a size cap, so that one
odd entry in a folder of thousands can neither hang nor exhaust a run.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Union

import numpy as np

from ..config import DEFAULT_MAX_IMAGE_BYTES, get_config

ImageSource = Union[str, "os.PathLike[str]", np.ndarray, "TransientImage"]

__all__ = [
    "image_input_tags",
    "DEFAULT_MAX_IMAGE_BYTES",
    "IMAGE_EXTENSIONS",
    "ImageLoadError",
    "ImageSource",
    "TransientImage",
    "check_image_sources",
    "image_digest",
    "image_name",
    "is_image_file",
    "max_image_bytes",
    "pixels",
    "read_image_bytes",
    "transient",
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


class LowBitDepthWarning(UserWarning):
    """A 16-bit image whose values all fit in 12 bits: read on the 16-bit scale, it is at
    most 1/16 as bright as full scale (12-bit detector data stored unscaled, typically)."""


def image_input_tags(tags):
    """``tags`` (scikit-learn's ``Tags``) of an estimator whose X is a sequence of images
    (paths or arrays), not a 2-D feature matrix: the estimator checks that feed numeric
    2-D X then do not apply."""
    tags.input_tags.two_d_array = False
    tags.input_tags.three_d_array = True
    tags.input_tags.string = True
    return tags


def image_name(source: ImageSource, index: int | None = None) -> str:
    """Name a source in messages: its path, or ``X[index]`` for an array."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"X[{index}]" if index is not None else "array image"


def _is_dataframe(X: object) -> bool:
    # pandas and polars DataFrames both have `columns` and a 2-D `shape`; iterating over
    # them yields column names, which must never be read as paths.
    shape = getattr(X, "shape", None)
    return hasattr(X, "columns") and isinstance(shape, tuple) and len(shape) == 2


def _from_dataframe(X, name: str) -> list:
    columns = list(X.columns)
    if len(columns) != 1:
        raise ValueError(
            f"{name} is a DataFrame with {len(columns)} columns {columns[:5]}; pass the one "
            f"column that holds the image paths, e.g. {name}[{str(columns[0])!r}]"
        )
    return list(X[columns[0]])


def check_image_sources(X: object, *, name: str = "X") -> Sequence[ImageSource]:
    """Validate a collection of image sources and return it as an indexable sequence.

    Parameters
    ----------
    X : sequence of paths or arrays, ndarray of shape (n, H, W, C), DataFrame or Series
        The images. A 1-D array of paths (e.g. ``Bunch.filenames``), a pandas Series or a
        one-column DataFrame of paths are accepted too. ``(n, H, W)`` arrays are ``n`` gray
        images, except when the last axis has 1, 3 or 4 entries: such an array could as
        well be one ``(H, W, C)`` image, so it is refused (pass ``[image]`` for one image,
        a 4-D array for several).
    name : str, default="X"
        The argument's name, used in error messages.

    Returns
    -------
    sources : sequence
        ``X`` itself when it is a 4-D/3-D image array or a list, else ``list(X)``.

    Raises
    ------
    TypeError
        If ``X`` is a single path rather than a collection of them, or an element is
        neither a path nor an array.
    ValueError
        If ``X`` is empty, a DataFrame with several columns, or an ambiguous 3-D array.

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
    if _is_dataframe(X):
        X = _from_dataframe(X, name)
    if isinstance(X, np.ndarray):
        sources = _check_array(X, name)
    elif isinstance(X, (Mapping, Iterator)):
        # A dict would give its keys; an iterator would be used up by fit and find
        # transform's X empty: both are mistakes better named now.
        kind = "a mapping" if isinstance(X, Mapping) else "an iterator (used up once read)"
        raise TypeError(f"{name} must be a sequence of image paths or arrays, got {kind} "
                        f"({type(X).__name__}); pass a list")
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
            if not isinstance(s, (str, os.PathLike, np.ndarray, TransientImage)):
                raise TypeError(
                    f"{name}[{i}] is a {type(s).__name__}; expected a path (str or Path) "
                    "or a NumPy array"
                )
    return sources


def _check_array(X: np.ndarray, name: str) -> Sequence[ImageSource]:
    if X.dtype.kind in "OUS":  # array of paths / objects
        if X.ndim == 2 and X.shape[1] == 1:  # a column of paths, e.g. df[["path"]].values
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(f"{name}: an array of paths must be 1-D, got shape {X.shape}")
        return list(X)
    if X.ndim == 4:
        return X
    if X.ndim == 3:
        if X.shape[-1] in (1, 2, 3, 4):
            raise ValueError(
                f"{name}: an array of shape {X.shape} is ambiguous: one image of "
                f"{X.shape[0]}x{X.shape[1]} pixels with {X.shape[2]} channel(s), or "
                f"{X.shape[0]} gray images of {X.shape[1]}x{X.shape[2]}? Pass one image as "
                f"[image], several as a 4-D array (n, H, W, C) or a list of arrays."
            )
        return X  # (n, H, W) gray images
    raise ValueError(
        f"{name}: a numeric array must hold a batch of images with shape (n, H, W) or "
        f"(n, H, W, C); got shape {X.shape}. Pass a single image as [image]."
    )


def max_image_bytes() -> int:
    """The size cap of image files: the ``max_image_bytes`` setting (see
    :func:`~cnnfeatures.set_config`; default ``$CNNFEATURES_MAX_IMAGE_BYTES`` or 1 GiB)."""
    return get_config()["max_image_bytes"]


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(name: str, mode: int) -> ImageLoadError:
    if stat.S_ISDIR(mode):
        return ImageLoadError(f"{name}: is a directory, expected an image file")
    kind = next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file")
    return ImageLoadError(f"{name}: is {kind}; images are read only from regular files")


def read_image_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read an image file's bytes, with errors that name the file and the problem.

    Only regular files are read (a symbolic link to one is fine), at most
    :func:`max_image_bytes` of them.

    Examples
    --------
    >>> read_image_bytes("/no/such.png")
    Traceback (most recent call last):
    ...
    cnnfeatures.images.sources.ImageLoadError: /no/such.png: no such file
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        broken = os.path.islink(name)
        raise ImageLoadError(
            f"{name}: " + ("broken symbolic link" if broken else "no such file")
        ) from None
    except PermissionError:
        raise ImageLoadError(f"{name}: unreadable (permission denied)") from None
    except OSError as exc:
        raise ImageLoadError(f"{name}: unreadable ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(name, st.st_mode)
    limit = max_image_bytes()
    if st.st_size > limit:
        raise _too_large(name, st.st_size, limit)
    try:
        # O_NONBLOCK: should the file have been swapped for a FIFO since stat, open must
        # not wait for a writer; fstat below then refuses it.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except PermissionError:
        raise ImageLoadError(f"{name}: unreadable (permission denied)") from None
    except OSError as exc:
        raise ImageLoadError(f"{name}: unreadable ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(name, mode)
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise ImageLoadError(f"{name}: unreadable ({exc.strerror or exc})") from None
    if len(data) > limit:  # it grew since stat
        raise _too_large(name, len(data), limit)
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes), not an image")
    return data


def _too_large(name: str, size: int, limit: int) -> ImageLoadError:
    return ImageLoadError(
        f"{name}: file of {size:,} bytes exceeds the image size cap of {limit:,} bytes; "
        "raise it for files you trust with cnnfeatures.set_config(max_image_bytes=...), or "
        "$CNNFEATURES_MAX_IMAGE_BYTES for every process"
    )


def image_digest(source: ImageSource, data: bytes | None = None) -> str:
    """A content digest of an image source, for caches keyed by content, never by path.

    Files are hashed by their bytes (pass ``data`` when already read); arrays by dtype,
    shape and values.
    """
    h = hashlib.blake2b(digest_size=20)
    source = pixels(source)
    if isinstance(source, np.ndarray):
        arr = np.ascontiguousarray(source)
        h.update(f"array:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.data)
    else:
        h.update(b"file:")
        h.update(data if data is not None else read_image_bytes(source))
    return h.hexdigest()


class TransientImage:
    """An image that caches must not keep: an augmented copy, new content every time.

    A wrapper around the array — not an ndarray subclass, which any step building a new
    array would silently turn back into a plain, cacheable one. The image steps of
    cnnfeatures pass the mark on (CLAHE of a transient image is transient) and
    :class:`~cnnfeatures.CNNFeatureExtractor` computes its features without storing them;
    anything else sees the pixels through ``np.asarray(image)``.

    Examples
    --------
    >>> import numpy as np
    >>> image = transient(np.zeros((2, 3), np.uint8))
    >>> image.shape, np.asarray(image).dtype
    ((2, 3), dtype('uint8'))
    """

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = np.asarray(array)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.array if dtype is None else self.array.astype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def __repr__(self) -> str:
        return f"TransientImage(shape={self.shape}, dtype={self.dtype})"


def transient(image) -> TransientImage:
    """Mark an image array as not worth caching (see :class:`TransientImage`)."""
    return image if isinstance(image, TransientImage) else TransientImage(image)


def pixels(source: ImageSource) -> ImageSource:
    """A source with a :class:`TransientImage` unwrapped to its array; others as they are."""
    return source.array if isinstance(source, TransientImage) else source


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether a file name has one of the image extensions cnnfeatures reads."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
