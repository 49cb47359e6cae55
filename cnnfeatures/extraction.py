"""CNNFeatureExtractor: multi-scale, fully convolutional CNN features as a transformer."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .backbones import (
    PRECISIONS,
    FeatureNetwork,
    check_layer_names,
    get_backbone,
    get_feature_network,
    network_fingerprint,
    warn_random_fc,
)
from .cache import ActivationCache, default_cache_dir, get_cache, make_key
from .config import carry_config
from .descriptors import DescriptorWriter, LocalDescriptors
from .images import (
    TransientImage,
    check_image_sources,
    image_digest,
    image_name,
    load_image,
    read_image_bytes,
)
from .instrumentation import count_forward
from .messages import Progress

__all__ = ["CNNFeatureExtractor", "ExtractionSettings", "NetworkCard", "scale_side"]

#: Seconds between looks at the cache while another process forwards claimed images.
CLAIM_POLL_SECONDS = 0.1

#: Largest scale accepted: side 224 + 320·5 = 1824. VGG's first block alone then needs
#: about 0.85 GB of activations per image; beyond that one image may not fit in memory.
MAX_SCALE = 5

def scale_side(n: int) -> int:
    """Input side of scale ``n`` in the report: ``224 + 320 * n``.

    Examples
    --------
    >>> [scale_side(n) for n in (0, 1, 2)]
    [224, 544, 864]
    """
    return 224 + 320 * int(n)


# --------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class _Plan:
    """What one transform needs: layers read, layers cached, and for which sides.

    It knows the network by its card (names, widths, identity); the network itself is
    built only when an image has to go through it (``network()``).
    """

    card: NetworkCard
    network: Callable[[], FeatureNetwork]
    layers: tuple[str, ...]  # asked for, in output order
    pooling: str | None
    sides: tuple[int, ...]
    forward_layers: tuple[str, ...]  # computed on every forward pass (asked + cached)

    @property
    def outputs(self) -> tuple[tuple[str, str], ...]:
        """What one forward pass returns: both poolings of every forwarded layer (a grid
        over layer x pooling then costs one pass), plus the map of the asked layer when
        local descriptors are wanted (maps are large: only then do they leave the graph)."""
        pooled = tuple((layer, kind) for layer in self.forward_layers
                       for kind in ("mean", "max"))
        if self.pooling is None:
            return pooled + tuple((layer, "map") for layer in self.layers)
        return pooled

    def key(self, digest: str, side: int, layer: str, pooling: str | None) -> str:
        card = self.card
        return make_key(digest, card.backbone, card.fingerprint, card.precision, side, layer,
                        pooling)

    def claim_key(self, digest: str, side: int) -> str:
        """What a process claims before forwarding an image at one side."""
        card = self.card
        return make_key(digest, card.backbone, card.fingerprint, card.precision, side,
                        "forward")

    def entry_shape(self, side: int, layer: str, pooling: str | None) -> tuple[int, ...]:
        """Shape of one cache entry: ``(channels,)`` pooled, ``(positions, channels)`` map."""
        if pooling is not None:
            return (self.card.widths[layer],)
        h, w, c = self.network().output_shape(layer, side)
        return (h * w, c)


@dataclass(frozen=True)
class NetworkCard:
    """What the extractor needs to know of a network without building it: its identity,
    its layers and their widths. Kept in the activation cache beside the features, so a
    process whose features are all cached (a grid search's refit, a worker) never loads
    the backend or builds the network."""

    backbone: str
    fingerprint: str
    precision: str
    fc_pretrained: bool
    layer_names: tuple[str, ...]
    widths: dict

    @classmethod
    def of(cls, net: FeatureNetwork) -> NetworkCard:
        widths = {layer.name: int(layer.output.shape[-1]) for layer in net.model.layers[1:]
                  if len(layer.output.shape) == 4}
        return cls(net.spec.name, net.fingerprint, net.precision, net.fc_pretrained,
                   net.layer_names, widths)

    def to_array(self) -> np.ndarray:
        text = json.dumps({**self.__dict__, "layer_names": list(self.layer_names)})
        return np.frombuffer(text.encode(), np.uint8)

    @classmethod
    def from_array(cls, array: np.ndarray) -> NetworkCard:
        fields = json.loads(bytes(np.asarray(array, np.uint8)).decode())
        return cls(**{**fields, "layer_names": tuple(fields["layer_names"])})

    def check_layers(self, layers: Sequence[str]) -> None:
        check_layer_names(self.backbone, self.layer_names, layers)


def _prefetch(tasks: Iterable[Callable[[], object]], depth: int = 2) -> Iterator[object]:
    """Run ``tasks`` in a background thread, ``depth`` ahead of the consumer.

    Decoding and resizing (Pillow and OpenCV release the GIL) then overlap with inference.
    """
    tasks = iter(tasks)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnfeatures-load") as pool:
        pending = []
        for task in tasks:
            pending.append(pool.submit(carry_config(task)))
            if len(pending) > depth:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


class _Extraction:
    """Fill the cache for a chunk of images, forwarding only the (image, side) pairs missing."""

    def __init__(self, plan: _Plan, cache: ActivationCache | None, batch_size: int, progress):
        self.plan = plan
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress
        self._reader = None

    def reader(self):
        """The network's reader of the plan's outputs (the network built on first need)."""
        if self._reader is None:
            self._reader = self.plan.network().reader(self.plan.outputs)
        return self._reader

    def side_batch(self, side: int) -> int:
        # batch_size counts images at side 224; larger sides take proportionally fewer per
        # batch, so activation memory stays about flat across scales.
        return max(1, int(round(self.batch_size * (224 / side) ** 2)))

    def run(self, sources, names, digests, payloads) -> list[dict]:
        """Return, per image, {(side, layer): array} for the asked layers and pooling."""
        plan = self.plan
        results: list[dict] = [{} for _ in sources]
        # Augmented copies are new content every time: caching them would only grow the
        # cache, so they are neither looked up nor stored.
        self.cacheable = [not isinstance(s, TransientImage) for s in sources]
        for side in plan.sides:
            todo = [i for i in range(len(sources)) if not self._lookup(i, side, digests,
                                                                       results)]
            if not self._shared():
                self._forward(side, todo, sources, names, digests, payloads, results)
                continue
            # Processes sharing the cache directory split the work: each forwards the
            # images it could claim, then waits for the others' (taking over any whose
            # process died), so each (image, side) is forwarded once in all of them.
            # Claims are taken a batch at a time, so that processes interleave batches.
            step = self.side_batch(side)
            while todo:
                mine, elsewhere, looked = [], [], 0
                for i in todo:
                    if len(mine) == step:
                        break
                    looked += 1
                    key = plan.claim_key(digests[i], side)
                    if not self.cache.claim(key):
                        elsewhere.append(i)  # another process forwards it now
                    elif self._lookup(i, side, digests, results):
                        self.cache.release(key)  # another process finished it meanwhile
                    else:
                        mine.append(i)
                try:
                    self._forward(side, mine, sources, names, digests, payloads, results)
                finally:
                    for i in mine:
                        self.cache.release(plan.claim_key(digests[i], side))
                # Only the images other processes hold are looked up again; the rest are
                # looked up when their claim is taken.
                todo = todo[looked:] + [i for i in elsewhere
                                        if not self._lookup(i, side, digests, results)]
                if todo and not mine:
                    time.sleep(CLAIM_POLL_SECONDS)
        return results

    def _shared(self) -> bool:
        """Whether other processes may be forwarding the same images: claims pay off."""
        return (self.cache is not None and self.cache.directory is not None
                and self.plan.pooling is not None)

    def _lookup(self, i: int, side: int, digests, results) -> bool:
        """Fill ``results[i]`` for ``side`` from the cache; whether every layer was there."""
        plan = self.plan
        if self.cache is None or not self.cacheable[i]:
            return False
        found = {}
        for layer in plan.layers:
            value = self.cache.get(plan.key(digests[i], side, layer, plan.pooling),
                                   plan.entry_shape(side, layer, plan.pooling))
            if value is None:
                return False
            found[(side, layer)] = value
        results[i].update(found)
        self.progress.update(1)  # this (image, side) is done already
        return True

    def _forward(self, side, todo, sources, names, digests, payloads, results):
        if not todo:
            return
        plan = self.plan
        net = plan.network()
        read = self.reader()
        step = self.side_batch(side)
        batches = [todo[k : k + step] for k in range(0, len(todo), step)]

        def load(batch):
            images = [load_image(sources[i], side, name=names[i], data=payloads[i])
                      for i in batch]
            return batch, net.preprocess(np.stack(images))

        for batch, x in _prefetch(lambda b=b: load(b) for b in batches):
            values = dict(zip(plan.outputs, read(x)))
            count_forward(net.spec.name, net.fingerprint, net.precision, side, len(batch))
            self._store(side, batch, digests, values, results)
            self.progress.update(len(batch))

    def _store(self, side, batch, digests, values, results):
        plan = self.plan
        for (layer, kind), array in values.items():
            pooling = None if kind == "map" else kind
            if pooling is None:
                array = array.reshape(len(array), -1, array.shape[-1])  # one row per position
            for j, i in enumerate(batch):
                if self.cache is not None and self.cacheable[i]:
                    self.cache.put(plan.key(digests[i], side, layer, pooling), array[j])
                if pooling == plan.pooling and layer in plan.layers:
                    results[i][(side, layer)] = array[j]


# --------------------------------------------------------------------------- estimator


def _as_layers(layer: str | Sequence[str]) -> tuple[str, ...]:
    return (layer,) if isinstance(layer, str) else tuple(layer)


def _check_scales(scales) -> tuple[int, ...]:
    if isinstance(scales, (Integral, str)) or scales is None:
        raise ValueError(
            f"scales must be a tuple of scale numbers n (side 224 + 320·n), e.g. (0,) or "
            f"(0, 1, 2); got {scales!r}"
        )
    values = tuple(scales)
    if not values:
        raise ValueError("scales must hold at least one scale number, e.g. (0,)")
    for n in values:
        if isinstance(n, bool) or not isinstance(n, Integral) or not 0 <= n <= MAX_SCALE:
            raise ValueError(
                f"scales must be integers n with 0 <= n <= {MAX_SCALE} (side 224 + 320·n, at "
                f"most {scale_side(MAX_SCALE)} pixels); got {n!r} in scales={scales!r}"
            )
    if len(set(values)) != len(values):
        raise ValueError(f"scales must not repeat a scale, got {scales!r}")
    return tuple(int(n) for n in values)


@dataclass(frozen=True)
class ExtractionSettings:
    """What a fitted :class:`CNNFeatureExtractor` computes, fixed by ``fit``.

    Plain values only, so the fitted extractor pickles; :meth:`network` finds (or builds,
    once per process) the network they name.
    """

    backbone: str
    weights: str | os.PathLike[str] | None
    precision: str
    seed: int | None  # of a random network (weights=None)
    need_fc: bool
    layers: tuple[str, ...]
    pooling: str | None
    scales: tuple[int, ...]
    scale_combination: str
    l2_normalize: bool

    @property
    def sides(self) -> tuple[int, ...]:
        return tuple(scale_side(n) for n in self.scales)

    def network(self, precision: str | None = None, verbose: int = 0) -> FeatureNetwork:
        return get_feature_network(self.backbone, self.weights, need_fc=self.need_fc,
                                   precision=precision or self.precision, seed=self.seed,
                                   verbose=verbose)

    def fingerprint(self) -> str | None:
        """The weights' identity now (a weights file is digested, the network not built)."""
        return network_fingerprint(self.backbone, self.weights, need_fc=self.need_fc,
                                   seed=self.seed)

    def card(self, cache: ActivationCache | None, verbose: int = 0,
             fingerprint: str | None = None) -> NetworkCard:
        """The network's card: from the cache when a process wrote it there, else from the
        network, built here (and the card written for the next process). ``fingerprint``:
        :meth:`fingerprint`, when the caller has it already."""
        fingerprint = fingerprint or self.fingerprint()
        key = None
        if fingerprint is not None and cache is not None:
            key = make_key("network card", self.backbone, fingerprint, self.precision,
                           self.need_fc)
            stored = cache.get(key, dtype=np.uint8)
            if stored is not None:
                return NetworkCard.from_array(stored)
        card = NetworkCard.of(self.network(verbose=verbose))
        if key is not None:
            cache.put(key, card.to_array())
        return card


class CNNFeatureExtractor(TransformerMixin, BaseEstimator):
    """Activations of a pretrained CNN as features, at one or several input scales.

    Each image is squashed to a square of side ``224 + 320·n`` for every scale ``n`` in
    ``scales`` (the report's multi-scale inputs), run through the backbone — VGG's ``fc1``
    and ``fc2`` as convolutions, so they give a spatial map at any scale — and the chosen
    layers' maps are pooled over positions, then L2-normalised.

    Activations are cached by image content (see :mod:`cnnfeatures.cache`): one forward pass
    per image and scale computes every layer a grid search is likely to ask for (VGG:
    ``block5_pool``, ``fc1``, ``fc2``; plus the asked layers) under both poolings, so the
    clones that ``GridSearchCV`` makes for each candidate and fold reuse it.

    Parameters
    ----------
    backbone : str, default="vgg19"
        A key of :data:`cnnfeatures.backbones.BACKBONES` (vgg16, vgg19, xception, resnet50, ...).
    layer : str or sequence of str, default="fc2"
        Layer(s) to read; several layers' features are concatenated in the order given.
    pooling : {"mean", "max"} or None, default="max"
        Pooling over spatial positions. None returns local descriptors — one row per
        position of every scale, per image — as a :class:`~cnnfeatures.LocalDescriptors`
        (one layer only), which :class:`VLADEncoder` aggregates.
    scales : tuple of int, default=(0,)
        Scale numbers ``n``; the input side is ``224 + 320·n`` (224, 544, 864, ...).
    scale_combination : {"pool", "concat"}, default="pool"
        How several scales combine. ``"pool"``: the per-scale pooled vectors are pooled
        again with the same pooling — the maximum over all positions of all scales for
        ``"max"``, the average of the per-scale means for ``"mean"`` (each scale weighs the
        same, so the many positions of a large scale do not drown the others); the length
        does not depend on the number of scales. ``"concat"``: per-scale vectors are
        concatenated (scale by scale within each layer).
    weights : "imagenet", str, Path or None, default="imagenet"
        ImageNet weights from Keras' cache, a Keras weights file, or None (random).
    l2_normalize : bool, default=True
        Divide each layer's vector (each scale's, with ``"concat"``; each descriptor, with
        ``pooling=None``) by its L2 norm.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Precision of the convolutions; features are float32 either way. ``"bfloat16"`` is
        3–5 times faster on CPUs with AMX / AVX-512 BF16 and changes features by under 1%
        (relative); ``"float16"`` is for GPUs. See :mod:`cnnfeatures.backbones`.
    batch_size : int, default=16
        Images per forward pass at side 224; larger sides take proportionally fewer.
    cache : bool or str or Path, default=True
        True: the process-wide memory cache (plus ``$CNNFEATURES_CACHE_DIR`` on disk when
        set); a path: memory plus that directory, shared between processes; False: none.
    verbose : int, default=0
        0 is silent; 1 says when a network is built and shows the forward passes' progress:
        a bar on a terminal, a line every 10 seconds in a log file.
    random_state : int, RandomState or None, default=None
        With ``weights=None`` only: the seed of the random network — an int is the seed,
        a RandomState gives one, None means seed 0 (so that the clones of a grid search
        share one network and its cache entries). The seed is kept in the fitted
        extractor: a pickled pipeline rebuilds the very same network in any process.

    Attributes
    ----------
    layers_ : tuple of str
        The layers read, in output order.
    input_sides_ : tuple of int
        Input side of each scale.
    layer_widths_ : tuple of int
        Number of channels of each layer.
    n_features_out_ : int
        Number of output features (columns), or the descriptor width with ``pooling=None``.
    settings_ : ExtractionSettings
        Everything that decides the features, as fitted (parameters changed later with
        ``set_params`` take effect at the next ``fit``).
    weights_fingerprint_ : str
        Identity of the weights the network was built from (a digest of a weights file's
        content, ``"imagenet"``, or ``"random-<seed>"``). ``transform`` refuses to run when
        the weights now give another fingerprint (a replaced file).
    random_seed_ : int or None
        The seed of a random network (``weights=None``), else None.

    See Also
    --------
    cnnfeatures.VLADEncoder : aggregates local descriptors (``pooling=None``).

    Notes
    -----
    ``fit`` learns nothing: it validates the parameters and builds (once per process) the
    network, without any forward pass. The extractor holds no Keras object, so it clones and
    pickles like any scikit-learn estimator; the network is rebuilt from its name and weights
    in a new process.

    Examples
    --------
    >>> import numpy as np
    >>> from cnnfeatures import CNNFeatureExtractor
    >>> images = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    >>> ext = CNNFeatureExtractor(backbone="vgg16", layer="block5_pool", pooling="mean",
    ...                           weights=None)
    >>> ext.fit_transform(images).shape  # doctest: +SKIP
    (2, 512)
    """

    _parameter_constraints: dict = {
        "backbone": [str],  # checked against the registry in fit (it can grow)
        "layer": [str, list, tuple],
        "pooling": [StrOptions({"mean", "max"}), None],
        "scales": [list, tuple],
        "scale_combination": [StrOptions({"pool", "concat"})],
        "weights": [str, os.PathLike, None],
        "l2_normalize": ["boolean"],
        "precision": [StrOptions(set(PRECISIONS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "cache": ["boolean", str, os.PathLike],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        backbone: str = "vgg19",
        layer: str | Sequence[str] = "fc2",
        pooling: str | None = "max",
        scales: Sequence[int] = (0,),
        scale_combination: str = "pool",
        weights: str | os.PathLike[str] | None = "imagenet",
        l2_normalize: bool = True,
        precision: str = "float32",
        batch_size: int = 16,
        cache: bool | str | os.PathLike[str] = True,
        verbose: int = 0,
        random_state=None,
    ):
        self.backbone = backbone
        self.layer = layer
        self.pooling = pooling
        self.scales = scales
        self.scale_combination = scale_combination
        self.weights = weights
        self.l2_normalize = l2_normalize
        self.precision = precision
        self.batch_size = batch_size
        self.cache = cache
        self.verbose = verbose
        self.random_state = random_state

    # -- sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # X is a sequence of images (paths or arrays), not a 2-D feature matrix: the
        # estimator checks that feed numeric 2-D X do not apply.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = []
        return tags

    def __sklearn_clone__(self):
        # A grid search's clones may run in worker processes, which inherit this process's
        # environment when they start: name the session cache now, so that they share it.
        if self.cache is True:
            default_cache_dir()
        return super().__sklearn_clone__()

    def feature_network(self, precision: str | None = None) -> FeatureNetwork:
        """The fitted extractor's network (in another ``precision`` if asked).

        Raises
        ------
        ValueError
            When the weights file has changed since ``fit`` (its content fingerprint
            differs): features would no longer match what later steps learnt.
        """
        check_is_fitted(self, "settings_")
        settings = self.settings_
        net = settings.network(precision, verbose=self.verbose)
        if net.fingerprint != self.weights_fingerprint_:
            self._weights_changed(net.fingerprint)
        return net

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Validate parameters and images, and build the network (no forward pass).

        Everything that decides what ``transform`` returns is fixed here (see
        ``settings_``): a ``set_params`` after ``fit`` takes effect at the next ``fit``.
        ``batch_size``, ``cache`` and ``verbose``, which change how features are computed
        but not their values, are read at each ``transform``.

        Parameters
        ----------
        X : sequence of image sources
            Paths or arrays (see :mod:`cnnfeatures.images`); only checked here.
        y : ignored

        Returns
        -------
        self : CNNFeatureExtractor
        """
        check_image_sources(X)
        layers = _as_layers(self.layer)
        if not layers or not all(isinstance(name, str) for name in layers):
            raise ValueError(f"layer must be a layer name or a list of names, got {self.layer!r}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layer lists a layer twice: {self.layer!r}")
        if self.pooling is None and len(layers) != 1:
            raise ValueError(
                "pooling=None (local descriptors) reads one layer at a time; got "
                f"layer={self.layer!r}"
            )
        scales = _check_scales(self.scales)
        spec = get_backbone(self.backbone)
        settings = ExtractionSettings(
            backbone=self.backbone, weights=self.weights, precision=self.precision,
            seed=None if self.weights is not None else _network_seed(self.random_state),
            need_fc=any(name in spec.fc_layers for name in layers), layers=layers,
            pooling=self.pooling, scales=scales, scale_combination=self.scale_combination,
            l2_normalize=self.l2_normalize)
        card = settings.card(self._cache(), self.verbose)
        card.check_layers(layers)
        warn_random_fc(card.backbone, card.fc_pretrained, layers)

        self.settings_ = settings
        self.weights_fingerprint_ = card.fingerprint
        self.random_seed_ = settings.seed
        self.layers_ = layers
        self.input_sides_ = settings.sides
        widths = [card.widths[name] for name in layers]
        self.layer_widths_ = tuple(widths)
        self.n_features_out_ = (
            widths[0] if self.pooling is None
            else sum(widths) * (len(scales) if self.scale_combination == "concat" else 1)
        )
        return self

    def _plan(self) -> _Plan:
        settings = self.settings_
        now = settings.fingerprint()
        if now is not None and now != self.weights_fingerprint_:
            self._weights_changed(now)
        card = settings.card(self._cache(), self.verbose, fingerprint=now)
        spec = get_backbone(card.backbone)
        cached = [name for name in spec.pooled_layers if name in card.layer_names
                  and (name not in spec.fc_layers or card.fc_pretrained)]
        forward = tuple(dict.fromkeys([*self.layers_, *cached]))
        return _Plan(card, self.feature_network, self.layers_, settings.pooling,
                     self.input_sides_, forward)

    def _weights_changed(self, now: str):
        raise ValueError(
            f"the weights {os.fspath(self.settings_.weights)!r} have changed since this "
            f"extractor was fitted (fingerprint {self.weights_fingerprint_} then, {now} "
            "now): its features would differ from those the next steps were trained on; "
            "restore the file or fit the pipeline again"
        )

    def _cache(self) -> ActivationCache | None:
        if self.cache is False:
            return None
        if self.cache is True:
            return get_cache(default_cache_dir())
        return get_cache(self.cache)

    def transform(self, X) -> np.ndarray | LocalDescriptors:
        """Features of each image.

        Parameters
        ----------
        X : sequence of image sources
            Paths or arrays of any size.

        Returns
        -------
        features : ndarray of shape (n_images, n_features_out_), float32
            Or, with ``pooling=None``, a :class:`~cnnfeatures.LocalDescriptors`.
        """
        check_is_fitted(self, "settings_")
        local = self.settings_.pooling is None
        config = getattr(self, "_sklearn_output_config", {}).get("transform", "default")
        if local and config != "default":
            raise ValueError(
                "pooling=None returns ragged local descriptors, which set_output(transform="
                f"{config!r}) cannot hold; use set_output(transform='default')"
            )
        sources = check_image_sources(X)
        plan = self._plan()
        if local:
            writer = DescriptorWriter(self.layer_widths_[0])
            for row in self._extract(plan, sources):
                writer.append(*self._local(row))
            return writer.finish(self.get_feature_names_out())
        return np.stack([self._combine(row) for row in self._extract(plan, sources)])

    def _extract(self, plan: _Plan, sources) -> Iterator[dict]:
        """Yield, per image, {(side, layer): array}; streams in chunks to bound memory."""
        n = len(sources)
        # Counts (image, scale) pairs done, found in the cache or forwarded.
        progress = Progress(n * len(plan.sides), f"{plan.card.backbone} forward passes",
                            verbose=self.verbose)
        engine = _Extraction(plan, self._cache(), self.batch_size, progress)
        # Local maps are large: hold fewer images' worth at a time.
        pooled = self.settings_.pooling is not None
        chunk = max(256, 16 * self.batch_size) if pooled else max(32, self.batch_size)
        try:
            for start in range(0, n, chunk):
                part = [sources[i] for i in range(start, min(n, start + chunk))]
                names = [image_name(s, start + k) for k, s in enumerate(part)]
                payloads = [read_image_bytes(s) if isinstance(s, (str, os.PathLike)) else None
                            for s in part]
                digests = [image_digest(s, data) for s, data in zip(part, payloads)]
                yield from engine.run(part, names, digests, payloads)
        finally:
            progress.close()

    def _combine(self, row: dict) -> np.ndarray:
        settings = self.settings_
        blocks = []
        for layer in self.layers_:
            per_scale = [row[(side, layer)] for side in self.input_sides_]
            if settings.scale_combination == "concat":
                blocks.extend(per_scale)
            elif settings.pooling == "max":
                blocks.append(np.max(per_scale, axis=0))
            else:
                blocks.append(np.mean(per_scale, axis=0, dtype=np.float64).astype(np.float32))
        if settings.l2_normalize:
            blocks = [_l2(b) for b in blocks]
        return np.concatenate(blocks).astype(np.float32, copy=False)

    def _local(self, row: dict) -> tuple[np.ndarray, np.ndarray]:
        """One image's descriptors of every scale, and the scale of each row."""
        layer = self.layers_[0]
        per_scale = [row[(side, layer)] for side in self.input_sides_]
        rows = np.concatenate(per_scale).astype(np.float32)
        if self.settings_.l2_normalize:
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        scales = np.repeat(np.asarray(self.settings_.scales, dtype=np.int16),
                           [len(a) for a in per_scale])
        return rows, scales

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the output columns: ``<layer>_<pooling>_<i>``, with ``_n<scale>`` for
        ``scale_combination="concat"``.

        Examples
        --------
        >>> ext = CNNFeatureExtractor(layer=["fc1"], weights=None)  # doctest: +SKIP
        >>> ext.fit([np.zeros((8, 8))]).get_feature_names_out()[:2]  # doctest: +SKIP
        array(['fc1_max_0', 'fc1_max_1'], dtype=object)
        """
        check_is_fitted(self, "settings_")
        settings = self.settings_
        pooling = settings.pooling or "local"
        names = []
        for layer, width in zip(self.layers_, self.layer_widths_):
            if settings.scale_combination == "concat" and settings.pooling is not None:
                for n in settings.scales:
                    names.extend(f"{layer}_n{n}_{pooling}_{j}" for j in range(width))
            else:
                names.extend(f"{layer}_{pooling}_{j}" for j in range(width))
        return np.asarray(names, dtype=object)


def _network_seed(random_state) -> int:
    """The seed of a random network: an int as is, one drawn from a RandomState, else 0."""
    if random_state is None:
        return 0
    if isinstance(random_state, Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))


def _l2(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v
