"""Shared base of the Keras-backed classifiers: fit loop, early stopping, pickling, seeding,
frozen-prefix caching and on-the-fly augmentation.

The Keras model is built in ``fit`` from plain parameters and kept in ``model_``; it is
one flat functional graph (no nested sub-models), so Grad-CAM can reach any layer.
"""

from __future__ import annotations

import io
import os
import tempfile
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from ..augmentation import AugmentationPolicy, ImageAugmenter
from ..backbones import get_backbone, weights_fingerprint
from ..images import check_image_sources, image_name, load_image
from ..targets import check_targets

__all__ = ["KerasImageClassifier"]


def load_batch(sources, side: int) -> np.ndarray:
    """Decode and resize images to a uint8 (n, side, side, 3) array (compact in memory)."""
    return np.stack([
        np.rint(load_image(s, side, name=image_name(s, i))).astype(np.uint8)
        for i, s in enumerate(sources)
    ])


def _batches(images, targets, batch_size, preprocess, policy, seed, weights=None):
    """A keras PyDataset over uint8 images: preprocess per batch, augment on the fly."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.RandomState(seed)
            self.order = self.rng.permutation(len(images))

        def __len__(self):
            return -(-len(images) // batch_size)

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(images))

        def __getitem__(self, index):
            idx = self.order[index * batch_size : (index + 1) * batch_size]
            x = images[idx].astype(np.float32)
            if policy is not None:  # a new random view of every image, every epoch
                x = np.stack([policy(img, self.rng) for img in x])
            out = (preprocess(x), targets[idx])
            return out + (weights[idx],) if weights is not None else out

    return Batches()


class _EpochClock:
    """A Keras callback recording each epoch's wall time (for ``epoch_seconds_``)."""

    def __new__(cls):
        import time

        import keras

        class Clock(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)

        return Clock()


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
    import keras

    start = chain_start(model)
    last = None
    for i, layer in enumerate(model.layers):
        stochastic = isinstance(layer, (keras.layers.Dropout, keras.layers.GaussianNoise))
        if stochastic or (layer.trainable and layer.trainable_weights):
            break
        if i >= max(start - 1, 1):
            last = layer.name
    return last


class KerasImageClassifier(ClassifierMixin, BaseEstimator):
    """Base class: subclasses define ``_build(n_classes)`` and their own parameters.

    ``_build`` returns the flat functional model with its frozen layers marked. When a
    prefix of it is frozen (see :func:`frozen_prefix`) and no augmentation is asked, that
    prefix runs once per image and the rest — the same layer objects — trains on the cached
    activations, many times faster per epoch.

    ``fit`` seeds Keras with ``keras.utils.set_random_seed``, which also seeds Python's and
    NumPy's global generators: the price of reproducible Keras training.
    """

    _common_constraints: dict = {
        "input_side": [Interval(Integral, 32, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 0, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "augmentation": [ImageAugmenter, AugmentationPolicy, None],
        "cache_frozen": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, *, backbone, weights, head_units, dropout, input_side, learning_rate,
                 batch_size, max_epochs, patience, validation_fraction, class_weight,
                 augmentation, cache_frozen, random_state, verbose):
        # Subclasses list every parameter in their own signature (scikit-learn reads it for
        # get_params) and hand the shared ones here, stored untouched.
        self.backbone = backbone
        self.weights = weights
        self.head_units = head_units
        self.dropout = dropout
        self.input_side = input_side
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.augmentation = augmentation
        self.cache_frozen = cache_frozen
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        tags.non_deterministic = True  # identical only on CPU with the same random_state
        return tags

    def _preprocess(self, x: np.ndarray) -> np.ndarray:
        return get_backbone(self._backbone_name()).preprocess_input(
            np.asarray(x, dtype=np.float32).copy())

    def _backbone_name(self) -> str:
        return self.backbone

    def _dropout_head(self, x, n_classes: int, *, dense_top: bool = True):
        """Figure 21's head on ``x``: Dense → Dropout → Dense → Dropout → softmax.

        With ``dense_top=False`` only the softmax is added (a head already built).
        """
        from keras import layers

        if dense_top:
            units = tuple(self.head_units)
            if len(units) != 2 or not all(isinstance(u, Integral) and u > 0 for u in units):
                raise ValueError(
                    f"head_units must be two positive integers, got {self.head_units!r}")
            x = layers.Dense(units[0], activation="relu", name="fc1")(x)
            x = layers.Dropout(self.dropout, name="dropout1")(x)
            x = layers.Dense(units[1], activation="relu", name="fc2")(x)
            x = layers.Dropout(self.dropout, name="dropout2")(x)
        return layers.Dense(n_classes, activation="softmax", name="predictions")(x)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, *, groups=None, validation_data=None):
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

        Returns
        -------
        self
        """
        import keras

        self._validate_params()
        spec = get_backbone(self._backbone_name())
        if self.input_side < spec.min_side:
            raise ValueError(f"input_side={self.input_side} is below {spec.name}'s minimum "
                             f"{spec.min_side}")
        sources = check_image_sources(X)
        y = check_targets(y, len(sources))
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"y has a single class {self.classes_.tolist()}; need at least 2")
        self._check_class_weight()
        targets = encoder.transform(y)

        rng = check_random_state(self.random_state)
        seed = int(rng.randint(2**31 - 1))
        keras.utils.set_random_seed(seed)  # initial weights, dropout, shuffling
        if validation_data is not None:
            val_sources = check_image_sources(validation_data[0], name="validation X")
            val_y = check_targets(validation_data[1], len(val_sources), name="validation y")
            unknown = sorted(set(val_y.tolist()) - set(self.classes_.tolist()), key=str)
            if unknown:
                raise ValueError(f"validation y holds class(es) {unknown} that y does not; "
                                 f"classes are {self.classes_.tolist()}")
            val_targets = encoder.transform(val_y)
            train_idx = np.arange(len(sources))
        else:
            if groups is not None and len(groups) != len(sources):
                raise ValueError(f"groups has {len(groups)} entries for {len(sources)} images")
            train_idx, val_idx = self._split(targets, groups, seed)
            val_sources = [sources[i] for i in val_idx]
            val_targets = targets[val_idx]

        self.__dict__.pop("model_", None)  # free the previous fit's model first
        model = self._build(len(self.classes_))
        prefix = frozen_prefix(model)
        train_images = load_batch([sources[i] for i in train_idx], self.input_side)
        val_images = load_batch(val_sources, self.input_side)
        train_targets = targets[train_idx]
        policy = self.augmentation.policy if isinstance(self.augmentation, ImageAugmenter) \
            else self.augmentation

        model.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.patience,
                                              restore_best_weights=True)
        clock = _EpochClock()
        weights = self._sample_weights(train_targets)
        if prefix is not None and policy is None and self.cache_frozen:
            trainer, x_train, x_val = self._head_on_cached_prefix(model, prefix, train_images,
                                                                  val_images)
            trainer.compile(optimizer=keras.optimizers.Adam(self.learning_rate),
                            loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            history = trainer.fit(
                x_train, train_targets, sample_weight=weights,
                validation_data=(x_val, val_targets), epochs=self.max_epochs,
                batch_size=self.batch_size, callbacks=[early, clock], shuffle=True,
                verbose=self.verbose,
            )
        else:
            data = _batches(train_images, train_targets, self.batch_size, self._preprocess,
                            policy, seed, weights)
            history = model.fit(
                data, validation_data=(self._preprocess(val_images), val_targets),
                epochs=self.max_epochs, callbacks=[early, clock], verbose=self.verbose,
            )
        self.model_ = model
        self.history_ = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        losses = self.history_["val_loss"]
        self.best_epoch_ = int(np.argmin(losses)) + 1
        self.n_epochs_ = len(losses)
        self.frozen_prefix_cached_ = prefix is not None and policy is None and self.cache_frozen
        self.epoch_seconds_ = clock.seconds
        # Provenance: which weights the network started from (a file by its content).
        self.weights_fingerprint_ = (None if self.weights is None
                                     else weights_fingerprint(self.weights))
        return self

    def _split(self, targets, groups, seed):
        if groups is not None:
            splitter = GroupShuffleSplit(1, test_size=self.validation_fraction,
                                         random_state=seed)
            return next(splitter.split(np.zeros(len(targets)), targets, groups))
        splitter = StratifiedShuffleSplit(1, test_size=self.validation_fraction,
                                          random_state=seed)
        try:
            return next(splitter.split(np.zeros(len(targets)), targets))
        except ValueError as exc:
            raise ValueError(
                f"cannot carve a stratified validation set of fraction "
                f"{self.validation_fraction} from {len(targets)} images ({exc}); pass "
                "validation_data or a larger validation_fraction"
            ) from None

    def _check_class_weight(self) -> None:
        if not isinstance(self.class_weight, dict):
            return
        classes = set(self.classes_.tolist())
        unknown = [key for key in self.class_weight if key not in classes]
        if unknown:
            raise ValueError(f"class_weight names class(es) {unknown} that y does not hold; "
                             f"classes are {self.classes_.tolist()}")

    def _sample_weights(self, targets):
        if self.class_weight is None:
            return None
        classes = np.arange(len(self.classes_))
        if self.class_weight == "balanced":
            per_class = compute_class_weight("balanced", classes=classes, y=targets)
        else:
            per_class = np.array([float(self.class_weight.get(c, 1.0)) for c in self.classes_])
        return per_class[targets].astype(np.float32)

    def _head_on_cached_prefix(self, model, prefix, train_images, val_images):
        """Run the frozen prefix once, and build the trainable rest as a model that shares
        the full model's layers (so training it trains ``model``)."""
        import keras

        names = [layer.name for layer in model.layers]
        cut = names.index(prefix)
        prefix_model = keras.Model(model.input, model.get_layer(prefix).output)
        step = max(1, self.batch_size)

        def run(images):
            return np.concatenate([
                np.asarray(prefix_model.predict_on_batch(self._preprocess(images[i:i + step])))
                for i in range(0, len(images), step)
            ])

        x_train, x_val = run(train_images), run(val_images)
        head_input = keras.Input(x_train.shape[1:])
        x = head_input
        for layer in model.layers[cut + 1:]:
            x = layer(x)
        return keras.Model(head_input, x), x_train, x_val

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        sources = check_image_sources(X)
        out = []
        for start in range(0, len(sources), self.batch_size):
            batch = load_batch(sources[start:start + self.batch_size], self.input_side)
            out.append(np.asarray(self.model_.predict_on_batch(self._preprocess(batch))))
        return np.concatenate(out).astype(np.float64)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each image."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = self.__dict__.copy()
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
            import keras

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
