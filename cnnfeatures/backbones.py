"""Registry of Keras application backbones, weights resolution and fully convolutional VGG.

A backbone is named by a plain string (``"vgg19"``), so estimators stay clonable and
grid-searchable; the Keras model is built on first use and memoised per process, since
building VGG-19 costs seconds and half a gigabyte.

Every backbone is built with a free input size ``(None, None, 3)``: one model serves every
scale. For VGG, the fully connected layers ``fc1``, ``fc2`` and ``predictions`` are built as
convolutions (7×7, then 1×1, then 1×1) carrying the Dense layers' weights, so any input of
side ≥ 224 yields a spatial map of them; at side 224 that map is 1×1 and equals the Dense
layers' output.

``weights`` is one of

* ``"imagenet"``: a local ImageNet weights file when one is found (see
  :func:`find_imagenet_weights`: ``$CNNFEATURES_WEIGHTS_DIR``, or the ``shared/weights``
  folder beside a source checkout), else Keras' own download and cache
  (``~/.keras/models``). With no network, the error says how to pass a local file instead;
* a path to a Keras weights file for the same architecture, with or without its top
  (``include_top=False``: then ``fc1``/``fc2`` start random and a warning says so); a file
  of another architecture is refused before loading, naming the one it fits;
* ``None``: random initialisation (for tests), drawn from a seed so that every process
  builds the same network (see ``seed`` of :func:`get_feature_network`).

``precision`` is ``"float32"`` (default) or a mixed policy, ``"bfloat16"`` or ``"float16"``:
the weights stay float32, the convolutions run in the lower precision, and every output is
cast back to float32 (pooling included, so means are summed in float32). On CPUs with AMX or
AVX-512 BF16 (Intel Sapphire Rapids and later) ``"bfloat16"`` runs VGG 3–5 times faster;
``"float16"`` is for GPUs. Features differ from float32 ones by under 1% (relative), so the
precision is part of the cache key.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .backend import keras_seeded, load_keras, shape_free_function
from .messages import announce, warn_once

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "FeatureNetwork",
    "WeightsUnavailableError",
    "get_backbone",
    "register_backbone",
    "unregister_backbone",
    "check_layer_names",
    "check_weights_file",
    "check_weights_format",
    "clear_networks",
    "find_imagenet_weights",
    "get_feature_network",
    "load_pretrained_weights",
    "network_fingerprint",
    "PRECISIONS",
    "precision_policy",
    "weights_fingerprint",
    "weights_have_top",
]

#: Precision name -> Keras dtype policy of the convolutions.
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be downloaded, and no local file was given."""


class RandomTopWarning(UserWarning):
    """A weights file without the classifier top was given: fc layers start random."""


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


_VGG_FC = ("fc1", "fc2", "predictions")
# Every block's pooled output lies on the way to fc2: pooling them as well costs next to
# nothing and lets a grid over any of them share one forward pass.
_VGG_POOLED = ("block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool",
               "fc1", "fc2")

_VGG_BLOCKS = tuple(f"block{i}" for i in range(1, 6))
_VGG_PARTS = dict(blocks=_VGG_BLOCKS, block_pools=tuple(f"{b}_pool" for b in _VGG_BLOCKS))

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("vgg16", "vgg16", "VGG16", 224, 32, _VGG_FC, _VGG_POOLED, **_VGG_PARTS),
        BackboneSpec("vgg19", "vgg19", "VGG19", 224, 32, _VGG_FC, _VGG_POOLED, **_VGG_PARTS),
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


def unregister_backbone(name: str) -> None:
    """Remove a backbone from the registry (networks built from it are forgotten too)."""
    get_backbone(name)  # a ValueError listing the choices if there is none by that name
    with _NETWORKS_LOCK:
        for key in [key for key in _NETWORKS if key[0] == name]:
            del _NETWORKS[key]
    del BACKBONES[name]


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


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class _WeightsRef:
    kind: str  # "imagenet" | "file" | "random"
    path: str | None = None
    key: tuple = ()  # memo key: the file's content digest, or the random seed


def imagenet_weights_dirs() -> list[Path]:
    """Folders searched for ImageNet weights files before Keras' download.

    ``$CNNFEATURES_WEIGHTS_DIR`` (several folders separated by ``os.pathsep``), then the
    ``shared/weights`` folder beside a source checkout of cnnfeatures (where this project
    keeps its offline weights). Keras' own cache (``~/.keras/models``) is searched by Keras.
    """
    dirs = [Path(d) for d in os.environ.get("CNNFEATURES_WEIGHTS_DIR", "").split(os.pathsep)
            if d]
    dirs.append(Path(__file__).resolve().parents[2] / "shared" / "weights")
    return dirs


def find_imagenet_weights(backbone: str, need_top: bool = False) -> str | None:
    """A local ImageNet weights file of ``backbone``: ``<name>_imagenet.weights.h5`` (with
    the classifier top) or, unless ``need_top``, ``<name>_notop_imagenet.weights.h5``, in
    :func:`imagenet_weights_dirs`; None when there is none.

    Examples
    --------
    >>> find_imagenet_weights("no_such_backbone") is None
    True
    """
    names = [f"{backbone}_imagenet.weights.h5"]
    if not need_top:
        names.append(f"{backbone}_notop_imagenet.weights.h5")
    for directory in imagenet_weights_dirs():
        for name in names:
            path = directory / name
            if path.is_file():
                return str(path)
    return None


def _resolve_weights(weights: str | os.PathLike[str] | None, seed: int | None = None, *,
                     backbone: str | None = None, need_top: bool = False) -> _WeightsRef:
    if weights is None:
        return _WeightsRef("random", key=("random", seed))
    if weights == "imagenet":
        # The same ImageNet weights, from a local file when one is at hand: offline runs
        # need no download.
        local = find_imagenet_weights(backbone, need_top) if backbone else None
        if local is None:
            return _WeightsRef("imagenet", key=("imagenet",))
        weights = local
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be 'imagenet', a path to a Keras weights file or None, "
            f"got {type(weights).__name__}"
        )
    path = os.path.abspath(os.fspath(weights))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights file {os.fspath(weights)!r} not found; pass 'imagenet', None, or the "
            "path of a Keras weights file (.weights.h5 or .h5)"
        )
    check_weights_format(path)
    # Networks are memoised by content: a file replaced in place (even with the same size
    # and modification time) is a new network. The digest is recomputed only when the
    # file's identity changes: inode and change time are set by the system on any write
    # or replacement, and cannot be set back by a user.
    st = os.stat(path)
    digest = _file_digest((path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns))
    return _WeightsRef("file", path, ("file", digest))


def check_weights_format(path: str) -> None:
    """Refuse a file that is neither HDF5 (``.weights.h5``, ``.h5``) nor a ``.keras``
    archive: a ValueError naming it (Keras' own error, "file signature not found", would
    not say which file)."""
    import zipfile

    import h5py

    if not (h5py.is_hdf5(path) or zipfile.is_zipfile(path)):
        raise ValueError(f"weights file {path} is not a Keras weights file: expected an "
                         "HDF5 .weights.h5 (or .h5) file or a .keras archive")


@lru_cache(maxsize=32)
def _file_digest(identity: tuple) -> str:
    h = hashlib.sha256()
    with open(identity[0], "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:24]


def weights_fingerprint(weights: str | os.PathLike[str] | None, seed: int | None = None
                        ) -> str:
    """The identity of a weights choice, as fitted estimators remember it.

    ``"imagenet"``; ``"file-<digest of the content>"`` for a file; ``"random-<seed>"`` for
    a random network drawn from a seed (``"random"`` without one).

    Examples
    --------
    >>> weights_fingerprint(None, seed=7)
    'random-7'
    """
    return _fingerprint(_resolve_weights(weights, seed), seed)


def _fingerprint(ref: _WeightsRef, seed: int | None) -> str:
    if ref.kind == "file":
        return f"file-{ref.key[1]}"
    if ref.kind == "random":
        return "random" if seed is None else f"random-{seed}"
    return "imagenet"


def network_fingerprint(backbone: str, weights: str | os.PathLike[str] | None, *,
                        need_fc: bool = False, seed: int | None = None) -> str | None:
    """The ``fingerprint`` :func:`get_feature_network` would give this network, found
    without building it (a local ImageNet file is found the same way); None for an
    unseeded random network, which has a new identity in every process."""
    spec = get_backbone(backbone)
    ref = _resolve_weights(weights, seed, backbone=spec.name,
                           need_top=need_fc and bool(spec.fc_layers))
    if ref.kind == "random" and seed is None:
        return None
    return _fingerprint(ref, seed)


def _imagenet_help(spec: BackboneSpec, include_top: bool) -> str:
    top = "" if include_top else "_notop"
    return (
        f"could not download the ImageNet weights of {spec.name} (no network?). Download "
        f"them on a machine with network access, e.g. keras.applications.{spec.constructor}"
        f"(include_top={include_top}) caches '{spec.name}_weights_tf_dim_ordering_tf_kernels"
        f"{top}.h5' in ~/.keras/models; copy that file here and pass weights='<path to it>'."
    )


def _build_donor(spec: BackboneSpec, ref: _WeightsRef, include_top: bool):
    """Build the stock Keras application holding the requested weights."""
    kwargs = {"include_top": include_top}
    if not include_top:
        kwargs["input_shape"] = (None, None, 3)
    if ref.kind == "imagenet":
        try:
            return spec.keras_constructor(weights="imagenet", **kwargs)
        except Exception as exc:  # Keras raises a bare Exception on URL fetch failures
            raise WeightsUnavailableError(_imagenet_help(spec, include_top)) from exc
    check_weights_file(spec.name, ref.path)
    return spec.keras_constructor(weights=ref.path, **kwargs)


def _file_shapes(path: str) -> Counter:
    """The shapes of the arrays a Keras weights file holds (HDF5), or an empty Counter."""
    import h5py

    shapes: Counter = Counter()
    if not h5py.is_hdf5(path):
        return shapes  # a .keras archive (see check_weights_format): Keras checks it
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: shapes.update([tuple(obj.shape)])
                     if isinstance(obj, h5py.Dataset) else None)
    return shapes


@lru_cache(maxsize=16)
def _base_shapes(backbone: str) -> Counter:
    """The shapes of a stock convolutional base's weights (built random, then dropped)."""
    spec = get_backbone(backbone)
    with keras_seeded(0):
        model = spec.keras_constructor(include_top=False, weights=None,
                                       input_shape=(None, None, 3))
    shapes = Counter(tuple(w.shape) for w in model.weights)
    del model
    return shapes


def check_weights_file(backbone: str, path: str | os.PathLike[str]) -> None:
    """Refuse a weights file that does not hold ``backbone``'s convolutional base.

    Keras loads what matches and warns about the rest, leaving a half-random network; this
    check reads the file's array shapes first. When another registered backbone fits the
    file, the error names it.

    Raises
    ------
    ValueError
        Naming the file, the backbone asked for, and the one the file fits, if any.
    """
    path = os.fspath(path)
    st = os.stat(path)
    _check_weights_file(backbone, path, (st.st_size, st.st_mtime_ns, st.st_ino,
                                         st.st_ctime_ns))


@lru_cache(maxsize=32)
def _check_weights_file(backbone: str, path: str, identity: tuple) -> None:
    found = _file_shapes(path)
    if not found:
        return
    needed = _base_shapes(backbone)
    if not needed - found:  # every array of the base is there (a top may come on top)
        return
    fits = [name for name, spec in sorted(BACKBONES.items())
            if name != backbone and isinstance(spec.constructor, str)
            and not _base_shapes(name) - found]
    hint = (f"it holds the weights of {fits[0]}: pass backbone {fits[0]!r}" if fits
            else "it fits none of the registered backbones")
    raise ValueError(
        f"weights file {path} does not hold the weights of {backbone} (its "
        f"{sum(found.values())} arrays lack some of the {sum(needed.values())} {backbone} "
        f"needs); {hint}"
    )


# --------------------------------------------------------------------------- networks


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
                 precision: str = "float32"):
        self.spec = spec
        self.model = model
        self.fingerprint = fingerprint
        self.precision = precision
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
                self._readers[outputs] = _make_reader(self.model, outputs)
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


def _make_reader(model, outputs: tuple[tuple[str, str], ...]
                 ) -> Callable[[np.ndarray], list[np.ndarray]]:
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
    return shape_free_function(keras.Model(model.input, tensors))


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


def _copy_weights(target, weights: dict[str, list[np.ndarray]], spec: BackboneSpec, *,
                  fc: bool = True) -> bool:
    """Copy pretrained weights into the same-named layers of ``target``; True if fc were.

    The fc layers' Dense kernels ``(h*w*c, units)`` take whatever shape the target's layer
    has: Keras flattens channels-last maps in (h, w, c) order, so they reshape exactly into
    the ``(h, w, c, units)`` kernels of fc-as-convolution, and stay as they are for a Dense
    top. A head of another size starts fresh.
    """
    loaded_fc = False
    for layer in target.layers:
        values = weights.get(layer.name)
        if values is None or not layer.weights:
            continue
        if layer.name in spec.fc_layers:
            if not fc:
                continue
            kernel, bias = values
            shape = tuple(layer.weights[0].shape)
            if kernel.size != int(np.prod(shape)):
                continue
            values = [kernel.reshape(shape), bias]
            loaded_fc = True
        layer.set_weights(values)
    return loaded_fc


#: Pretrained weights read from files (or Keras' download) kept per process, as arrays by
#: layer name: a grid search of fine-tuned models reads the file once, not once per fit.
MAX_PRETRAINED = 2
_PRETRAINED: OrderedDict[tuple, dict[str, list[np.ndarray]]] = OrderedDict()
_PRETRAINED_LOCK = threading.Lock()  # taken inside _NETWORKS_LOCK, never the other way


def _pretrained(spec: BackboneSpec, ref: _WeightsRef, want_top: bool
                ) -> tuple[dict[str, list[np.ndarray]], bool]:
    """The stock application's weights by layer name, and whether they hold the top."""
    top = want_top if ref.kind == "imagenet" else (
        want_top and _file_has_top(ref.path, ref.key) is not False)
    for include_top in ((True, False) if top else (False,)):
        key = (spec.name, ref.key, include_top)
        with _PRETRAINED_LOCK:
            if key in _PRETRAINED:
                _PRETRAINED.move_to_end(key)
                return _PRETRAINED[key], include_top
        try:
            with warnings.catch_warnings():
                # Keras warns about every missing group before it raises for a no-top file.
                warnings.simplefilter("ignore")
                donor = _build_donor(spec, ref, include_top=include_top)
        except ValueError:
            if not include_top or ref.kind != "file" or _file_has_top(ref.path,
                                                                      ref.key) is True:
                raise
            continue  # a file whose names did not tell: it has no top after all
        weights = {layer.name: layer.get_weights() for layer in donor.layers if layer.weights}
        del donor
        with _PRETRAINED_LOCK:
            _PRETRAINED[key] = weights
            while len(_PRETRAINED) > MAX_PRETRAINED:
                _PRETRAINED.popitem(last=False)
        return weights, include_top
    raise AssertionError("unreachable")


def load_pretrained_weights(model, backbone: str, weights: str | os.PathLike[str] | None, *,
                            fc: bool = False) -> bool:
    """Load a backbone's pretrained weights into the layers of ``model`` named as its own.

    For models built from a backbone's layers plus a head of their own (the fine-tuned and
    hybrid classifiers). With ``fc=True`` the top's Dense layers (``fc1``, ``fc2``) are
    loaded too when the weights hold them and the model's layers have their size. Returns
    whether fc weights were loaded; ``weights=None`` loads nothing.
    """
    if weights is None:
        return False
    spec = get_backbone(backbone)
    want_top = fc and bool(spec.fc_layers)
    ref = _resolve_weights(weights, backbone=spec.name, need_top=want_top)
    values, _ = _pretrained(spec, ref, want_top=want_top)
    return _copy_weights(model, values, spec, fc=fc)


#: Built networks kept per process: a VGG-16 with its fc layers holds 0.5 GB, so a grid
#: over backbones or weights keeps only the most recently used few.
MAX_NETWORKS = 4
_NETWORKS: OrderedDict[tuple, FeatureNetwork] = OrderedDict()
_NETWORKS_LOCK = threading.Lock()


def clear_networks() -> None:
    """Forget every memoised network and pretrained weights of this process (they are
    rebuilt, or read again, on next use)."""
    with _NETWORKS_LOCK, _PRETRAINED_LOCK:
        _NETWORKS.clear()
        _PRETRAINED.clear()


def get_feature_network(
    backbone: str,
    weights: str | os.PathLike[str] | None = "imagenet",
    *,
    need_fc: bool = False,
    precision: str = "float32",
    seed: int | None = None,
    verbose: int = 0,
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

    Returns
    -------
    FeatureNetwork
        At most :data:`MAX_NETWORKS` are kept per process (least recently used first
        out); :func:`clear_networks` forgets them all.

    Examples
    --------
    >>> net = get_feature_network("vgg16", weights=None)  # doctest: +SKIP
    >>> net.reader(["block5_pool"])(net.preprocess(images))[0].shape  # doctest: +SKIP
    (n, 7, 7, 512)
    """
    spec = get_backbone(backbone)
    ref = _resolve_weights(weights, seed, backbone=spec.name, need_top=need_fc)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if not spec.fc_layers:
        with_fc = False
    elif ref.kind == "random":
        with_fc = True
    elif ref.kind == "imagenet":
        with_fc = need_fc
    else:
        with_fc = need_fc or _file_has_top(ref.path, ref.key) is not False
    with _NETWORKS_LOCK:
        # A network that has the fc layers serves requests that do not need them too.
        for key in ((spec.name, ref.key, True, precision),
                    (spec.name, ref.key, with_fc, precision)):
            if key in _NETWORKS:
                _NETWORKS.move_to_end(key)
                return _NETWORKS[key]
        if ref.kind == "file":
            check_weights_file(spec.name, ref.path)  # before saying anything is built
        what = {"random": "random weights", "imagenet": "ImageNet weights"}.get(
            ref.kind, f"weights {ref.path}")
        announce(f"building {spec.name} ({what}, {precision})", verbose)
        with precision_policy(precision), keras_seeded(seed if ref.kind == "random" else None):
            net = _build_network(spec, ref, with_fc, precision)
        _NETWORKS[(spec.name, ref.key, with_fc, precision)] = net
        while len(_NETWORKS) > MAX_NETWORKS:
            _NETWORKS.popitem(last=False)
        return net


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


@lru_cache(maxsize=32)
def _file_has_top(path: str, key: tuple) -> bool | None:
    """Whether a weights file holds the Dense top: True, False, or None when unsure.

    ``key`` (the content digest) keys the memo. Reading the names is cheap; building a
    topped model to find out would cost gigabytes. Keras 3 files name groups after layer
    classes (``dense``), legacy ones after layers (``fc1``).
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names: list[str] = []
            f.visit(names.append)
    except OSError:  # not HDF5 (a .keras archive, say): let Keras try
        return None
    parts = {part for name in names for part in name.split("/")}
    return any(part.startswith("dense") or part in _VGG_FC for part in parts)


def weights_have_top(backbone: str, weights: str | os.PathLike[str] | None) -> bool:
    """Whether ``weights`` give a backbone's fc layers trained values.

    True for ``"imagenet"`` (Keras downloads the top when asked) and for files that hold
    the top; False for no-top files, for random weights and for backbones without fc
    layers. A file whose kind cannot be told from its names counts as holding the top.

    Examples
    --------
    >>> weights_have_top("vgg16", None), weights_have_top("xception", "imagenet")
    (False, False)
    """
    spec = get_backbone(backbone)
    if not spec.fc_layers:
        return False
    ref = _resolve_weights(weights, backbone=spec.name, need_top=True)
    if ref.kind == "random":
        return False
    return ref.kind == "imagenet" or _file_has_top(ref.path, ref.key) is not False


def _build_network(spec: BackboneSpec, ref: _WeightsRef, with_fc: bool,
                   precision: str = "float32") -> FeatureNetwork:
    seed = ref.key[1] if ref.kind == "random" else None
    # An unseeded random network is new in every process: an identity of its own.
    fingerprint = (f"random-{uuid.uuid4().hex}" if ref.kind == "random" and seed is None
                   else _fingerprint(ref, seed))

    def network(model, fc_pretrained: bool) -> FeatureNetwork:
        return FeatureNetwork(spec, model, fingerprint, fc_pretrained, precision)

    if not spec.fc_layers:
        if ref.kind == "random":
            model = spec.keras_constructor(
                include_top=False, weights=None, input_shape=(None, None, 3)
            )
        else:
            model = _build_donor(spec, ref, include_top=False)
        return network(model, False)

    model = _vgg_fully_convolutional(spec, with_fc)
    if ref.kind == "random":
        return network(model, with_fc)
    want_top = with_fc if ref.kind == "imagenet" else True
    values, has_top = _pretrained(spec, ref, want_top)
    _copy_weights(model, values, spec, fc=has_top)
    return network(model, has_top and with_fc)


def warn_random_fc(backbone: str, fc_pretrained: bool, layers: Sequence[str]) -> None:
    """Warn (once per process) when fc layers are read from a network whose weights file
    had no top."""
    asked = [name for name in layers if name in get_backbone(backbone).fc_layers]
    if asked and not fc_pretrained:
        warn_once(
            f"layers {asked} of {backbone} are random: the weights file has no "
            "classifier top (include_top=False), so fc1/fc2 were not loaded",
            RandomTopWarning,
            stacklevel=3,
        )
