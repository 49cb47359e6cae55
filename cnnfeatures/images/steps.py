"""What image-to-image steps share: scikit-learn tags and pass-through plumbing
(:class:`ImageStepMixin`), and one loop over images decoded in their own depth
(:func:`map_native_images`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .decode import load_image_native
from .sources import ImageSource, TransientImage, image_input_tags, image_name, transient

__all__ = ["ImageStepMixin", "map_native_images"]


def map_native_images(sources: Sequence[ImageSource],
                      function: Callable[[np.ndarray, str], np.ndarray],
                      start: int = 0) -> list:
    """``function(image, name)`` of every source, decoded in its own bit depth.

    A :class:`TransientImage` source gives a transient result: what an image step makes of
    an augmented copy is new content too, which caches must not keep. ``start`` is the
    index of the first source in the caller's ``X`` (names of arrays read ``X[i]``).

    Examples
    --------
    >>> import numpy as np
    >>> out = map_native_images([np.zeros((2, 3), np.uint8)], lambda a, name: a.T)
    >>> out[0].shape
    (3, 2)
    """
    out = []
    for i, source in enumerate(sources, start=start):
        name = image_name(source, i)
        result = np.ascontiguousarray(function(load_image_native(source, name=name), name))
        out.append(transient(result) if isinstance(source, TransientImage) else result)
    return out


class ImageStepMixin:
    """What every image-to-image step shares (CLAHE, region cropping): image inputs, no
    fit needed, no labels, and a pass-through place in a pipeline's ``set_output`` and
    ``get_feature_names_out`` (only feature steps make DataFrames or name columns).

    Put it before ``TransformerMixin`` and ``BaseEstimator`` in the bases.
    """

    def __sklearn_tags__(self):
        tags = image_input_tags(super().__sklearn_tags__())
        tags.requires_fit = False
        tags.target_tags.required = False
        return tags

    def get_feature_names_out(self, input_features=None):
        """Image steps have no feature names of their own: ``input_features`` as given."""
        return input_features

    def set_output(self, *, transform=None):
        """Accept a pipeline's output container; images are returned as a list whatever it
        is (only feature steps make DataFrames).

        Returns
        -------
        self : estimator
        """
        if transform not in (None, "default", "pandas", "polars"):
            raise ValueError(f"transform must be 'default', 'pandas', 'polars' or None, got "
                             f"{transform!r}")
        return self
