"""Shared base of the Keras-backed classifiers: fit loop, early stopping, pickling, seeding,
frozen-prefix caching and on-the-fly augmentation.

The Keras model is built in ``fit`` from plain parameters and kept in ``model_``; it is
one flat functional graph (no nested sub-models), so Grad-CAM can reach any layer.
"""

from __future__ import annotations

import gc
import hashlib
import inspect
import io
import os
import sys
import tempfile
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from ..augmentation import AugmentationPolicy, ImageAugmenter
from ..backbones import PRECISIONS, get_backbone, precision_policy, weights_fingerprint
from ..backend import load_keras, quiet_retracing
from ..cache import default_cache_dir, get_cache, make_key
from ..images import check_image_sources, image_name, load_image
from ..instrumentation import count_forward
from ..messages import is_terminal
from ..targets import check_targets
from .checkpoint import TrainingCheckpoint

__all__ = ["KerasImageClassifier", "SHARED_PARAMETERS", "SmallDataWarning"]


def load_batch(sources, side: int) -> np.ndarray:
    """Decode and resize images to a uint8 (n, side, side, 3) array (compact in memory)."""
    return np.stack([
        np.rint(load_image(s, side, name=image_name(s, i))).astype(np.uint8)
        for i, s in enumerate(sources)
    ])


def _unchanged(x):
    return x


def _batches(images, targets, batch_size, preprocess, policy, seed, weights=None, *,
             views: bool = False):
    """A keras PyDataset over images (uint8) or activations (float32), in a new random
    order every epoch: preprocess per batch, augment on the fly. With ``views``,
    ``images[v, i]`` is view ``v`` of image ``i``: every epoch takes one view of each image,
    drawn anew.

    Everything random comes from ``seed`` and the epoch: an epoch's order and views from a
    generator of (seed, epoch), a batch's augmentation from one of (seed, epoch, batch). So
    the same fit gets the same batches in whatever order Keras asks for them, and a fit
    resumed at epoch ``e`` (``start(e)``) those the uninterrupted fit had. Fit it with
    ``shuffle=False``: Keras' own shuffling of the batches draws from NumPy's global
    generator, which whatever ran before the fit has advanced."""
    keras = load_keras()
    n_images = len(targets)

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.start(0)

        def __len__(self):
            return -(-n_images // batch_size)

        def start(self, epoch: int) -> None:
            """Serve the batches of ``epoch``."""
            self.epoch = epoch
            rng = np.random.RandomState([seed, epoch])
            self.order = rng.permutation(n_images)
            if views:
                self.view = rng.randint(len(images), size=n_images)

        def on_epoch_end(self):
            self.start(self.epoch + 1)

        def __getitem__(self, index):
            idx = self.order[index * batch_size : (index + 1) * batch_size]
            x = (images[self.view[idx], idx] if views else images[idx]).astype(np.float32)
            if policy is not None:  # a new random view of every image, every epoch
                rng = np.random.RandomState([seed, self.epoch, index])
                x = np.stack([policy(img, rng) for img in x])
            out = (preprocess(x), targets[idx])
            return out + (weights[idx],) if weights is not None else out

    return Batches()


def _draw_views(images, policy, n_views: int, seed: int) -> np.ndarray:
    """The images and ``n_views`` random views of each, as uint8 ``(n_views + 1, n, ...)``
    (the policy's output is on [0, 255]; rounding it keeps the views as compact as the
    images).

    Each image's views are drawn from its own generator, seeded by ``seed`` and the image's
    pixels: the same image gets the same views in every fold of a cross-validation and
    every fit of a grid search, so their cached prefixes serve them all."""
    views = np.empty((n_views + 1, *images.shape), np.uint8)
    views[0] = images
    for i, image in enumerate(images):
        rng = np.random.RandomState([seed, int(_pixels_digest(image)[:8], 16)])
        for v in range(1, n_views + 1):
            views[v, i] = np.rint(policy(image.astype(np.float32), rng))
    return views


class _EpochClock:
    """A Keras callback recording each epoch's wall time (for ``epoch_seconds_``)."""

    def __new__(cls):
        import time

        keras = load_keras()

        class Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)

        return Clock()


def _pixels_digest(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=20).hexdigest()


def _prefix_identity(model, cut: int, side: int) -> str:
    """A digest of what a frozen prefix computes: its layers (class and configuration)
    and their weight values, and the input side. Two prefixes with this digest give the
    same activations, whatever fit, estimator or process built them."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"side {side}".encode())
    for layer in model.layers[: cut + 1]:
        # Keras numbers automatic names per process (input_layer_3): leave names out.
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        h.update(f"{type(layer).__name__} {config}".encode())
        for weight in layer.get_weights():
            h.update(np.ascontiguousarray(weight).data)
    return h.hexdigest()


def chain_start(model) -> int:
    """Index of the first layer from which ``model.layers`` is a plain chain to the output.

    The trainable rest after a cached prefix is rebuilt by applying layers one after the
    other, which is only right where the graph is a chain (VGG everywhere; Xception only
    after its residual blocks).
    """
    layers = model.layers
    i = len(layers) - 1
    while i > 0 and layers[i].input is layers[i - 1].output:
        i -= 1
    return i


def frozen_prefix(model) -> str | None:
    """Last layer of the longest frozen, deterministic prefix at a chain point, or None.

    A layer belongs to the prefix when it is frozen (or has no weights) and behaves the same
    in training and inference (no Dropout, no trainable BatchNormalization).
    """
    keras = load_keras()

    start = chain_start(model)
    last = None
    for i, layer in enumerate(model.layers):
        stochastic = isinstance(layer, (keras.layers.Dropout, keras.layers.GaussianNoise))
        if stochastic or (layer.trainable and layer.trainable_weights):
            break
        if i >= max(start - 1, 1):
            last = layer.name
    return last


class SmallDataWarning(UserWarning):
    """No validation split could be carved from the training images: no early stopping."""


#: The parameters every Keras classifier shares, with their defaults, declared once: each
#: subclass's signature is its own parameters followed by these (see __init_subclass__).
SHARED_PARAMETERS: dict = {
    "head_units": (1024, 512),
    "dropout": 0.5,
    "input_side": 224,
    "precision": "float32",
    "learning_rate": 1e-4,
    "batch_size": 16,
    "max_epochs": 300,
    "patience": 10,
    "validation_fraction": 0.1,
    "class_weight": None,
    "augmentation": None,
    "augmentation_views": None,
    "cache_frozen": True,
    "checkpoint_dir": None,
    "warm_start": False,
    "random_state": None,
    "verbose": 0,
}


class KerasImageClassifier(ClassifierMixin, BaseEstimator):
    """Base class: subclasses define ``_build(n_classes)`` and their own parameters.

    ``_build`` returns the flat functional model with its frozen layers marked. When a
    prefix of it is frozen (see :func:`frozen_prefix`) and no augmentation is asked (or a
    fixed number of views, ``augmentation_views``), that prefix runs once per image (and
    view) and the rest — the same layer objects — trains on the cached activations, many
    times faster per epoch.

    ``fit`` seeds Keras with ``keras.utils.set_random_seed``, which also seeds Python's and
    NumPy's global generators: the price of reproducible Keras training.
    """

    _common_constraints: dict = {
        "head_units": [tuple, list],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "input_side": [Interval(Integral, 32, None, closed="left")],
        "precision": [StrOptions(set(PRECISIONS))],
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

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # scikit-learn reads an estimator's parameters from its __init__ signature: show
        # the subclass's own parameters, then the shared ones, as keywords with defaults.
        own = [p for name, p in inspect.signature(cls.__init__).parameters.items()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                  for name, default in SHARED_PARAMETERS.items()]
        cls.__init__.__signature__ = inspect.Signature(own + shared)

    def __init__(self, *, backbone, weights, **shared):
        unknown = sorted(set(shared) - set(SHARED_PARAMETERS))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s) "
                            f"{unknown}")
        self.backbone = backbone
        self.weights = weights
        for name, default in SHARED_PARAMETERS.items():
            setattr(self, name, shared.get(name, default))  # stored untouched

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
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

    def _dropout_head(self, x, n_classes: int, *, dense_top: bool = True):
        """Figure 21's head on ``x``: Dense → Dropout → Dense → Dropout → softmax.

        With ``dense_top=False`` only the softmax is added (a head already built).
        """
        layers = load_keras().layers

        if dense_top:
            units = tuple(self.head_units)
            x = layers.Dense(units[0], activation="relu", name="fc1")(x)
            x = layers.Dropout(self.dropout, name="dropout1")(x)
            x = layers.Dense(units[1], activation="relu", name="fc2")(x)
            x = layers.Dropout(self.dropout, name="dropout2")(x)
        # float32 whatever the precision: a softmax in bfloat16 (8 bits of mantissa) rounds
        # probabilities near 1 to 1, and the cross-entropy and thresholds read them.
        return layers.Dense(n_classes, activation="softmax", dtype="float32",
                            name="predictions")(x)

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
        keras = load_keras()

        spec = get_backbone(self.backbone)
        self._check_common(spec)
        self._check_structure(spec)
        self.backbone_, self.input_side_, self.precision_ = (spec.name, self.input_side,
                                                             self.precision)
        sources = check_image_sources(X)
        targets = self._encode_targets(y, len(sources))
        weights = self._sample_weights(targets, sample_weight)
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        keras.utils.set_random_seed(seed)  # initial weights, dropout, shuffling
        train_idx, validation = self._validation(sources, targets, groups, validation_data,
                                                 seed)
        model = self._model()
        self.__dict__.pop("_cached_prefix", None)
        with quiet_retracing():
            history, cached = self._train(model, [sources[i] for i in train_idx],
                                          targets[train_idx], weights[train_idx], validation,
                                          seed, callbacks or [])
        self._record(model, history, cached)
        return self

    def _check_common(self, spec) -> None:
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

    def _encode_targets(self, y, n_images: int) -> np.ndarray:
        """Check the labels, set ``classes_`` and return each label's class index."""
        y = check_targets(y, n_images)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"y has a single class {classes.tolist()}; need at least 2")
        if self._warm and not np.array_equal(classes, self.classes_):
            raise ValueError(f"warm_start=True: y has classes {classes.tolist()}, the "
                             f"fitted model has {self.classes_.tolist()}")
        self.classes_ = classes
        self._check_class_weight()
        return np.searchsorted(classes, y)

    @property
    def _warm(self) -> bool:
        return bool(self.warm_start) and hasattr(self, "model_")

    def _validation(self, sources, targets, groups, validation_data, seed):
        """Training indices, and the validation (images, class indices) or None."""
        if validation_data is not None:
            val_sources = check_image_sources(validation_data[0], name="validation X")
            val_y = check_targets(validation_data[1], len(val_sources), name="validation y")
            unknown = sorted(set(val_y.tolist()) - set(self.classes_.tolist()), key=str)
            if unknown:
                raise ValueError(f"validation y holds class(es) {unknown} that y does not; "
                                 f"classes are {self.classes_.tolist()}")
            return np.arange(len(sources)), (val_sources, np.searchsorted(self.classes_,
                                                                          val_y))
        if groups is not None and len(groups) != len(sources):
            raise ValueError(f"groups has {len(groups)} entries for {len(sources)} images")
        split = self._split(targets, groups, seed)
        if split is None:
            return np.arange(len(sources)), None
        train_idx, val_idx = split
        return train_idx, ([sources[i] for i in val_idx], targets[val_idx])

    def _split(self, targets, groups, seed):
        if groups is not None:
            splitter = GroupShuffleSplit(1, test_size=self.validation_fraction,
                                         random_state=seed)
            split = next(splitter.split(np.zeros(len(targets)), targets, groups))
            if len(split[0]) and len(split[1]):
                return split
            reason = f"{len(set(groups))} group(s)"
        else:
            splitter = StratifiedShuffleSplit(1, test_size=self.validation_fraction,
                                              random_state=seed)
            try:
                return next(splitter.split(np.zeros(len(targets)), targets))
            except ValueError as exc:
                reason = str(exc)
        warnings.warn(
            f"cannot carve a validation set of fraction {self.validation_fraction} from "
            f"{len(targets)} images ({reason}): training for max_epochs={self.max_epochs} "
            "without early stopping; pass validation_data or more images to stop early",
            SmallDataWarning, stacklevel=4)
        return None

    def _model(self):
        """A new network, or with ``warm_start`` the fitted one, compiled."""
        keras = load_keras()

        if self._warm:
            model = self.model_
        else:
            self.__dict__.pop("model_", None)  # free the previous fit's model first
            # Keras models hold reference cycles: collect the fits before this one now,
            # rather than let their graphs and weights pile up until Python gets to them.
            gc.collect()
            with precision_policy(self.precision):  # this network's layers only
                model = self._build(len(self.classes_))
        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def _train(self, model, train_sources, train_targets, weights, validation, seed,
               callbacks):
        """Fit ``model``: on cached frozen-prefix activations when it can, else on images.
        Returns the history (a dict of lists, one value per epoch) and whether the prefix
        was cached."""
        keras = load_keras()

        policy = self.augmentation.policy if isinstance(self.augmentation, ImageAugmenter) \
            else self.augmentation
        train_images = load_batch(train_sources, self.input_side)
        val_images = None if validation is None else load_batch(validation[0],
                                                                 self.input_side)
        checkpoint = self._checkpoint(train_images, train_targets, weights, val_images,
                                      validation, seed)
        views = policy is not None and self.augmentation_views is not None
        if views:
            # A fixed set of views instead of new ones every epoch: their frozen prefix can
            # then be computed once, like that of the images themselves.
            train_images = _draw_views(train_images, policy, self.augmentation_views, seed)
            policy = None
        prefix = frozen_prefix(model)
        cached = prefix is not None and policy is None and bool(self.cache_frozen)
        if cached:
            trainer, x_train, x_val = self._head_on_cached_prefix(model, prefix, train_images,
                                                                  val_images)
            trainer.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                            loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            # Batches cut from the arrays as they are needed: handed whole to Keras, the
            # activations (4 GB for the chest X-rays' block3_pool) would be copied again.
            data = _batches(x_train, train_targets, self.batch_size, _unchanged, None, seed,
                            weights, views=views)
            val_data = None if validation is None else _batches(
                x_val, validation[1], self.batch_size, _unchanged, None, seed)
        else:
            trainer = model
            data = _batches(train_images, train_targets, self.batch_size, self.preprocess,
                            policy, seed, weights, views=views)
            val_data = None if validation is None else (self.preprocess(val_images),
                                                        validation[1])
        history = self._fit_keras(trainer, data, val_data, checkpoint, callbacks)
        return history, cached

    def _fit_keras(self, trainer, data, val_data, checkpoint, callbacks) -> dict:
        """``trainer.fit`` with early stopping (when there is validation data), the epoch
        clock and, with a checkpoint, the state saved after every epoch: a fit started
        again resumes after the last epoch saved."""
        keras = load_keras()

        self._clock = _EpochClock()
        stopping = None if val_data is None else keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=self.patience, restore_best_weights=True)
        every = [c for c in (stopping, self._clock) if c is not None]
        state, saver, initial_epoch = None, None, 0
        if checkpoint is not None:
            state = checkpoint.load()
            if state is not None:
                initial_epoch = self.max_epochs if state["stopped"] else state["epochs"]
            saver = checkpoint.callback(state, stopping, self._clock)
            every.append(saver)  # after the two it restores, before callbacks that may raise
            data.start(initial_epoch)  # the batches the uninterrupted fit trains on next
        everything = every + list(callbacks)
        # shuffle=False: the batches shuffle themselves, from the fit's seed (_batches).
        history = trainer.fit(data, validation_data=val_data, epochs=self.max_epochs,
                              initial_epoch=min(initial_epoch, self.max_epochs),
                              shuffle=False, callbacks=everything,
                              verbose=self._keras_verbose())
        if saver is None:
            return history.history
        checkpoint.remove()  # trained: what it kept is in the model now
        return saver.history

    def _checkpoint(self, train_images, train_targets, weights, val_images, validation,
                    seed) -> TrainingCheckpoint | None:
        """This fit's checkpoint in ``checkpoint_dir``, keyed by everything that makes the
        fit what it is (so a fit resumes only its own state), or None."""
        if self.checkpoint_dir is None or self._warm:  # a warm start begins elsewhere
            return None
        if not isinstance(self.random_state, Integral):
            warnings.warn(
                f"checkpoint_dir={str(self.checkpoint_dir)!r} needs an int random_state: "
                f"with random_state={self.random_state!r} every fit draws another seed, so "
                "no fit could resume this one's state; none is saved.", UserWarning,
                stacklevel=4)
            return None
        params = {k: v for k, v in sorted(self.get_params(deep=False).items())
                  if k not in ("verbose", "checkpoint_dir", "cache_frozen", "weights")}
        # Whether the prefix is cached decides which network trains (the head alone, or
        # the whole); the weights file counts by its content, not its path.
        parts = [type(self).__name__, repr(params), str(seed), str(bool(self.cache_frozen)),
                 "random" if self.weights is None else weights_fingerprint(self.weights),
                 _pixels_digest(train_images), _pixels_digest(train_targets),
                 _pixels_digest(weights)]
        if validation is not None:
            parts += [_pixels_digest(val_images), _pixels_digest(validation[1])]
        return TrainingCheckpoint(self.checkpoint_dir, make_key("fit", *parts))

    def _record(self, model, history, cached: bool) -> None:
        self.model_ = model
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.items()}
        losses = self.history_.get("val_loss", self.history_["loss"])
        self.best_epoch_ = (int(np.argmin(losses)) + 1 if "val_loss" in self.history_
                            else len(losses))
        self.n_epochs_ = len(losses)
        self.frozen_prefix_cached_ = cached
        self.epoch_seconds_ = self._clock.seconds
        del self._clock
        # Provenance: which weights the network started from (a file by its content).
        self.weights_fingerprint_ = (None if self.weights is None
                                     else weights_fingerprint(self.weights))

    def _keras_verbose(self) -> int:
        """Keras' display: its bar rewrites one line with control characters, which a log
        file keeps as garbage; there, one line per epoch instead."""
        if not self.verbose:
            return 0
        return self.verbose if is_terminal(sys.stdout) else 2

    def _check_class_weight(self) -> None:
        if not isinstance(self.class_weight, dict):
            return
        classes = set(self.classes_.tolist())
        unknown = [key for key in self.class_weight if key not in classes]
        if unknown:
            raise ValueError(f"class_weight names class(es) {unknown} that y does not hold; "
                             f"classes are {self.classes_.tolist()}")

    def _sample_weights(self, targets, sample_weight=None) -> np.ndarray:
        """Per-image loss weights: ``class_weight`` times ``sample_weight`` (ones if none)."""
        weights = np.ones(len(targets), np.float32)
        if self.class_weight == "balanced":
            classes = np.arange(len(self.classes_))
            weights *= compute_class_weight("balanced", classes=classes, y=targets)[targets]
        elif self.class_weight is not None:
            per_class = np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_])
            weights *= per_class[targets]
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, np.zeros((len(targets), 1)),
                                                 dtype=np.float32)
            weights *= sample_weight
        return weights.astype(np.float32)

    def _head_on_cached_prefix(self, model, prefix, train_images, val_images):
        """Run the frozen prefix once per image, and build the trainable rest as a model
        that shares the full model's layers (so training it trains ``model``).
        ``val_images`` may be None (no validation split).

        The prefix's activations go to the activation cache (see
        :func:`~cnnfeatures.cache.get_cache`), keyed by the image's pixels and the prefix's
        identity — its layers' names and weight values, the input side — so the fits of a
        grid search over anything after the prefix (learning rate, dropout, head) compute
        each image's prefix once, in one process or, with a shared cache directory, many.
        """
        keras = load_keras()

        names = [layer.name for layer in model.layers]
        cut = names.index(prefix)
        prefix_model = keras.Model(model.input, model.get_layer(prefix).output)
        identity = _prefix_identity(model, cut, self.input_side_)
        cache = get_cache(default_cache_dir() if self.cache_frozen is True
                          else self.cache_frozen)
        # Views (v, n, side, side, 3) go through the prefix as one list of images.
        flat = train_images.reshape(-1, *train_images.shape[-3:])
        x_flat = self._prefix_activations(prefix_model, flat, identity, cache)
        x_train = x_flat.reshape(*train_images.shape[:-3], *x_flat.shape[1:])
        x_val = (None if val_images is None else
                 self._prefix_activations(prefix_model, val_images, identity, cache))
        with precision_policy(self.precision_):  # float16's loss scaling comes with it
            head_input = keras.Input(x_flat.shape[1:])
            x = head_input
            for layer in model.layers[cut + 1:]:
                x = layer(x)
            head = keras.Model(head_input, x)
        # Predictions reuse the cached prefix too (the images a grid search scores are
        # those other folds trained on); pickles carry the whole model instead.
        self._cached_prefix = (prefix_model, head, identity, cache)
        return head, x_train, x_val

    def _prefix_activations(self, prefix_model, images, identity: str, cache):
        """The prefix's output for uint8 images, from the cache where it has them."""
        shape = tuple(int(d) for d in prefix_model.output.shape[1:])
        out = np.empty((len(images), *shape), np.float32)
        keys = [make_key("frozen prefix", identity, _pixels_digest(image)) for image in images]
        todo = []
        for i, key in enumerate(keys):
            value = cache.get(key, shape) if cache is not None else None
            if value is None:
                todo.append(i)
            else:
                out[i] = value
        step = max(1, self.batch_size)
        for start in range(0, len(todo), step):
            batch = todo[start:start + step]
            values = np.asarray(prefix_model.predict_on_batch(self.preprocess(images[batch])))
            count_forward(f"{self.backbone_} frozen prefix", identity,
                          self.precision_, self.input_side_, len(batch))
            for i, value in zip(batch, values):
                out[i] = value
                if cache is not None:
                    cache.put(keys[i], value)
        return out

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        sources = check_image_sources(X)
        cached = getattr(self, "_cached_prefix", None)
        out = []
        with quiet_retracing():
            for start in range(0, len(sources), self.batch_size):
                batch = load_batch(sources[start:start + self.batch_size], self.input_side_)
                if cached is not None:  # the frozen prefix from the cache, then the head
                    prefix_model, head, identity, cache = cached
                    x = self._prefix_activations(prefix_model, batch, identity, cache)
                    out.append(np.asarray(head.predict_on_batch(x)))
                else:
                    out.append(np.asarray(self.model_.predict_on_batch(self.preprocess(
                        batch))))
        return np.concatenate(out).astype(np.float64)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each image."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_cached_prefix", None)  # Keras objects of this process: not pickled
        model = state.pop("model_", None)
        if model is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.keras")
                model.save(path)
                with open(path, "rb") as f:
                    state["_model_bytes"] = f.read()
        return state

    def __setstate__(self, state):
        data = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        if data is not None:
            keras = load_keras()

            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.keras")
                with open(path, "wb") as f:
                    f.write(data)
                # safe_mode: the archive holds no Python code (no Lambda layers) to run.
                self.model_ = keras.models.load_model(path, safe_mode=True, compile=False)

    def summary(self) -> str:
        """The Keras summary of the fitted model, as text."""
        check_is_fitted(self, "model_")
        buffer = io.StringIO()
        self.model_.summary(print_fn=lambda line, **kw: buffer.write(line + "\n"))
        return buffer.getvalue()

    def count_params(self, trainable_only: bool = False) -> int:
        """Number of (trainable) parameters of the fitted model."""
        check_is_fitted(self, "model_")
        weights = self.model_.trainable_weights if trainable_only else self.model_.weights
        return int(sum(np.prod(w.shape) for w in weights))
