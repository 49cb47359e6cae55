"""The base of the Keras classifiers: scikit-learn's API over a network that a subclass
builds, trained by the parts of this package.

The estimator states what to train: it checks its parameters, encodes the labels, carves
the validation split (:mod:`~cnnfeatures.models.inputs`), builds the network (the
subclass's ``_build``), runs a frozen prefix once per image where it can
(:mod:`~cnnfeatures.models.prefix`) and hands the epochs to a
:class:`~cnnfeatures.models.training.Trainer`, with a
:class:`~cnnfeatures.models.checkpoint.TrainingCheckpoint` when asked. The Keras model is
one flat functional graph (no nested sub-models), kept in ``model_``, so Grad-CAM can
reach any layer.
"""

from __future__ import annotations

import gc
import inspect
import os
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..augmentation import AugmentationPolicy, ImageAugmenter
from ..backbones import PRECISIONS, get_backbone, precision_policy, weights_fingerprint
from ..backend import keras_seeded, load_keras, quiet_retracing
from ..cache import SessionCacheOnClone, cache_for
from ..devices import check_device, device_scope
from ..images import check_image_sources, image_input_tags
from .checkpoint import checkpoint_for
from .inputs import (
    SmallDataWarning,
    draw_views,
    encode_targets,
    epoch_batches,
    held_out,
    load_batch,
    loss_weights,
)
from .prefix import CachedPrefix, frozen_prefix
from .saved import SavedKerasModel
from .training import Trainer

__all__ = ["COMMON_CONSTRAINTS", "KerasImageClassifier", "SHARED_PARAMETERS", "SmallDataWarning"]


#: The types of the parameters (for the signatures and their readers).
Weights = str | os.PathLike | None  # "imagenet", a weights file, or None (random)
PathLike = str | os.PathLike
Augmentation = ImageAugmenter | AugmentationPolicy | None
RandomState = int | np.random.RandomState | None


#: The constraints of the parameters every Keras classifier shares (each subclass's
#: ``_parameter_constraints`` takes them in, beside its own).
COMMON_CONSTRAINTS: dict = {
    "head_units": [tuple, list],
    "dropout": [Interval(Real, 0, 1, closed="left")],
    "input_side": [Interval(Integral, 32, None, closed="left")],
    "precision": [StrOptions(set(PRECISIONS))],
    "device": [str],
    "learning_rate": [Interval(Real, 0, None, closed="neither")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "max_epochs": [Interval(Integral, 1, None, closed="left")],
    "patience": [Interval(Integral, 0, None, closed="left")],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "class_weight": [StrOptions({"balanced"}), dict, None],
    "augmentation": [ImageAugmenter, AugmentationPolicy, None],
    "augmentation_views": [Interval(Integral, 1, None, closed="left"), None],
    "cache_frozen": ["boolean", str, os.PathLike],
    "checkpoint_dir": [str, os.PathLike, None],
    "warm_start": ["boolean"],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


def _unchanged(x):
    return x


class KerasImageClassifier(SessionCacheOnClone, SavedKerasModel, ClassifierMixin,
                           BaseEstimator):
    """Base class: subclasses define ``_build(n_classes)`` and list every parameter, their
    own and these, in their ``__init__``.

    ``_build`` returns the flat functional model with its frozen layers marked. When a
    prefix of it is frozen (see :func:`~cnnfeatures.models.prefix.frozen_prefix`) and no
    augmentation is asked (or a fixed number of views, ``augmentation_views``), that
    prefix runs once per image (and view) and the rest — the same layer objects — trains
    on the cached activations, many times faster per epoch.

    ``fit`` draws everything random from ``random_state`` (initial weights, dropout, the
    validation split, batches, augmentation) and leaves the global generators (Python's,
    NumPy's) as they were.
    """

    _cache_parameter = "cache_frozen"  # see SessionCacheOnClone


    def __init__(self, *, backbone: str, weights: Weights,
                 head_units: Sequence[int] = (1024, 512), dropout: float = 0.5,
                 input_side: int = 224, precision: str = "float32", device: str = "auto",
                 learning_rate: float = 1e-4, batch_size: int = 16, max_epochs: int = 300,
                 patience: int = 10, validation_fraction: float = 0.1,
                 class_weight: str | dict | None = None, augmentation: Augmentation = None,
                 augmentation_views: int | None = None, cache_frozen: bool | PathLike = True,
                 checkpoint_dir: PathLike | None = None, warm_start: bool = False,
                 random_state: RandomState = None, verbose: int = 0):
        self.backbone, self.weights, self.device = backbone, weights, device
        self.head_units, self.dropout, self.input_side = head_units, dropout, input_side
        self.precision, self.learning_rate = precision, learning_rate
        self.batch_size, self.max_epochs, self.patience = batch_size, max_epochs, patience
        self.validation_fraction, self.class_weight = validation_fraction, class_weight
        self.augmentation, self.augmentation_views = augmentation, augmentation_views
        self.cache_frozen, self.checkpoint_dir = cache_frozen, checkpoint_dir
        self.warm_start, self.random_state, self.verbose = warm_start, random_state, verbose

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self):
        tags = image_input_tags(super().__sklearn_tags__())
        tags.non_deterministic = True  # identical only on CPU with the same random_state
        return tags

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """The fitted backbone's ``preprocess_input`` of float RGB 0–255 images (the
        network's input; Grad-CAM feeds it too)."""
        backbone = getattr(self, "backbone_", self.backbone)
        return get_backbone(backbone).preprocess_input(
            np.asarray(images, dtype=np.float32).copy())

    def _check_structure(self, spec) -> None:
        """Subclasses check their structured parameters against the backbone here."""

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, *, groups=None, validation_data=None, sample_weight=None,
            callbacks=None):
        """Train with early stopping on the validation cross-entropy.

        Parameters
        ----------
        X : sequence of image sources
        y : array-like of shape (n_images,)
            Labels of any type.
        groups : array-like, optional
            Group of each image (a patient): the validation split keeps groups whole.
        validation_data : (X_val, y_val), optional
            Explicit validation images; ``validation_fraction`` is then not used.
        sample_weight : array-like of shape (n_images,), optional
            Weight of each training image in the loss (multiplied by ``class_weight``).
        callbacks : list of keras.callbacks.Callback, optional
            Called during training, after the early stopping and the epoch clock.

        Returns
        -------
        self

        Notes
        -----
        When no validation split can be carved (too few images per class or group), the
        network trains for ``max_epochs`` without early stopping and a
        :class:`SmallDataWarning` says so; ``best_epoch_`` is then the last epoch.
        """
        spec = get_backbone(self.backbone)
        self._check_parameters(spec)
        device = check_device(self.device)
        self.backbone_, self.input_side_, self.precision_ = (spec.name, self.input_side,
                                                             self.precision)
        sources = check_image_sources(X)
        self.classes_, targets = encode_targets(
            y, len(sources), self.classes_ if self._warm else None, self.class_weight)
        weights = loss_weights(targets, self.classes_, self.class_weight, sample_weight)
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        train_idx, validation = held_out(sources, targets, self.classes_, groups,
                                         validation_data, self.validation_fraction, seed,
                                         max_epochs=self.max_epochs)
        epochs_before = self.n_epochs_ if self._warm else 0
        with keras_seeded(seed), device_scope(device):  # weights and dropout's generators
            model = self._model()
        self.__dict__.pop("_cached_prefix", None)
        with quiet_retracing(), device_scope(device):
            history, cached, seconds = self._train(
                model, [sources[i] for i in train_idx], targets[train_idx],
                weights[train_idx], validation, seed, callbacks or [])
        self._record(model, history, cached, seconds)
        self.n_epochs_ += epochs_before  # a warm start trains the same network on
        return self

    def _check_parameters(self, spec) -> None:
        if self.augmentation_views is not None and self.augmentation is None:
            raise ValueError(f"augmentation_views={self.augmentation_views} draws views with "
                             "`augmentation`, which is None; pass an ImageAugmenter or "
                             "AugmentationPolicy, or leave augmentation_views=None")
        if self.input_side < spec.min_side:
            raise ValueError(f"input_side={self.input_side} is below {spec.name}'s minimum "
                             f"{spec.min_side}")
        units = tuple(self.head_units)
        if len(units) != 2 or not all(isinstance(u, Integral) and u > 0 for u in units):
            raise ValueError(f"head_units must be two positive integers, got "
                             f"{self.head_units!r}")
        self._check_structure(spec)

    @property
    def _warm(self) -> bool:
        return bool(self.warm_start) and hasattr(self, "model_")

    def _model(self):
        """A new network, or with ``warm_start`` the fitted one."""
        if self._warm:
            return self.model_
        self.__dict__.pop("model_", None)  # free the previous fit's model first
        # Keras models hold reference cycles: collect the fits before this one now, rather
        # than let their graphs and weights pile up until Python gets to them.
        gc.collect()
        with precision_policy(self.precision):  # this network's layers only
            return self._build(len(self.classes_))

    def _compiled(self, model):
        keras = load_keras()
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def _train(self, model, train_sources, train_targets, weights, validation, seed,
               callbacks):
        """Fit ``model`` on cached frozen-prefix activations when it can, else on images.
        Returns the history (a dict of lists, one value per epoch), whether the prefix was
        cached, and the epochs' wall times."""
        policy = self.augmentation.policy if isinstance(self.augmentation, ImageAugmenter) \
            else self.augmentation
        train_images = load_batch(train_sources, self.input_side)
        val_images = None if validation is None else load_batch(validation[0],
                                                                 self.input_side)
        views = policy is not None and self.augmentation_views is not None
        prefix = frozen_prefix(model)
        cached = prefix is not None and (policy is None or views) and bool(self.cache_frozen)
        checkpoint = None if self._warm else checkpoint_for(  # a warm start begins elsewhere
            self, seed, [train_images, train_targets, weights]
            + ([] if validation is None else [val_images, validation[1]]))
        if views:
            # A fixed set of views instead of new ones every epoch: their frozen prefix can
            # then be computed once, like that of the images themselves.
            train_images = draw_views(train_images, policy, self.augmentation_views, seed)
            policy = None
        if cached:
            self._cached_prefix = CachedPrefix(
                model, prefix, side=self.input_side_, preprocess=self.preprocess,
                cache=cache_for(self.cache_frozen),
                precision=self.precision_, batch_size=self.batch_size,
                name=self.backbone_)
            trainer = self._compiled(self._cached_prefix.head)
            # Batches cut from the arrays as they are needed: handed whole to Keras, the
            # activations (4 GB for the chest X-rays' block3_pool) would be copied again.
            data = epoch_batches(self._cached_prefix.activations(train_images),
                                 train_targets, self.batch_size, _unchanged, None, seed,
                                 weights, views=views)
            val_data = None if validation is None else epoch_batches(
                self._cached_prefix.activations(val_images), validation[1], self.batch_size,
                _unchanged, None, seed)
        else:
            trainer = self._compiled(model)
            data = epoch_batches(train_images, train_targets, self.batch_size,
                                 self.preprocess, policy, seed, weights, views=views)
            val_data = None if validation is None else (self.preprocess(val_images),
                                                        validation[1])
        loop = Trainer(max_epochs=self.max_epochs, patience=self.patience,
                       verbose=self.verbose, callbacks=callbacks, checkpoint=checkpoint)
        history = loop.fit(trainer, data, val_data)
        return history, cached, loop.epoch_seconds

    def _record(self, model, history, cached: bool, seconds) -> None:
        self.model_ = model
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.items()}
        losses = self.history_.get("val_loss", self.history_["loss"])
        self.best_epoch_ = (int(np.argmin(losses)) + 1 if "val_loss" in self.history_
                            else len(losses))
        self.n_epochs_ = len(losses)
        self.frozen_prefix_cached_ = cached
        self.epoch_seconds_ = list(seconds)
        # Provenance: which weights the network started from (a file by its content).
        self.weights_fingerprint_ = (None if self.weights is None
                                     else weights_fingerprint(self.weights))

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        sources = check_image_sources(X)
        # Predictions reuse the cached prefix too (the images a grid search scores are
        # those other folds trained on); pickles carry the whole model instead.
        cached = getattr(self, "_cached_prefix", None)
        out = []
        # Read at prediction time, as n_jobs is: a model fitted on a GPU predicts on the
        # CPU of a machine without one after set_params(device="cpu").
        with quiet_retracing(), device_scope(check_device(self.device)):
            for start in range(0, len(sources), self.batch_size):
                batch = load_batch(sources[start:start + self.batch_size], self.input_side_)
                if cached is not None:
                    out.append(cached.predict(batch))
                else:
                    out.append(np.asarray(self.model_.predict_on_batch(self.preprocess(
                        batch))))
        return np.concatenate(out).astype(np.float64)

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithms of :meth:`predict_proba` (a probability the float32 softmax rounded
        to 0 counts as float32's smallest normal number, about 1e-38: scores stay
        finite)."""
        return np.log(np.maximum(self.predict_proba(X), np.finfo(np.float32).tiny))

    def decision_function(self, X) -> np.ndarray:
        """scikit-learn's score: with two classes the log-odds of the second, shape
        (n_images,), positive where it is predicted; with more, each class's
        log-probability, shape (n_images, n_classes), whose arg-max is predicted.
        ``CalibratedClassifierCV`` calibrates it."""
        log_proba = self.predict_log_proba(X)
        return log_proba[:, 1] - log_proba[:, 0] if len(self.classes_) == 2 else log_proba

    def predict(self, X) -> np.ndarray:
        """The most probable class of each image."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


#: The parameters every Keras classifier shares, with their defaults: those of
#: :class:`KerasImageClassifier`'s ``__init__``, which each subclass lists again in its own.
SHARED_PARAMETERS: dict = {
    name: p.default for name, p in inspect.signature(KerasImageClassifier.__init__)
    .parameters.items() if p.default is not inspect.Parameter.empty}
