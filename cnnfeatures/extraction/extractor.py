"""CNNFeatureExtractor: multi-scale, fully convolutional CNN features as a transformer.

``fit`` learns nothing: it validates the parameters and builds (once per process) the
network, without any forward pass. The extractor holds no Keras object, so it clones and
pickles like any scikit-learn estimator; the network is rebuilt from its name and weights
in a new process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..backbones import PRECISIONS, FeatureNetwork, check_fc_weights
from ..backbones.openvino import ENGINES, QuantizedIR
from ..cache import ActivationCache, SessionCacheOnClone, cache_for
from ..descriptors import DescriptorWriter, LocalDescriptors
from ..images import check_image_sources, image_input_tags
from .calibration import calibrate, calibration_sources
from .forward import ForwardPlan, NetworkCard, stream_activations
from .settings import ExtractionSettings

__all__ = ["CNNFeatureExtractor"]


def fitted_settings(extractor: CNNFeatureExtractor, sources: list
                    ) -> tuple[ExtractionSettings, NetworkCard, QuantizedIR | None]:
    """What ``fit`` fixes: the settings the parameters ask for (checked), the network's
    card, and with ``precision="int8"`` the quantized model (settings then name its
    calibration)."""
    e = extractor
    settings = ExtractionSettings.of(e.backbone, e.weights, e.precision, e.layer, e.pooling,
                                     e.scales, e.scale_combination, e.l2_normalize,
                                     e.random_state, e.device, e.engine)
    card = settings.card(e._cache(), e.verbose)
    card.check_layers(settings.layers)
    check_fc_weights(card.backbone, card.fc_pretrained, settings.layers, e.weights)
    if settings.precision != "int8":
        return settings, card, None
    settings, quantized = calibrate(settings, card, calibration_sources(sources, e.calibration),
                                    e.verbose)
    return settings, card, quantized


def check_default_output(extractor: CNNFeatureExtractor) -> None:
    """Local descriptors are ragged: no DataFrame can hold them."""
    config = getattr(extractor, "_sklearn_output_config", {}).get("transform", "default")
    if config != "default":
        raise ValueError(
            "pooling=None returns ragged local descriptors, which set_output(transform="
            f"{config!r}) cannot hold; use set_output(transform='default')")


#: The extractor's parameters' constraints (scikit-learn's validation at ``fit``).
PARAMETER_CONSTRAINTS: dict = {
    "backbone": [str],  # checked against the registry in fit (it can grow)
    "layer": [str, list, tuple, None],
    "pooling": [StrOptions({"mean", "max"}), None],
    "scales": [list, tuple],
    "scale_combination": [StrOptions({"pool", "concat"})],
    "weights": [str, os.PathLike, None],
    "l2_normalize": ["boolean"],
    "precision": [StrOptions(set(PRECISIONS) | {"int8"})],
    "engine": [StrOptions(set(ENGINES))],
    "calibration": [Interval(Integral, 1, None, closed="left"), "array-like"],
    "device": [str],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "cache": ["boolean", str, os.PathLike],
    "verbose": ["verbose"],
    "random_state": ["random_state"],
}


class CNNFeatureExtractor(SessionCacheOnClone, TransformerMixin, BaseEstimator):
    """Activations of a pretrained CNN as features, at one or several input scales.

    Each image is squashed to a square of side ``224 + 320·n`` for every scale ``n`` in
    ``scales`` (the report's multi-scale inputs), run through the backbone — VGG's ``fc1``
    and ``fc2`` as convolutions, so they give a spatial map at any scale — and the chosen
    layers' maps are pooled over positions, then L2-normalised.

    Activations are cached by image content (see :mod:`cnnfeatures.cache`): one forward pass
    per image and scale computes every layer a grid search is likely to ask for (VGG:
    ``block5_pool``, ``fc1``, ``fc2``; plus the asked layers) under both poolings, so the
    clones that ``GridSearchCV`` makes for each candidate and fold reuse it.

    Parameters
    ----------
    backbone : str, default="vgg16"
        A key of :data:`cnnfeatures.backbones.BACKBONES` (vgg16, vgg19, xception, resnet50, ...).
    layer : str or sequence of str, default=None
        Layer(s) to read; several layers' features are concatenated in the order given.
        None: the backbone's last pooled block (VGG: ``block5_pool``), which needs no
        classifier top in the weights file.
    pooling : {"mean", "max"} or None, default="mean"
        Pooling over spatial positions. None returns local descriptors — one row per
        position of every scale, per image — as a :class:`~cnnfeatures.LocalDescriptors`
        (one layer only), which :class:`VLADEncoder` aggregates.
    scales : tuple of int, default=(0,)
        Scale numbers ``n``; the input side is ``224 + 320·n`` (224, 544, 864, ...).
    scale_combination : {"pool", "concat"}, default="pool"
        How several scales combine. ``"pool"``: the per-scale pooled vectors are pooled
        again with the same pooling — the maximum over all positions of all scales for
        ``"max"``, the average of the per-scale means for ``"mean"`` (each scale weighs the
        same, so the many positions of a large scale do not drown the others); the length
        does not depend on the number of scales. ``"concat"``: per-scale vectors are
        concatenated (scale by scale within each layer).
    weights : "imagenet", str, Path or None, default="imagenet"
        ImageNet weights from Keras' cache, a Keras weights file, or None (random).
    l2_normalize : bool, default=True
        Divide each layer's vector (each scale's, with ``"concat"``; each descriptor, with
        ``pooling=None``) by its L2 norm.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Precision of the convolutions; features are float32 either way. ``"bfloat16"`` is
        3–5 times faster on CPUs with AMX / AVX-512 BF16 and changes features by under 1%
        (relative); ``"float16"`` is for GPUs. See :mod:`cnnfeatures.backbones`.
    engine : {"keras", "openvino"}, default="keras"
        What runs the network. ``"openvino"`` (the ``openvino`` extra) converts it for
        OpenVINO's CPU runtime, in ``precision`` ``"float32"``, ``"bfloat16"`` or
        ``"int8"`` (post-training quantization at ``fit``: 4-6 times Keras' float32 speed
        on CPUs with VNNI or AMX, see docs/extraction.md). Part of the cache keys.
    calibration : int or sequence of image sources, default=300
        With ``engine="openvino", precision="int8"``: how many of the images ``fit`` gets
        calibrate the quantization (evenly spaced through them), or the images to use —
        pass a fixed set in a grid search, so that every candidate and fold shares one
        int8 model and its cache entries. See :mod:`cnnfeatures.extraction.calibration`.
    device : {"auto", "cpu", "gpu", "gpu:N"}, default="auto"
        Where the network runs: Keras' choice, or the one named (an error at ``fit``
        where the backend does not see it). See :mod:`cnnfeatures.devices`.
    batch_size : int, default=16
        Images per forward pass at side 224; larger sides take proportionally fewer.
    cache : bool or str or Path, default=True
        True: the process-wide memory cache (plus ``$CNNFEATURES_CACHE_DIR`` on disk when
        set); a path: memory plus that directory, shared between processes; False: none.
    verbose : int, default=0
        0 is silent; 1 says when a network is built and shows the forward passes' progress:
        a bar on a terminal, a line every 10 seconds in a log file.
    random_state : int, RandomState or None, default=None
        With ``weights=None`` only: the seed of the random network — an int is the seed,
        a RandomState gives one, None means seed 0 (so that the clones of a grid search
        share one network and its cache entries). The seed is kept in the fitted
        extractor: a pickled pipeline rebuilds the very same network in any process.

    Attributes
    ----------
    layers_ : tuple of str
        The layers read, in output order.
    input_sides_ : tuple of int
        Input side of each scale.
    layer_widths_ : tuple of int
        Number of channels of each layer.
    n_features_out_ : int
        Number of output features (columns), or the descriptor width with ``pooling=None``.
    settings_ : ExtractionSettings
        Everything that decides the features, as fitted (parameters changed later with
        ``set_params`` take effect at the next ``fit``).
    weights_fingerprint_ : str
        Identity of the weights the network was built from (a digest of a weights file's
        content, ``"imagenet"``, or ``"random-<seed>"``). ``transform`` refuses to run when
        the weights now give another fingerprint (a replaced file).
    random_seed_ : int or None
        The seed of a random network (``weights=None``), else None.

    See Also
    --------
    cnnfeatures.VLADEncoder : aggregates local descriptors (``pooling=None``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnfeatures import CNNFeatureExtractor
    >>> images = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    >>> ext = CNNFeatureExtractor(backbone="vgg16", layer="block5_pool", pooling="mean",
    ...                           weights=None)
    >>> ext.fit_transform(images).shape
    (2, 512)
    """

    _parameter_constraints: dict = PARAMETER_CONSTRAINTS

    def __init__(
        self,
        backbone: str = "vgg16",
        layer: str | Sequence[str] | None = None,
        pooling: str | None = "mean",
        scales: Sequence[int] = (0,),
        scale_combination: str = "pool",
        weights: str | os.PathLike[str] | None = "imagenet",
        l2_normalize: bool = True,
        precision: str = "float32",
        engine: str = "keras",
        calibration: int | Sequence = 300,
        device: str = "auto",
        batch_size: int = 16,
        cache: bool | str | os.PathLike[str] = True,
        verbose: int = 0,
        random_state=None,
    ):
        self.backbone = backbone
        self.layer = layer
        self.pooling = pooling
        self.scales = scales
        self.scale_combination = scale_combination
        self.weights = weights
        self.l2_normalize = l2_normalize
        self.precision = precision
        self.engine = engine
        self.calibration = calibration
        self.device = device
        self.batch_size = batch_size
        self.cache = cache
        self.verbose = verbose
        self.random_state = random_state

    # -- sklearn plumbing
    def __sklearn_tags__(self):
        tags = image_input_tags(super().__sklearn_tags__())
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = []
        return tags

    def feature_network(self, precision: str | None = None) -> FeatureNetwork:
        """The network that computes the fitted extractor's features (its engine's), or
        the Keras network in ``precision`` when one is asked (Grad-CAM's gradients).

        Raises
        ------
        ValueError
            When the weights file has changed since ``fit`` (its content fingerprint
            differs): features would no longer match what later steps learnt.
        """
        check_is_fitted(self, "settings_")
        if precision is None:  # the engine that computes the features
            net = self.settings_.engine_network(getattr(self, "quantized_", None),
                                                verbose=self.verbose)
        else:
            net = self.settings_.network(precision, verbose=self.verbose)
        self.settings_.check_unchanged(self.weights_fingerprint_, net.fingerprint)
        return net

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Validate parameters and images, and build the network (no forward pass).

        Everything that decides what ``transform`` returns is fixed here (see
        ``settings_``): a ``set_params`` after ``fit`` takes effect at the next ``fit``.
        ``batch_size``, ``cache`` and ``verbose``, which change how features are computed
        but not their values, are read at each ``transform``.

        Parameters
        ----------
        X : sequence of image sources
            Paths or arrays (see :mod:`cnnfeatures.images`); only checked here.
        y : ignored

        Returns
        -------
        self : CNNFeatureExtractor
        """
        settings, card, self.quantized_ = fitted_settings(self, check_image_sources(X))
        self.settings_ = settings
        self.weights_fingerprint_ = card.fingerprint
        self.random_seed_ = settings.seed
        self.layers_ = settings.layers
        self.input_sides_ = settings.sides
        self.layer_widths_ = tuple(card.widths[name] for name in settings.layers)
        self.n_features_out_ = settings.n_features(self.layer_widths_)
        return self

    def _plan(self, cache: ActivationCache | None) -> ForwardPlan:
        settings = self.settings_
        now = settings.fingerprint()
        if now is not None:
            settings.check_unchanged(self.weights_fingerprint_, now)
        card = settings.card(cache, self.verbose, fingerprint=now)
        return ForwardPlan.of(card, self.feature_network, self.layers_, settings.pooling,
                              self.input_sides_)

    def _cache(self) -> ActivationCache | None:
        return cache_for(self.cache)

    def transform(self, X) -> np.ndarray | LocalDescriptors:
        """Features of each image.

        Parameters
        ----------
        X : sequence of image sources
            Paths or arrays of any size.

        Returns
        -------
        features : ndarray of shape (n_images, n_features_out_), float32
            Or, with ``pooling=None``, a :class:`~cnnfeatures.LocalDescriptors`.
        """
        check_is_fitted(self, "settings_")
        local = self.settings_.pooling is None
        if local:
            check_default_output(self)
        cache = self._cache()
        images = stream_activations(self._plan(cache), check_image_sources(X), cache,
                                    self.batch_size, self.verbose)
        if local:
            writer = DescriptorWriter(self.layer_widths_[0])
            for image in images:
                writer.append(*self.settings_.local_rows(image.activations))
            return writer.finish(self.get_feature_names_out())
        return np.stack([self.settings_.pooled_row(image.activations) for image in images])

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the output columns: ``<layer>_<pooling>_<i>``, with ``_n<scale>`` for
        ``scale_combination="concat"``.

        Examples
        --------
        >>> import numpy as np
        >>> ext = CNNFeatureExtractor(backbone="vgg16", layer=["fc1"], pooling="max",
        ...                           weights=None)
        >>> ext.fit([np.zeros((8, 8))]).get_feature_names_out()[:2]
        array(['fc1_max_0', 'fc1_max_1'], dtype=object)
        """
        check_is_fitted(self, "settings_")
        return self.settings_.feature_names(self.layer_widths_)

