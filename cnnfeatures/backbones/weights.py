"""Which weights a network starts from: ImageNet (a local file when one is found, else
Keras' download), a weights file (checked against the architecture before loading), or
random values drawn from a seed; their identity (a digest of a file's content) for
content-keyed caches; and the pretrained values themselves, read once per process.

``weights`` is one of

* ``"imagenet"``: a local ImageNet weights file when one is found (see
  :func:`find_imagenet_weights`), else Keras' own download and cache (``~/.keras/models``).
  With no network, the error says how to pass a local file instead;
* a path to a Keras weights file for the same architecture, with or without its top
  (``include_top=False``: then ``fc1``/``fc2`` start random and a warning says so); a file
  of another architecture is refused before loading, naming the one it fits;
* ``None``: random initialisation, drawn from a seed so that every process builds the
  same network.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backend import keras_seeded
from ..config import get_config
from ..memo import Memo, memoized
from .registry import BACKBONES, VGG_FC_LAYERS, BackboneSpec, get_backbone

__all__ = ["MAX_PRETRAINED", "PRETRAINED", "WeightsRef",
           "WeightsUnavailableError", "check_weights_file", "check_weights_format",
           "copy_weights", "file_has_top", "find_imagenet_weights", "fingerprint_of",
           "imagenet_weights_dirs", "load_pretrained_weights", "network_fingerprint",
           "pretrained_weights", "resolve_weights", "check_fc_weights", "weights_fingerprint",
           "weights_have_top"]


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be downloaded, and no local file was given."""


@dataclass(frozen=True)
class WeightsRef:
    """A weights choice resolved: its kind, the file (if any) and its memo key."""

    kind: str  # "imagenet" | "file" | "random"
    path: str | None = None
    key: tuple = ()  # memo key: the file's content digest, or the random seed


def imagenet_weights_dirs() -> list[Path]:
    """Folders searched for ImageNet weights files before Keras' download.

    The ``weights_dirs`` setting (:func:`~cnnfeatures.set_config`; by default
    ``$CNNFEATURES_WEIGHTS_DIR``, folders separated by ``os.pathsep``), then the
    ``shared/weights`` folder beside a source checkout of cnnfeatures (where this project
    keeps its offline weights). Keras' own cache (``~/.keras/models``) is searched by Keras.
    """
    checkout = Path(__file__).resolve().parents[3]
    return [*map(Path, get_config()["weights_dirs"]), checkout / "shared" / "weights"]


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


def resolve_weights(weights: str | os.PathLike[str] | None, seed: int | None = None, *,
                     backbone: str | None = None, need_top: bool = False) -> WeightsRef:
    if weights is None:
        return WeightsRef("random", key=("random", seed))
    if weights == "imagenet":
        # The same ImageNet weights, from a local file when one is at hand: offline runs
        # need no download.
        local = find_imagenet_weights(backbone, need_top) if backbone else None
        if local is None:
            return WeightsRef("imagenet", key=("imagenet",))
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
    return WeightsRef("file", path, ("file", digest))


def check_weights_format(path: str) -> None:
    """Refuse a file that is neither HDF5 (``.weights.h5``, ``.h5``) nor a ``.keras``
    archive: a ValueError naming it (Keras' own error, "file signature not found", would
    not say which file)."""
    import zipfile

    import h5py

    if not (h5py.is_hdf5(path) or zipfile.is_zipfile(path)):
        raise ValueError(f"weights file {path} is not a Keras weights file: expected an "
                         "HDF5 .weights.h5 (or .h5) file or a .keras archive")


@memoized("weights file digests", 32)
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
    return fingerprint_of(resolve_weights(weights, seed), seed)


def fingerprint_of(ref: WeightsRef, seed: int | None) -> str:
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
    ref = resolve_weights(weights, seed, backbone=spec.name,
                           need_top=need_fc and bool(spec.fc_layers))
    if ref.kind == "random" and seed is None:
        return None
    return fingerprint_of(ref, seed)


def _imagenet_help(spec: BackboneSpec, include_top: bool) -> str:
    top = "" if include_top else "_notop"
    return (
        f"could not download the ImageNet weights of {spec.name} (no network?). Download "
        f"them on a machine with network access, e.g. keras.applications.{spec.constructor}"
        f"(include_top={include_top}) caches '{spec.name}_weights_tf_dim_ordering_tf_kernels"
        f"{top}.h5' in ~/.keras/models; copy that file here and pass weights='<path to it>'."
    )


def build_donor(spec: BackboneSpec, ref: WeightsRef, include_top: bool):
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


@memoized("stock base shapes", 16)
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


@memoized("weights file checks", 32)
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


def copy_weights(target, weights: dict[str, list[np.ndarray]], spec: BackboneSpec, *,
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
PRETRAINED = Memo("pretrained weights", MAX_PRETRAINED)


def pretrained_weights(spec: BackboneSpec, ref: WeightsRef, want_top: bool
                ) -> tuple[dict[str, list[np.ndarray]], bool]:
    """The stock application's weights by layer name, and whether they hold the top."""
    top = want_top if ref.kind == "imagenet" else (
        want_top and file_has_top(ref.path, ref.key) is not False)
    for include_top in ((True, False) if top else (False,)):
        key = (spec.name, ref.key, include_top)
        found = PRETRAINED.get(key)
        if found is not None:
            return found, include_top
        try:
            with warnings.catch_warnings():
                # Keras warns about every missing group before it raises for a no-top file.
                warnings.simplefilter("ignore")
                donor = build_donor(spec, ref, include_top=include_top)
        except ValueError:
            if not include_top or ref.kind != "file" or file_has_top(ref.path,
                                                                      ref.key) is True:
                raise
            continue  # a file whose names did not tell: it has no top after all
        weights = {layer.name: layer.get_weights() for layer in donor.layers if layer.weights}
        del donor
        PRETRAINED.put(key, weights)
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
    ref = resolve_weights(weights, backbone=spec.name, need_top=want_top)
    values, _ = pretrained_weights(spec, ref, want_top=want_top)
    return copy_weights(model, values, spec, fc=fc)


@memoized("weights file tops", 32)
def file_has_top(path: str, key: tuple) -> bool | None:
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
    return any(part.startswith("dense") or part in VGG_FC_LAYERS for part in parts)


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
    ref = resolve_weights(weights, backbone=spec.name, need_top=True)
    if ref.kind == "random":
        return False
    return ref.kind == "imagenet" or file_has_top(ref.path, ref.key) is not False


def check_fc_weights(backbone: str, fc_pretrained: bool, layers: Sequence[str],
                     weights) -> None:
    """A ValueError when fc layers are asked of pretrained weights that do not hold them (a
    weights file without the classifier top): their features would be random, which a
    pretrained request never means. With ``weights=None`` every layer is random, as asked.
    """
    spec = get_backbone(backbone)
    asked = [name for name in layers if name in spec.fc_layers]
    if asked and not fc_pretrained and weights is not None:
        raise ValueError(
            f"layer {asked} of {backbone}: the weights {os.fspath(weights)!r} hold no "
            "classifier top (include_top=False), so these layers would be random; pass a "
            f"weights file with the top, or a convolutional layer such as "
            f"{spec.last_block_pool!r}")
