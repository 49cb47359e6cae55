"""HybridSepConvClassifier: frozen VGG blocks, then SeparableConv2D + BatchNorm blocks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral, Real

from sklearn.utils._param_validation import Interval

from ..backbones import get_backbone, load_pretrained_weights
from ..backend import load_keras
from .classifier import (
    COMMON_CONSTRAINTS,
    Augmentation,
    KerasImageClassifier,
    PathLike,
    RandomState,
    Weights,
)
from .heads import dropout_head

__all__ = ["HybridSepConvClassifier"]


class HybridSepConvClassifier(KerasImageClassifier):
    """The report's custom network (§4.4.2, Figures 31–32).

    VGG blocks 1 to ``frozen_blocks`` with ImageNet weights, frozen; then ``n_sep_blocks``
    blocks of three ``SeparableConv2D(filters, 3×3, padding="same", relu)`` with
    BatchNormalization after the first two, each ending in 2×2 max pooling; Flatten, Dense
    (``head_units[0]``) → Dropout → Dense(``head_units[1]``) → Dropout → softmax. With VGG-19,
    2 classes and 224×224 inputs: 30,020,930 parameters, as in Figures 31–32.

    Parameters
    ----------
    backbone : str, default="vgg16"
        ``"vgg16"``, ``"vgg19"``, or any registered backbone made of pooled blocks (its
        ``block_pools``), which the network cuts after block ``frozen_blocks``.
    weights : "imagenet", str, Path or None, default="imagenet"
    frozen_blocks : int, default=3
        VGG blocks kept (pretrained, frozen).
    n_sep_blocks : int, default=2
        Separable blocks added after them.
    filters : int, default=512
    batch_norm_momentum : float, default=0.9
        Momentum of the BatchNormalization moving statistics. Keras' default, 0.99, needs
        hundreds of steps before the statistics used at prediction time match the data:
        on a few hundred images and a few CPU epochs the network then predicts one class
        whatever it learned. 0.9 settles within a few dozen steps.
    head_units : tuple of 2 ints, default=(1024, 512)
    dropout : float, default=0.5
    input_side, precision, device, learning_rate, batch_size, max_epochs, patience, \
validation_fraction, class_weight, augmentation, augmentation_views, cache_frozen, \
checkpoint_dir, warm_start, random_state, verbose
        As for :class:`~cnnfeatures.FineTunedCNNClassifier`.

    Attributes
    ----------
    model_, classes_, history_, best_epoch_, n_epochs_, frozen_prefix_cached_, \
backbone_, input_side_, precision_, weights_fingerprint_
        As for :class:`~cnnfeatures.FineTunedCNNClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnfeatures import HybridSepConvClassifier
    >>> images = np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    >>> labels = ["normal", "pneumonia"] * 6
    >>> clf = HybridSepConvClassifier(weights=None, input_side=32, max_epochs=2,
    ...                               validation_fraction=0.34, random_state=0)
    >>> clf.fit(images, labels).predict_proba(images).shape
    (12, 2)
    """

    _parameter_constraints: dict = {
        **COMMON_CONSTRAINTS,
        "backbone": [str],  # a backbone with block_pools (checked against the registry)
        "weights": [str, os.PathLike, None],
        "frozen_blocks": [Interval(Integral, 1, 5, closed="both")],
        "n_sep_blocks": [Interval(Integral, 0, None, closed="left")],
        "filters": [Interval(Integral, 1, None, closed="left")],
        "batch_norm_momentum": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(self, backbone: str = "vgg16", weights: Weights = "imagenet",
                 frozen_blocks: int = 3, n_sep_blocks: int = 2, filters: int = 512,
                 batch_norm_momentum: float = 0.9, *,
                 head_units: Sequence[int] = (1024, 512), dropout: float = 0.5,
                 input_side: int = 224, precision: str = "float32", device: str = "auto",
                 learning_rate: float = 1e-4,
                 batch_size: int = 16, max_epochs: int = 300, patience: int = 10,
                 validation_fraction: float = 0.1, class_weight: str | dict | None = None,
                 augmentation: Augmentation = None, augmentation_views: int | None = None,
                 cache_frozen: bool | PathLike = True, checkpoint_dir: PathLike | None = None,
                 warm_start: bool = False, random_state: RandomState = None, verbose: int = 0):
        super().__init__(backbone=backbone, weights=weights, head_units=head_units,
                         dropout=dropout, input_side=input_side, precision=precision,
                         device=device,
                         learning_rate=learning_rate, batch_size=batch_size,
                         max_epochs=max_epochs, patience=patience,
                         validation_fraction=validation_fraction, class_weight=class_weight,
                         augmentation=augmentation, augmentation_views=augmentation_views,
                         cache_frozen=cache_frozen, checkpoint_dir=checkpoint_dir,
                         warm_start=warm_start, random_state=random_state, verbose=verbose)
        self.frozen_blocks = frozen_blocks
        self.n_sep_blocks = n_sep_blocks
        self.filters = filters
        self.batch_norm_momentum = batch_norm_momentum

    def _check_structure(self, spec) -> None:
        if not spec.block_pools:
            raise ValueError(f"backbone {spec.name!r} has no pooled blocks (block_pools) "
                             "to cut after: the hybrid network needs a VGG-like backbone, "
                             "such as 'vgg16' or 'vgg19'")
        if self.frozen_blocks > len(spec.block_pools):
            raise ValueError(f"frozen_blocks={self.frozen_blocks}: {spec.name} has "
                             f"{len(spec.block_pools)} blocks")
        n_pools = self.frozen_blocks + self.n_sep_blocks
        if self.input_side < 2**n_pools:
            raise ValueError(f"input_side={self.input_side} is too small for {n_pools} "
                             f"2x2 poolings (need at least {2**n_pools})")

    def _build(self, n_classes: int):
        keras = load_keras()
        layers = keras.layers

        spec = get_backbone(self.backbone)
        n_pools = self.frozen_blocks + self.n_sep_blocks
        base = spec.keras_constructor(include_top=False, weights=None,
                                      input_shape=(self.input_side, self.input_side, 3))
        x = base.get_layer(spec.block_pools[self.frozen_blocks - 1]).output
        # Keras' default Glorot initialisation counts a depthwise kernel's fan-in as 9 x
        # channels instead of 9, so each separable convolution shrinks its input about
        # sqrt(channels) times: three in a row leave ~1e-4 of the signal, and the moving
        # statistics of batch normalisation never catch up within a CPU budget (the
        # network predicted a uniform distribution). Variance-preserving initialisation:
        # 1/9 for the depthwise 3x3 (linear), He for the pointwise 1x1 (followed by ReLU).
        depthwise = keras.initializers.VarianceScaling(1.0, mode="fan_out",
                                                       distribution="truncated_normal")
        for b in range(self.frozen_blocks + 1, n_pools + 1):
            for c in range(1, 4):
                x = layers.SeparableConv2D(self.filters, 3, padding="same", activation="relu",
                                           depthwise_initializer=depthwise,
                                           pointwise_initializer="he_normal",
                                           name=f"sep_block{b}_conv{c}")(x)
                if c < 3:
                    x = layers.BatchNormalization(momentum=self.batch_norm_momentum,
                                                  name=f"sep_block{b}_bn{c}")(x)
            x = layers.MaxPooling2D(2, name=f"sep_block{b}_pool")(x)
        x = layers.Flatten(name="flatten")(x)
        out = dropout_head(x, n_classes, tuple(self.head_units), self.dropout)
        model = keras.Model(base.input, out, name=f"hybrid_{spec.name}")
        load_pretrained_weights(model, spec.name, self.weights)
        base_names = {layer.name for layer in base.layers}
        for layer in model.layers:
            if layer.name in base_names:  # the pretrained part
                layer.trainable = False
        return model
