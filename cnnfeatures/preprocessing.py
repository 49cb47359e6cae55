"""CLAHETransformer: contrast-limited adaptive histogram equalisation as an image step."""

from __future__ import annotations

from numbers import Integral, Real

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from .images import ImageStepMixin, check_image_sources, map_native_images

__all__ = ["CLAHETransformer", "check_tile_size", "clahe"]

COLOR_MODES = ("lab", "per_channel", "gray")


def _equalize(channel: np.ndarray, clip_limit: float, tiles: tuple[int, int]) -> np.ndarray:
    # OpenCV's CLAHE takes 8- and 16-bit single-channel images and keeps their depth.
    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tiles).apply(channel)


def check_tile_size(shape: tuple[int, ...], tiles: tuple[int, int],
                    name: str = "image") -> None:
    """Refuse an image too small for its tile grid.

    Below two pixels a tile, each tile's histogram holds a pixel or two, and equalising it
    sends any flat image to white.

    Parameters
    ----------
    shape : tuple of int
        The image's shape, ``(H, W)`` or ``(H, W, C)``.
    tiles : (int, int)
        OpenCV's ``tileGridSize``: tiles along the width, then along the height.
    name : str
        How to name the image in the message.

    Raises
    ------
    ValueError
        When a tile would be under 2x2 pixels.

    Examples
    --------
    >>> check_tile_size((16, 16), (8, 8))
    >>> check_tile_size((8, 8), (8, 8))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: image: 8x8 pixels is too small for CLAHE's tile_grid_size (8, 8): ...
    """
    height, width = shape[:2]
    if height < 2 * tiles[1] or width < 2 * tiles[0]:
        raise ValueError(
            f"{name}: {height}x{width} pixels is too small for CLAHE's tile_grid_size "
            f"{tiles}: tiles need at least 2x2 pixels (here at least {2 * tiles[1]}x"
            f"{2 * tiles[0]}); pass a smaller tile_grid_size or larger images"
        )


def clahe(image: np.ndarray, clip_limit: float = 2.0, tile_grid_size=(8, 8),
          color_mode: str = "lab", *, name: str = "image") -> np.ndarray:
    """Apply CLAHE to one ``uint8``/``uint16`` image, gray ``(H, W)`` or RGB ``(H, W, 3)``.

    Parameters
    ----------
    image : ndarray
    clip_limit : float
        OpenCV's contrast limit (per tile histogram clipping, relative to a flat histogram).
    tile_grid_size : (int, int)
        Tiles per column and row.
    color_mode : {"lab", "per_channel", "gray"}
        Colour images: equalise the lightness ``L`` of CIE Lab (hues kept), each RGB channel
        separately, or convert to gray first (the output is then gray). Gray images are
        equalised as they are in every mode.
    name : str
        How to name the image when it is too small for the tile grid.

    Returns
    -------
    equalised : ndarray, same dtype as ``image``

    Examples
    --------
    >>> import numpy as np
    >>> img = np.tile(np.arange(64, 128, dtype=np.uint8), (64, 1))
    >>> out = clahe(img, clip_limit=4.0)
    >>> int(out.max() - out.min()) > int(img.max() - img.min())
    True
    """
    tiles = tuple(int(t) for t in tile_grid_size)
    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {list(COLOR_MODES)}, got {color_mode!r}")
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"CLAHE needs uint8 or uint16 images, got {image.dtype}")
    check_tile_size(image.shape, tiles, name)
    if image.ndim == 2:
        return _equalize(image, clip_limit, tiles)
    if color_mode == "gray":
        return _equalize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), clip_limit, tiles)
    if color_mode == "per_channel":
        return np.stack([_equalize(np.ascontiguousarray(image[:, :, c]), clip_limit, tiles)
                         for c in range(3)], axis=2)
    if image.dtype == np.uint8:
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        lab[:, :, 0] = _equalize(np.ascontiguousarray(lab[:, :, 0]), clip_limit, tiles)
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    # 16-bit colour: OpenCV's Lab works on 8-bit or float images, so go through float and
    # equalise L quantised on 16 bits (no precision lost to an 8-bit round trip).
    lab = cv2.cvtColor(image.astype(np.float32) / 65535.0, cv2.COLOR_RGB2LAB)
    lightness = np.rint(lab[:, :, 0] / 100.0 * 65535.0).astype(np.uint16)
    lab[:, :, 0] = _equalize(lightness, clip_limit, tiles).astype(np.float32) / 65535.0 * 100.0
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return np.rint(np.clip(rgb, 0.0, 1.0) * 65535.0).astype(np.uint16)


class CLAHETransformer(ImageStepMixin, TransformerMixin, BaseEstimator,
                       auto_wrap_output_keys=None):
    """Contrast-limited adaptive histogram equalisation of images (report §4.5).

    Takes image sources (paths or arrays) and returns equalised image arrays of the same
    bit depth (``uint8`` or ``uint16``), ready for the next image step, e.g.
    :class:`~cnnfeatures.CNNFeatureExtractor`. ``fit`` learns nothing.

    It takes part in the ``set_output`` and ``get_feature_names_out`` of the pipelines it
    sits in: its output stays a list of images whatever the output container asked (only
    feature steps make DataFrames), and feature names pass through it unchanged.

    Parameters
    ----------
    clip_limit : float, default=2.0
        Contrast limit of OpenCV's CLAHE.
    tile_grid_size : tuple of 2 ints, default=(8, 8)
        Number of tiles per column and row.
    color_mode : {"lab", "per_channel", "gray"}, default="lab"
        How colour images are equalised (see :func:`clahe`).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnfeatures import CLAHETransformer
    >>> images = np.random.default_rng(0).integers(60, 120, (2, 32, 32, 3), dtype=np.uint8)
    >>> out = CLAHETransformer().fit_transform(images)
    >>> len(out), out[0].dtype, out[0].shape
    (2, dtype('uint8'), (32, 32, 3))
    """

    _parameter_constraints: dict = {
        "clip_limit": [Interval(Real, 0, None, closed="neither")],
        "tile_grid_size": [tuple, list],
        "color_mode": [StrOptions(set(COLOR_MODES))],
    }

    def __init__(self, clip_limit: float = 2.0, tile_grid_size=(8, 8), color_mode: str = "lab"):
        self.clip_limit = clip_limit
        self.tile_grid_size = tile_grid_size
        self.color_mode = color_mode

    def _checked_tiles(self) -> tuple[int, int]:
        tiles = tuple(self.tile_grid_size)
        if len(tiles) != 2 or not all(isinstance(t, Integral) and t >= 1 for t in tiles):
            raise ValueError(
                f"tile_grid_size must be two positive integers, got {self.tile_grid_size!r}"
            )
        return tiles

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Validate the parameters; nothing is learnt.

        Returns
        -------
        self : CLAHETransformer
        """
        self._checked_tiles()
        return self

    def transform(self, X) -> list[np.ndarray]:
        """Equalise every image.

        Stateless: the parameters are checked here too, so that ``transform`` works
        without ``fit`` (as the ``requires_fit=False`` tag says).

        Parameters
        ----------
        X : sequence of image sources

        Returns
        -------
        images : list of ndarray
            ``uint8`` or ``uint16`` arrays, each the size of its input.
        """
        self._validate_params()
        tiles = self._checked_tiles()
        return map_native_images(check_image_sources(X), lambda image, name: clahe(
            image, self.clip_limit, tiles, self.color_mode, name=name))
