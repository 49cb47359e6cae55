"""The registry of backbones: what cnnfeatures knows of each network it can build.

A backbone is named by a plain string (``"vgg19"``), so estimators stay clonable and
grid-searchable. Its :class:`BackboneSpec` says how to build it, its input sizes, which
layers a forward pass caches, its blocks (what a fine-tuned classifier can freeze, where
the hybrid network cuts it) and its preprocessing. :func:`register_backbone` adds a
custom Keras model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..backend import load_keras

__all__ = ["BACKBONES", "VGG_FC_LAYERS", "BackboneSpec", "get_backbone", "on_unregister",
           "register_backbone", "unregister_backbone"]


@dataclass(frozen=True)
class BackboneSpec:
    """What cnnfeatures knows of one Keras application.

    Attributes
    ----------
    name : str
        Registry key (``"vgg19"``).
    module : str
        The ``keras.applications`` sub-module (constructor and ``preprocess_input``).
    constructor : str or callable
        The constructor's name in ``keras.applications`` (``"VGG19"``), or a function with
        the same signature (``include_top``, ``weights``, ``input_shape``) for a custom model.
    default_side : int
        The side the network was trained at.
    min_side : int
        The smallest input side Keras accepts for the convolutional base.
    fc_layers : tuple of str
        Dense layers of the top that cnnfeatures builds as convolutions (VGG only).
    pooled_layers : tuple of str
        Layers that every forward pass computes and caches, so that a grid search over them
        costs one pass (the report's ``block5_pool``, ``fc1``, ``fc2`` for VGG).
    preprocess : callable, optional
        Overrides ``keras.applications.<module>.preprocess_input``.
    blocks : tuple of str
        Names of the convolutional blocks, the prefixes of their layers' names
        (``"block1"`` … ``"block5"`` for VGG): the parts ``FineTunedCNNClassifier`` can
        freeze one by one.
    block_pools : tuple of str
        The pooled output of each block, in order (VGG: ``block1_pool`` … ``block5_pool``):
        where the hybrid network cuts VGG, and the layers of Grad-CAM's layer panel.
    explain_layer : str, optional
        The layer Grad-CAM explains by default (default: the last of ``block_pools``, else
        the last of ``pooled_layers``).
    """

    name: str
    module: str
    constructor: str | Callable
    default_side: int
    min_side: int
    fc_layers: tuple[str, ...] = ()
    pooled_layers: tuple[str, ...] = field(default_factory=tuple)
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None
    blocks: tuple[str, ...] = ()
    block_pools: tuple[str, ...] = ()
    explain_layer: str | None = None

    @property
    def last_block_pool(self) -> str:
        """The deepest pooled block output (``block5_pool`` for VGG)."""
        if self.block_pools:
            return self.block_pools[-1]
        return self.pooled_layers[-1]

    @property
    def default_explain_layer(self) -> str:
        return self.explain_layer or self.last_block_pool

    @property
    def frozen_parts(self) -> tuple[str, ...]:
        """What ``FineTunedCNNClassifier(frozen=...)`` may name: ``"blocks"`` (the whole
        convolutional base), each block, and the fc layers of the top."""
        return ("blocks", *self.blocks, *self.fc_layers[:2])

    @property
    def keras_constructor(self) -> Callable:
        if callable(self.constructor):
            return self.constructor
        keras = load_keras()

        return getattr(keras.applications, self.constructor)

    @property
    def preprocess_input(self) -> Callable[[np.ndarray], np.ndarray]:
        if self.preprocess is not None:
            return self.preprocess
        keras = load_keras()

        return getattr(keras.applications, self.module).preprocess_input


#: VGG's fully connected layers, which cnnfeatures builds as convolutions.
VGG_FC_LAYERS = ("fc1", "fc2", "predictions")
# Every block's pooled output lies on the way to fc2: pooling them as well costs next to
# nothing and lets a grid over any of them share one forward pass.
_VGG_POOLED = ("block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool",
               "fc1", "fc2")

_VGG_BLOCKS = tuple(f"block{i}" for i in range(1, 6))
_VGG_PARTS = dict(blocks=_VGG_BLOCKS, block_pools=tuple(f"{b}_pool" for b in _VGG_BLOCKS))


def _convnext(constructor: str) -> Callable:
    """A ConvNeXt constructor whose last layer has a name of its own.

    Built without its top, Keras' ConvNeXt ends in a LayerNormalization it does not name:
    ``layer_normalization``, ``layer_normalization_1``, ... after however many were built
    before in the process. The layer is renamed ``<model>_head_layernorm`` (the name Keras
    gives it in the model with a top) so that ``layer=`` can name it. Weights files do not
    mind: Keras saves layers under names of its own making, not the layers' names.
    """

    def build(include_top=False, weights=None, input_shape=(None, None, 3), **kwargs):
        model = getattr(load_keras().applications, constructor)(
            include_top=include_top, weights=weights, input_shape=input_shape, **kwargs)
        if not include_top:
            model.layers[-1].name = f"{model.name}_head_layernorm"
        return model

    build.__name__ = build.__qualname__ = constructor
    return build


def _convnext_spec(size: str) -> BackboneSpec:
    name = f"convnext_{size}"
    return BackboneSpec(name, "convnext", _convnext(f"ConvNeXt{size.title()}"), 224, 32, (),
                        (f"{name}_head_layernorm",))


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("vgg16", "vgg16", "VGG16", 224, 32, VGG_FC_LAYERS, _VGG_POOLED, **_VGG_PARTS),
        BackboneSpec("vgg19", "vgg19", "VGG19", 224, 32, VGG_FC_LAYERS, _VGG_POOLED, **_VGG_PARTS),
        BackboneSpec("xception", "xception", "Xception", 299, 71, (), ("block14_sepconv2_act",),
                     blocks=tuple(f"block{i}" for i in range(1, 15))),
        BackboneSpec("resnet50", "resnet", "ResNet50", 224, 32, (), ("conv5_block3_out",)),
        BackboneSpec("resnet101", "resnet", "ResNet101", 224, 32, (), ("conv5_block3_out",)),
        BackboneSpec(
            "inception_v3", "inception_v3", "InceptionV3", 299, 75, (), ("mixed10",)
        ),
        BackboneSpec(
            "densenet121", "densenet", "DenseNet121", 224, 32, (), ("relu",)
        ),
        BackboneSpec(
            "mobilenet_v2", "mobilenet_v2", "MobileNetV2", 224, 32, (), ("out_relu",)
        ),
        BackboneSpec(
            "efficientnet_b0", "efficientnet", "EfficientNetB0", 224, 32, (), ("top_activation",)
        ),
        # EfficientNetV2 and ConvNeXt scale their pixels inside the model
        # (include_preprocessing): their preprocess_input is the identity.
        BackboneSpec("efficientnetv2_b0", "efficientnet_v2", "EfficientNetV2B0", 224, 32, (),
                     ("top_activation",)),
        BackboneSpec("efficientnetv2_s", "efficientnet_v2", "EfficientNetV2S", 384, 32, (),
                     ("top_activation",)),
        _convnext_spec("tiny"),
        _convnext_spec("small"),
        _convnext_spec("base"),
    )
}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the registry (a custom Keras model, or a tiny one for tests).

    Examples
    --------
    >>> import keras
    >>> def tiny(include_top=False, weights=None, input_shape=(None, None, 3)):
    ...     x = keras.Input(input_shape)
    ...     return keras.Model(x, keras.layers.AveragePooling2D(8, name="pool8")(x))
    >>> _ = register_backbone(BackboneSpec("my_tiny", "", tiny, 32, 8, (), ("pool8",),
    ...                                    preprocess=lambda a: a))
    >>> unregister_backbone("my_tiny")
    """
    BACKBONES[spec.name] = spec
    return spec


#: Called with a backbone's name when it leaves the registry (the network memo forgets
#: what was built from it).
_ON_UNREGISTER: list[Callable[[str], None]] = []


def on_unregister(callback: Callable[[str], None]) -> None:
    """Have ``callback(name)`` called whenever a backbone is unregistered."""
    _ON_UNREGISTER.append(callback)


def unregister_backbone(name: str) -> None:
    """Remove a backbone from the registry (networks built from it are forgotten too)."""
    get_backbone(name)  # a ValueError listing the choices if there is none by that name
    del BACKBONES[name]
    for callback in _ON_UNREGISTER:
        callback(name)


def get_backbone(name: str) -> BackboneSpec:
    """Return the registry entry of a backbone; the error lists the choices.

    Examples
    --------
    >>> get_backbone("vgg19").fc_layers
    ('fc1', 'fc2', 'predictions')
    """
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}"
        ) from None
