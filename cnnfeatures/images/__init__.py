"""Read any image source into a float32 RGB array, and resize it.

Every image step of cnnfeatures takes ``X`` as a *sequence of image sources*:

* a path (``str`` or :class:`os.PathLike`) to a file Pillow can decode;
* a NumPy array of shape ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``
  with dtype ``uint8``, ``uint16`` or floating point;
* or a 4-D array ``(n_images, H, W, C)`` holding images of one size.

Whatever the source, :func:`load_image` returns ``float32`` RGB of shape ``(H, W, 3)`` on
the 0–255 scale that Keras' ``preprocess_input`` functions expect:

* 8-bit values are kept; 16-bit values are scaled by ``255 / 65535`` (the type's range,
  never by the image's own minimum and maximum, never clipped); a 16-bit PNG whose sBIT
  chunk declares fewer significant bits, and whose values fit them, is scaled by its
  declared range; other 16-bit images whose values fit in 12 bits get a
  :class:`LowBitDepthWarning`;
* floating-point arrays are taken to be on the 0–255 scale already; values outside
  ``[0, 255]``, NaN and infinity are errors, and so are float images whose values all lie
  in ``[0, 1]`` (they look normalised: multiply them by 255), since guessing a scale would
  be silently wrong;
* grayscale is repeated on three channels; palette, 1-bit, CMYK, YCbCr and Lab images are
  converted by Pillow; 16-bit colour PNG and TIFF files keep their 16 bits (read by
  OpenCV, since Pillow would drop the low byte);
* an alpha channel is composited onto **black** (``rgb * alpha / max``), so transparent
  pixels read as background zeros, like the black surround of microscopy crops;
* the EXIF orientation tag is applied, so a photo reads the way viewers show it;
* a file holds one image: multi-page TIFF, animated GIF, PNG and WebP files are errors
  (camera MPO files read as their first, main image; a TIFF whose later pages are all
  smaller, a pyramid or thumbnails, as its first page);
* DICOM files (any file with the DICM marker, or a ``.dcm`` file that is not another
  image format; the ``[dicom]`` extra) go through the modality LUT, then a window, see
  :func:`load_dicom`;
* files are read only when they are regular files, up to a size cap (1 GiB, or
  ``$CNNFEATURES_MAX_IMAGE_BYTES``).

The package has three floors: :mod:`~cnnfeatures.images.sources` (what ``X`` may hold,
safe reading, digests), :mod:`~cnnfeatures.images.arrays` (array conversions),
:mod:`~cnnfeatures.images.dicom` and :mod:`~cnnfeatures.images.decode` (files to arrays).

Errors are :class:`ImageLoadError` (a :class:`ValueError`) whose message starts with the
file name (or ``X[i]`` for an array) and says what is wrong.
"""

from .arrays import composite_alpha, resize_square, to_rgb_float
from .decode import decode_native, load_image, load_image_native
from .dicom import dicom_tag, has_dicom_marker, load_dicom
from .sources import (
    DEFAULT_MAX_IMAGE_BYTES,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    ImageSource,
    LowBitDepthWarning,
    TransientImage,
    check_image_sources,
    image_digest,
    image_input_tags,
    image_name,
    is_image_file,
    max_image_bytes,
    pixels,
    read_image_bytes,
    transient,
)
from .steps import ImageStepMixin, map_native_images

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "IMAGE_EXTENSIONS",
    "ImageLoadError",
    "ImageSource",
    "LowBitDepthWarning",
    "TransientImage",
    "check_image_sources",
    "composite_alpha",
    "decode_native",
    "dicom_tag",
    "has_dicom_marker",
    "image_digest",
    "ImageStepMixin",
    "map_native_images",
    "image_input_tags",
    "image_name",
    "is_image_file",
    "load_dicom",
    "load_image",
    "load_image_native",
    "max_image_bytes",
    "pixels",
    "read_image_bytes",
    "resize_square",
    "to_rgb_float",
    "transient",
]
