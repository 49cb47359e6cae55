"""Built networks: free input size, VGG's fc layers as convolutions, readers of several
layers at once, and the memo that builds each network once per process.

Every backbone is built with a free input size ``(None, None, 3)``: one model serves every
scale. For VGG, the fully connected layers ``fc1``, ``fc2`` and ``predictions`` are built as
convolutions (7×7, then 1×1, then 1×1) carrying the Dense layers' weights, so any input of
side ≥ 224 yields a spatial map of them; at side 224 that map is 1×1 and equals the Dense
layers' output.

``precision`` is ``"float32"`` (default) or a mixed policy, ``"bfloat16"`` or ``"float16"``:
the weights stay float32, the convolutions run in the lower precision, and every output is
cast back to float32 (pooling included, so means are summed in float32). On CPUs with AMX or
AVX-512 BF16 (Intel Sapphire Rapids and later) ``"bfloat16"`` runs VGG 3–5 times faster;
``"float16"`` is for GPUs. Features differ from float32 ones by under 1% (relative), so the
precision is part of the cache key.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from ..backend import keras_seeded, load_keras, shape_free_function
from ..devices import device_scope
from ..memo import Memo
from ..messages import announce
from .registry import BackboneSpec, get_backbone, on_unregister
from .weights import (
    PRETRAINED,
    WeightsRef,
    build_donor,
    check_weights_file,
    copy_weights,
    file_has_top,
    fingerprint_of,
    pretrained_weights,
    resolve_weights,
)

__all__ = ["MAX_NETWORKS", "PRECISIONS", "FeatureNetwork", "check_layer_names",
           "clear_networks", "get_feature_network", "precision_policy", "reader_model"]

#: Precision name -> Keras dtype policy of the convolutions.
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}



@contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Build layers in ``precision`` (a key of :data:`PRECISIONS`): the Keras dtype policy
    is set for the ``with`` block only (Keras keeps it per thread), so layers built outside
    it, and other estimators, keep theirs.

    Examples
    --------
    >>> with precision_policy("bfloat16"):
    ...     layer = load_keras().layers.Dense(2)
    >>> layer.dtype_policy.name, layer.compute_dtype, layer.variable_dtype
    ('mixed_bfloat16', 'bfloat16', 'float32')
    """
    keras = load_keras()

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class FeatureNetwork:
    """A built backbone with free input size, plus the means to read several layers at once.

    Obtain one with :func:`get_feature_network` (memoised); do not pickle it.

    Attributes
    ----------
    spec : BackboneSpec
    model : keras.Model
        The whole network, input ``(None, None, None, 3)``.
    fingerprint : str
        Identity of the weights for content-keyed caches: ``"imagenet"``, a digest of the
        weights file, ``"random-<seed>"``, or a per-process token for an unseeded random
        network.
    precision : str
        The precision the network computes in; a part of cache keys of its own.
    fc_pretrained : bool
        Whether the fc layers carry trained weights (False for a no-top file).
    """

    def __init__(self, spec: BackboneSpec, model, fingerprint: str, fc_pretrained: bool,
                 precision: str = "float32", device: str = "auto"):
        self.spec = spec
        self.model = model
        self.fingerprint = fingerprint
        self.precision = precision
        self.device = device
        self.fc_pretrained = fc_pretrained
        self.layer_names = tuple(layer.name for layer in model.layers[1:])
        self._readers: dict[tuple[str, ...], Callable] = {}
        self._shapes: dict[tuple[str, int], tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def output_shape(self, layer: str, side: int) -> tuple[int, ...]:
        """Shape ``(h, w, c)`` of a layer's map for one square input of ``side`` pixels."""
        with self._lock:
            if (layer, side) not in self._shapes:
                keras = load_keras()

                sub = keras.Model(self.model.input, self.model.get_layer(layer).output)
                shape = sub.compute_output_shape((1, side, side, 3))
                self._shapes[(layer, side)] = tuple(int(d) for d in shape[1:])
            return self._shapes[(layer, side)]

    def check_layers(self, layers: Sequence[str]) -> None:
        """Raise a ValueError naming any unknown layer and listing the valid ones."""
        check_layer_names(self.spec.name, self.layer_names, layers)

    def reader(self, outputs: Sequence[str | tuple[str, str]]
               ) -> Callable[[np.ndarray], list[np.ndarray]]:
        """A function mapping a preprocessed batch (n, s, s, 3) to the asked outputs.

        Each output is a layer name (its map, ``(n, h, w, c)``) or a pair ``(layer, kind)``
        with kind ``"map"``, ``"mean"`` or ``"max"``: pooled over positions inside the graph,
        ``(n, c)``, so large maps never leave the network. The graph is traced once for any
        batch size and side, and only the part of the network the outputs need is computed.
        """
        outputs = tuple((o, "map") if isinstance(o, str) else tuple(o) for o in outputs)
        with self._lock:
            if outputs not in self._readers:
                self.check_layers([layer for layer, _ in outputs])
                reader = shape_free_function(reader_model(self.model, outputs))
                self._readers[outputs] = (reader if self.device == "auto"
                                          else _on_device(reader, self.device))
            return self._readers[outputs]

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Apply the backbone's ``preprocess_input`` to float32 RGB 0–255 images."""
        return self.spec.preprocess_input(np.array(images, dtype=np.float32, copy=True))


def check_layer_names(backbone: str, layer_names: Sequence[str], layers: Sequence[str]
                      ) -> None:
    """Raise a ValueError naming any of ``layers`` not among a network's ``layer_names``."""
    unknown = [name for name in layers if name not in layer_names]
    if unknown:
        raise ValueError(
            f"unknown layer(s) {unknown} for backbone {backbone!r}; valid names: "
            f"{list(layer_names)}"
        )


def _on_device(reader: Callable, device: str) -> Callable:
    def read(batch):
        with device_scope(device):
            return reader(batch)

    return read


def reader_model(model, outputs: Sequence[tuple[str, str]]):
    """A Keras model of ``model``'s input returning ``outputs``: ``(layer, kind)`` pairs,
    kind ``"map"``, ``"mean"`` or ``"max"`` (pooled inside the graph); only the part of
    the network they need is computed. What every engine runs."""
    keras = load_keras()

    tensors = []
    for layer, kind in outputs:
        x = model.get_layer(layer).output
        # Outputs are float32 whatever the network's precision: the float32 pooling layers
        # cast their input first, so sums over thousands of positions keep their digits.
        if kind == "mean":
            x = keras.layers.GlobalAveragePooling2D(dtype="float32")(x)
        elif kind == "max":
            x = keras.layers.GlobalMaxPooling2D(dtype="float32")(x)
        elif kind != "map":
            raise ValueError(f"output kind must be 'map', 'mean' or 'max', got {kind!r}")
        elif x.dtype != "float32":
            x = keras.layers.Activation("linear", dtype="float32")(x)
        tensors.append(x)
    return keras.Model(model.input, tensors)


def _vgg_fully_convolutional(spec: BackboneSpec, with_fc: bool = True):
    """VGG with fc1/fc2/predictions as convolutions on a free-size input.

    Without ``with_fc``, only the convolutional base is built: the fc layers hold 120
    million parameters that a no-top weights file cannot fill anyway.
    """
    keras = load_keras()
    layers = keras.layers

    base = spec.keras_constructor(include_top=False, weights=None, input_shape=(None, None, 3))
    if not with_fc:
        return base
    x = base.output
    x = layers.Conv2D(4096, 7, activation="relu", name="fc1")(x)
    x = layers.Conv2D(4096, 1, activation="relu", name="fc2")(x)
    x = layers.Conv2D(1000, 1, activation="softmax", name="predictions")(x)
    return keras.Model(base.input, x, name=f"{spec.name}_fully_convolutional")


#: Built networks kept per process: a VGG-16 with its fc layers holds 0.5 GB, so a grid
#: over backbones or weights keeps only the most recently used few.
MAX_NETWORKS = 4
NETWORKS = Memo("feature networks", MAX_NETWORKS)


def _forget_backbone(name: str) -> None:
    for key in NETWORKS.keys():
        if key[0] == name:
            NETWORKS.discard(key)


on_unregister(_forget_backbone)


def clear_networks() -> None:
    """Forget every memoised network and pretrained weights of this process (they are
    rebuilt, or read again, on next use)."""
    NETWORKS.clear()
    PRETRAINED.clear()


def get_feature_network(
    backbone: str,
    weights: str | os.PathLike[str] | None = "imagenet",
    *,
    need_fc: bool = False,
    precision: str = "float32",
    seed: int | None = None,
    verbose: int = 0,
    device: str = "auto",
) -> FeatureNetwork:
    """Build (once per process) the free-size network of a backbone with given weights.

    Parameters
    ----------
    backbone : str
        A key of :data:`BACKBONES`.
    weights : "imagenet", path or None
        See the module docstring.
    need_fc : bool, default=False
        Build VGG's fc layers even when the weights do not hold them (they stay random and
        reading them warns). With ``"imagenet"``, also fetch the top's weights (a larger
        download). Weights files that hold the top always get their fc layers; random
        networks always have them.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Precision of the computation (see the module docstring); outputs are float32.
    seed : int, optional
        With ``weights=None``: the seed the random weights are drawn from, so that every
        process builds the same network. Without it, one random network per process.
    verbose : int, default=0
        Say on standard error when a network is built (seconds, for large ones).
    device : str, default="auto"
        Where the network is built and runs, a name checked by
        :func:`~cnnfeatures.devices.check_device`; one network per device.

    Returns
    -------
    FeatureNetwork
        At most :data:`MAX_NETWORKS` are kept per process (least recently used first
        out); :func:`clear_networks` forgets them all.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3))
    >>> net = get_feature_network("vgg16", weights=None)
    >>> net.reader(["block5_pool"])(net.preprocess(images))[0].shape
    (2, 2, 2, 512)
    """
    spec = get_backbone(backbone)
    ref = resolve_weights(weights, seed, backbone=spec.name, need_top=need_fc)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if not spec.fc_layers:
        with_fc = False
    elif ref.kind == "random":
        with_fc = True
    elif ref.kind == "imagenet":
        with_fc = need_fc
    else:
        with_fc = need_fc or file_has_top(ref.path, ref.key) is not False
    with NETWORKS.locked():  # one build at a time: a second caller waits for the first's
        # A network that has the fc layers serves requests that do not need them too.
        for key in ((spec.name, ref.key, True, precision, device),
                    (spec.name, ref.key, with_fc, precision, device)):
            if key in NETWORKS:
                return NETWORKS.get(key)
        if ref.kind == "file":
            check_weights_file(spec.name, ref.path)  # before saying anything is built
        what = {"random": "random weights", "imagenet": "ImageNet weights"}.get(
            ref.kind, f"weights {ref.path}")
        announce(f"building {spec.name} ({what}, {precision})", verbose)
        with (precision_policy(precision), device_scope(device),
              keras_seeded(seed if ref.kind == "random" else None)):
            net = _build_network(spec, ref, with_fc, precision, device)
        NETWORKS.put((spec.name, ref.key, with_fc, precision, device), net)
        return net


def _build_network(spec: BackboneSpec, ref: WeightsRef, with_fc: bool,
                   precision: str = "float32", device: str = "auto") -> FeatureNetwork:
    seed = ref.key[1] if ref.kind == "random" else None
    # An unseeded random network is new in every process: an identity of its own.
    fingerprint = (f"random-{uuid.uuid4().hex}" if ref.kind == "random" and seed is None
                   else fingerprint_of(ref, seed))

    def network(model, fc_pretrained: bool) -> FeatureNetwork:
        return FeatureNetwork(spec, model, fingerprint, fc_pretrained, precision, device)

    if not spec.fc_layers:
        if ref.kind == "random":
            model = spec.keras_constructor(
                include_top=False, weights=None, input_shape=(None, None, 3)
            )
        else:
            model = build_donor(spec, ref, include_top=False)
        return network(model, False)

    model = _vgg_fully_convolutional(spec, with_fc)
    if ref.kind == "random":
        return network(model, with_fc)
    want_top = with_fc if ref.kind == "imagenet" else True
    values, has_top = pretrained_weights(spec, ref, want_top)
    copy_weights(model, values, spec, fc=has_top)
    return network(model, has_top and with_fc)
