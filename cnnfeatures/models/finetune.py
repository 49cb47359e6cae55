"""FineTunedCNNClassifier: an ImageNet network with a new head, chosen layers frozen."""

from __future__ import annotations

import os
from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ..backbones import get_backbone, get_feature_network
from ._base import KerasImageClassifier

__all__ = ["FineTunedCNNClassifier", "copy_backbone_weights"]


def copy_backbone_weights(model, backbone: str, weights, fc: bool = False) -> bool:
    """Load a backbone's weights into the layers of ``model`` that share their names.

    The weights come from :func:`~cnnfeatures.backbones.get_feature_network` (memoised:
    a grid search reads the file once). VGG's fc layers there are convolutions; their
    kernels are reshaped back to Dense kernels. Returns whether fc weights were loaded.
    """
    if weights is None:
        return False
    spec = get_backbone(backbone)
    net = get_feature_network(backbone, weights, need_fc=fc)
    source = {layer.name: layer for layer in net.model.layers}
    loaded_fc = False
    for layer in model.layers:
        if layer.name not in source or not layer.weights:
            continue
        if layer.name in spec.fc_layers:
            if not (fc and net.fc_pretrained):
                continue
            kernel, bias = source[layer.name].get_weights()
            if kernel.size != np.prod(layer.weights[0].shape):
                continue  # a head of another size: starts fresh
            layer.set_weights([kernel.reshape(layer.weights[0].shape), bias])
            loaded_fc = True
        else:
            layer.set_weights(source[layer.name].get_weights())
    return loaded_fc


class FineTunedCNNClassifier(KerasImageClassifier):
    """A pretrained CNN whose 1000-way layer is replaced by an n-way softmax (report §4.3).

    Parameters
    ----------
    backbone : str, default="vgg19"
        ``vgg16``, ``vgg19`` (Flatten → fc1 → fc2 → softmax) or any other registered
        backbone (global average pooling → head → softmax), e.g. ``xception``.
    weights : "imagenet", str, Path or None, default="imagenet"
        As for :class:`~cnnfeatures.CNNFeatureExtractor`.
    frozen : tuple of str, default=("blocks",)
        Parts whose weights stay fixed: ``"blocks"`` (the whole convolutional base),
        ``"block1"`` … ``"block5"`` (VGG blocks; for Xception ``"block1"`` … ``"block14"``),
        ``"fc1"``, ``"fc2"``. Table 8's rows are ``()``, ``("blocks",)``,
        ``("blocks", "fc1")``, ``("blocks", "fc2")``, ``("fc1",)``, ``("fc2",)``.
    head : {"original", "dropout"}, default="dropout"
        ``"original"``: VGG's fc1/fc2 (4096 units, ImageNet weights when available);
        ``"dropout"``: Figure 21's head, Dense(``head_units[0]``) → Dropout → Dense(
        ``head_units[1]``) → Dropout, freshly initialised.
    head_units : tuple of 2 ints, default=(1024, 512)
    dropout : float, default=0.5
    input_side : int, default=224
    learning_rate : float, default=1e-4
        Adam's learning rate (the report used 1e-6 for 300 epochs).
    batch_size : int, default=16
    max_epochs : int, default=300
    patience : int, default=10
        Epochs without a better validation loss before stopping; the best weights are kept.
    validation_fraction : float, default=0.1
        Stratified (or group-aware, with ``groups``) share of the training images held out
        for early stopping, when no ``validation_data`` is given.
    class_weight : "balanced", dict or None, default=None
    augmentation : ImageAugmenter, AugmentationPolicy or None, default=None
        Random views drawn anew at every epoch.
    cache_frozen : bool, default=True
        Compute a frozen prefix once per image (without augmentation).
    random_state : int, RandomState or None, default=None
    verbose : int, default=0
        Keras' progress display (1: bar, 2: one line per epoch).

    Attributes
    ----------
    model_ : keras.Model
        The trained flat functional model.
    classes_ : ndarray
    history_ : dict of lists
        Keras' history: ``loss``, ``val_loss``, ``accuracy``, ``val_accuracy`` per epoch.
    best_epoch_ : int
        Epoch (from 1) with the lowest validation loss, whose weights were restored.
    n_epochs_ : int
    frozen_prefix_cached_ : bool
        Whether a frozen prefix ran once per image and the rest trained on its activations.
    epoch_seconds_ : list of float
        Wall time of each epoch.
    weights_fingerprint_ : str or None
        The pretrained weights the network started from (a digest of a weights file's
        content, or ``"imagenet"``); None for random weights. The fitted model holds its
        own weights: a later change to the file does not change its predictions.

    Examples
    --------
    >>> from cnnfeatures import FineTunedCNNClassifier
    >>> clf = FineTunedCNNClassifier(backbone="vgg16", weights=None, frozen=("blocks",),
    ...                              max_epochs=2)
    >>> clf.fit(images, labels).predict(images)  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        **KerasImageClassifier._common_constraints,
        "backbone": [str],
        "weights": [str, os.PathLike, None],
        "frozen": [tuple, list],
        "head": [StrOptions({"original", "dropout"})],
        "head_units": [tuple, list],
        "dropout": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(
        self, backbone: str = "vgg19", weights="imagenet", frozen=("blocks",),
        head: str = "dropout", head_units=(1024, 512), dropout: float = 0.5,
        input_side: int = 224, learning_rate: float = 1e-4, batch_size: int = 16,
        max_epochs: int = 300, patience: int = 10, validation_fraction: float = 0.1,
        class_weight=None, augmentation=None, cache_frozen: bool = True, random_state=None,
        verbose: int = 0,
    ):
        super().__init__(
            backbone=backbone, weights=weights, head_units=head_units, dropout=dropout,
            input_side=input_side, learning_rate=learning_rate, batch_size=batch_size,
            max_epochs=max_epochs, patience=patience, validation_fraction=validation_fraction,
            class_weight=class_weight, augmentation=augmentation, cache_frozen=cache_frozen,
            random_state=random_state, verbose=verbose,
        )
        self.frozen = frozen
        self.head = head

    def _frozen_matcher(self, base_names: set[str]):
        frozen = set(self.frozen)
        valid = {"blocks", "fc1", "fc2"} | {f"block{i}" for i in range(1, 15)}
        unknown = sorted(frozen - valid)
        if unknown:
            raise ValueError(f"frozen: unknown part(s) {unknown}; choose among 'blocks', "
                             "'block1'...'block5' (VGG) or 'block14' (Xception), 'fc1', 'fc2'")

        def is_frozen(name: str) -> bool:
            if name in base_names:  # the convolutional base
                return "blocks" in frozen or name.split("_")[0] in frozen
            return name in frozen  # fc1, fc2; the new predictions layer always trains

        return is_frozen

    def _build(self, n_classes: int):
        import keras
        from keras import layers

        spec = get_backbone(self.backbone)
        side = self.input_side
        base = spec.keras_constructor(include_top=False, weights=None,
                                      input_shape=(side, side, 3))
        if spec.fc_layers:
            x = layers.Flatten(name="flatten")(base.output)
        else:
            x = layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
        original = self.head == "original" and bool(spec.fc_layers)
        if original:
            x = layers.Dense(4096, activation="relu", name="fc1")(x)
            x = layers.Dense(4096, activation="relu", name="fc2")(x)
        out = self._dropout_head(x, n_classes, dense_top=not original)
        model = keras.Model(base.input, out, name=f"finetuned_{spec.name}")
        self.fc_pretrained_ = copy_backbone_weights(
            model, spec.name, self.weights, fc=self.head == "original" and bool(spec.fc_layers)
        )
        is_frozen = self._frozen_matcher({layer.name for layer in base.layers})
        for layer in model.layers:
            if layer.weights:
                layer.trainable = not is_frozen(layer.name)
        return model
