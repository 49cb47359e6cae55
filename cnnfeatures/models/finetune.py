"""FineTunedCNNClassifier: an ImageNet network with a new head, chosen layers frozen."""

from __future__ import annotations

import os
from collections.abc import Sequence

from sklearn.utils._param_validation import StrOptions

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

__all__ = ["FineTunedCNNClassifier"]


class FineTunedCNNClassifier(KerasImageClassifier):
    """A pretrained CNN whose 1000-way layer is replaced by an n-way softmax (report §4.3).

    Parameters
    ----------
    backbone : str, default="vgg16"
        ``vgg16``, ``vgg19`` (Flatten → fc1 → fc2 → softmax) or any other registered
        backbone (global average pooling → head → softmax), e.g. ``xception``.
    weights : "imagenet", str, Path or None, default="imagenet"
        As for :class:`~cnnfeatures.CNNFeatureExtractor`.
    frozen : tuple of str, default=("blocks",)
        Parts whose weights stay fixed: ``"blocks"`` (the whole convolutional base),
        ``"block1"`` … ``"block5"`` (VGG blocks; for Xception ``"block1"`` … ``"block14"``),
        ``"fc1"``, ``"fc2"`` (with ``head="original"`` only: the dropout head's layers are
        new, so freezing them is an error) — the backbone's ``frozen_parts``. Table 8's
        rows are ``()``, ``("blocks",)``, ``("blocks", "fc1")``, ``("blocks", "fc2")``,
        ``("fc1",)``, ``("fc2",)``.
    head : {"original", "dropout"}, default="dropout"
        ``"original"``: VGG's fc1/fc2 (4096 units, ImageNet weights when available);
        ``"dropout"``: Figure 21's head, Dense(``head_units[0]``) → Dropout → Dense(
        ``head_units[1]``) → Dropout, freshly initialised.
    head_units : tuple of 2 ints, default=(1024, 512)
    dropout : float, default=0.5
    input_side : int, default=224
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Precision the network computes in, training included (Keras' mixed policies: the
        weights and the optimizer's state stay float32, and so does the softmax). On a
        processor with bfloat16 matrix units (Intel AMX, AVX-512 BF16) ``"bfloat16"``
        trains VGG-16 3–4 times faster than float32
        (``benchmarks/bench_training_precision.py``);
        elsewhere it can be slower. Part of the frozen prefix's cache key.
    device : {"auto", "cpu", "gpu", "gpu:N"}, default="auto"
        Where the network trains and predicts: Keras' choice (a GPU when its backend sees
        one), or the one named — an error at ``fit`` where the backend does not see it.
        Read again at prediction time, like ``n_jobs``. See :mod:`cnnfeatures.devices`.
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
        Random views drawn anew at every epoch (the frozen prefix then runs at every epoch
        too), or once, see ``augmentation_views``.
    augmentation_views : int or None, default=None
        With ``augmentation``: draw this many random views of each training image once,
        before training; every epoch then trains on one version of each image (the image or
        one of its views), drawn anew. With a frozen prefix (and ``cache_frozen``), its
        activations are computed once per view and cached, so an epoch costs what it costs
        without augmentation: how augmentation is affordable on a CPU (without one, the
        views are still fixed but the network runs whole at every epoch). An image's views
        depend only on ``random_state`` and its pixels, so the folds of a cross-validation
        share them. Memory: ``augmentation_views + 1`` times the images and their prefix
        activations. None: new views at every epoch.
    cache_frozen : bool or path, default=True
        Compute a frozen prefix once per image (without augmentation, or with
        ``augmentation_views``), its activations
        kept in the activation cache (True: the default one, see
        :func:`~cnnfeatures.cache.default_cache_dir`; a path: that directory, shared by
        every process and run that names it; False: not computed apart).
    checkpoint_dir : str, Path or None, default=None
        A folder where training saves its state after every epoch: the network's weights,
        the optimizer's and dropout's state, early stopping's best weights and counters,
        the history. A fit that was interrupted (the process killed, the machine lost) and
        is started again with the same parameters, weights file, images, labels and
        ``random_state`` (an int: with None or a RandomState every fit draws another seed,
        so a warning says there is nothing to resume and none is saved) resumes after its
        last finished epoch instead of from the start, on the batches the uninterrupted fit
        would have drawn; a finished fit removes its state. Fits of a grid search can
        share one folder (each has its own sub-folder, named by a digest of what it is).
        Not used for a ``warm_start`` fit of a fitted model.
    warm_start : bool, default=False
        Continue training the fitted network at the next ``fit`` (same classes) instead
        of building a new one.
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
        Epochs the network has trained in all: those of this fit, plus those of the fits
        it continued with ``warm_start=True`` (``history_`` holds this fit's).
    frozen_prefix_cached_ : bool
        Whether a frozen prefix ran once per image and the rest trained on its activations.
    epoch_seconds_ : list of float
        Wall time of each epoch.
    backbone_, input_side_, precision_ : str, int, str
        The backbone, input side and precision the model was built for (``predict`` uses
        these, whatever ``set_params`` said since).
    weights_fingerprint_ : str or None
        The pretrained weights the network started from (a digest of a weights file's
        content, or ``"imagenet"``); None for random weights. The fitted model holds its
        own weights: a later change to the file does not change its predictions.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnfeatures import FineTunedCNNClassifier
    >>> images = np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    >>> labels = ["normal", "pneumonia"] * 6
    >>> clf = FineTunedCNNClassifier(backbone="vgg16", weights=None, frozen=("blocks",),
    ...                              input_side=32, max_epochs=2, validation_fraction=0.34,
    ...                              random_state=0)
    >>> clf.fit(images, labels).predict(images).shape
    (12,)
    >>> clf.classes_.tolist(), clf.n_epochs_
    (['normal', 'pneumonia'], 2)
    """

    _parameter_constraints: dict = {
        **COMMON_CONSTRAINTS,
        "backbone": [str],
        "weights": [str, os.PathLike, None],
        "frozen": [tuple, list],
        "head": [StrOptions({"original", "dropout"})],
    }

    def __init__(self, backbone: str = "vgg16", weights: Weights = "imagenet",
                 frozen: Sequence[str] = ("blocks",), head: str = "dropout", *,
                 head_units: Sequence[int] = (1024, 512), dropout: float = 0.5,
                 input_side: int = 224, precision: str = "float32", device: str = "auto",
                 learning_rate: float = 1e-4, batch_size: int = 16, max_epochs: int = 300,
                 patience: int = 10, validation_fraction: float = 0.1,
                 class_weight: str | dict | None = None, augmentation: Augmentation = None,
                 augmentation_views: int | None = None, cache_frozen: bool | PathLike = True,
                 checkpoint_dir: PathLike | None = None, warm_start: bool = False,
                 random_state: RandomState = None, verbose: int = 0):
        super().__init__(
            backbone=backbone, weights=weights, head_units=head_units, dropout=dropout,
            input_side=input_side, precision=precision, device=device,
            learning_rate=learning_rate, batch_size=batch_size, max_epochs=max_epochs,
            patience=patience,
            validation_fraction=validation_fraction, class_weight=class_weight,
            augmentation=augmentation, augmentation_views=augmentation_views,
            cache_frozen=cache_frozen, checkpoint_dir=checkpoint_dir, warm_start=warm_start,
            random_state=random_state, verbose=verbose)
        self.frozen = frozen
        self.head = head

    def _check_structure(self, spec) -> None:
        """The frozen parts exist in this network, and none is a freshly initialised layer."""
        frozen = list(self.frozen)
        unknown = [part for part in frozen if part not in spec.frozen_parts]
        if unknown:
            raise ValueError(f"frozen: unknown part(s) {unknown} for backbone {spec.name!r}; "
                             f"valid parts: {list(spec.frozen_parts)}")
        fresh = [part for part in frozen if part in spec.fc_layers and self.head != "original"]
        if fresh:
            raise ValueError(
                f"frozen={tuple(self.frozen)!r} would freeze {fresh}, which the "
                f"head={self.head!r} initialises at random (it would never learn); freeze "
                "'blocks' only, or use head='original' to freeze VGG's own fc layers")

    def _is_frozen(self, name: str, base_names: set[str]) -> bool:
        if name in base_names:  # the convolutional base
            return "blocks" in self.frozen or name.split("_")[0] in self.frozen
        return name in self.frozen  # fc1, fc2; the new predictions layer always trains

    def _build(self, n_classes: int):
        keras = load_keras()
        layers = keras.layers

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
        out = dropout_head(x, n_classes, tuple(self.head_units), self.dropout,
                           dense_top=not original)
        model = keras.Model(base.input, out, name=f"finetuned_{spec.name}")
        self.fc_pretrained_ = load_pretrained_weights(model, spec.name, self.weights,
                                                      fc=original)
        base_names = {layer.name for layer in base.layers}
        for layer in model.layers:
            if layer.weights:
                layer.trainable = not self._is_frozen(layer.name, base_names)
        return model
