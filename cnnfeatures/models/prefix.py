"""A network's frozen prefix, run once per image: its activations cached, the rest trained.

When the first layers of a classifier are frozen and behave the same in training and
inference, every epoch would compute the same activations for them again. A
:class:`CachedPrefix` computes them once per image (and per fixed augmented view) and
keeps them in the activation cache, keyed by the image's pixels and the prefix's identity
(its layers and weight values, the input side), so the fits of a grid search over what
follows the prefix share them, in one process or, with a cache directory, many. The
trainable rest is a model of its own built from the same layer objects: training it trains
the full model.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..backbones import precision_policy
from ..backend import load_keras
from ..cache import ActivationCache, make_key
from ..instrumentation import count_forward
from .inputs import pixels_digest

__all__ = ["CachedPrefix", "chain_start", "frozen_prefix"]


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


def prefix_identity(model, cut: int, side: int) -> str:
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


class CachedPrefix:
    """``model`` cut after its layer ``prefix``: the prefix computed once per image, the
    rest (:attr:`head`, sharing ``model``'s layers) trained on its activations.

    Parameters
    ----------
    model : keras.Model
        A flat functional model whose layers up to ``prefix`` are frozen (see
        :func:`frozen_prefix`).
    prefix : str
        The last layer of the prefix.
    side : int
        The input side, part of the prefix's identity.
    preprocess : callable
        Float RGB 0-255 images to the network's input.
    cache : ActivationCache or None
        Where activations are kept (None: computed for every call).
    precision : str
        The head is built under this precision's policy (float16's loss scaling with it).
    batch_size : int
        Images per forward pass of the prefix.
    name : str
        How the forward passes are counted (:mod:`cnnfeatures.instrumentation`).
    """

    def __init__(self, model, prefix: str, *, side: int, preprocess, cache: ActivationCache
                 | None, precision: str, batch_size: int, name: str):
        keras = load_keras()

        cut = [layer.name for layer in model.layers].index(prefix)
        self.prefix_model = keras.Model(model.input, model.get_layer(prefix).output)
        self.identity = prefix_identity(model, cut, side)
        self.preprocess, self.cache = preprocess, cache
        self.precision, self.batch_size, self.name, self.side = (precision, batch_size, name,
                                                                 side)
        self.shape = tuple(int(d) for d in self.prefix_model.output.shape[1:])
        with precision_policy(precision):
            head_input = keras.Input(self.shape)
            x = head_input
            for layer in model.layers[cut + 1:]:
                x = layer(x)
            self.head = keras.Model(head_input, x)

    def activations(self, images: np.ndarray) -> np.ndarray:
        """The prefix's output for uint8 images ``(..., side, side, 3)`` (views ``(v, n,
        ...)`` included), from the cache where it has them."""
        flat = images.reshape(-1, *images.shape[-3:])
        out = np.empty((len(flat), *self.shape), np.float32)
        keys = [make_key("frozen prefix", self.identity, pixels_digest(image))
                for image in flat]
        todo = []
        for i, key in enumerate(keys):
            value = self.cache.get(key, self.shape) if self.cache is not None else None
            if value is None:
                todo.append(i)
            else:
                out[i] = value
        step = max(1, self.batch_size)
        for start in range(0, len(todo), step):
            batch = todo[start:start + step]
            values = np.asarray(self.prefix_model.predict_on_batch(
                self.preprocess(flat[batch])))
            count_forward(f"{self.name} frozen prefix", self.identity, self.precision,
                          self.side, len(batch))
            for i, value in zip(batch, values):
                out[i] = value
                if self.cache is not None:
                    self.cache.put(keys[i], value)
        return out.reshape(*images.shape[:-3], *self.shape)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The full model's output for uint8 images: the prefix from the cache, then the
        head."""
        return np.asarray(self.head.predict_on_batch(self.activations(images)))
