"""The forward engine behind :class:`~cnnfeatures.CNNFeatureExtractor`: which activations
one transform needs (:class:`ForwardPlan`), what is known of a network without building
it (:class:`NetworkCard`), and filling the activation cache for a chunk of images
(:class:`CacheFiller`), forwarding each (image, side) pair at most once across every
process that shares the cache.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..backbones import FeatureNetwork, check_layer_names, get_backbone
from ..cache import ActivationCache, make_key
from ..config import carry_config
from ..images import (
    ImageSource,
    TransientImage,
    image_digest,
    image_name,
    load_image,
    read_image_bytes,
)
from ..instrumentation import count_forward
from ..messages import Progress

__all__ = ["CLAIM_POLL_SECONDS", "CacheFiller", "ForwardPlan", "ImageRecord", "NetworkCard",
           "prefetch", "stream_activations"]

#: Seconds between looks at the cache while another process forwards claimed images.
CLAIM_POLL_SECONDS = 0.1


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


@dataclass(frozen=True)
class ForwardPlan:
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

    @classmethod
    def of(cls, card: NetworkCard, network: Callable[[], FeatureNetwork],
           layers: tuple[str, ...], pooling: str | None, sides: tuple[int, ...]) -> ForwardPlan:
        """The plan for ``layers``: every forward pass also computes the backbone's pooled
        layers (those with pretrained weights), so a grid over layers costs one pass."""
        spec = get_backbone(card.backbone)
        cached = [name for name in spec.pooled_layers if name in card.layer_names
                  and (name not in spec.fc_layers or card.fc_pretrained)]
        return cls(card, network, layers, pooling, sides,
                   tuple(dict.fromkeys([*layers, *cached])))

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


@dataclass
class ImageRecord:
    """One image of a chunk: where it comes from, what it holds, what was found for it.

    ``activations`` maps ``(side, layer)`` to the asked pooling's array (or map)."""

    source: ImageSource
    name: str
    digest: str
    payload: bytes | None  # the file's bytes, read once for the digest and the decoder
    activations: dict = field(default_factory=dict)

    @classmethod
    def read(cls, source: ImageSource, index: int) -> ImageRecord:
        """Image ``index`` of an input, its file read once (digest and decoder share it)."""
        payload = read_image_bytes(source) if isinstance(source, (str, os.PathLike)) else None
        return cls(source, image_name(source, index), image_digest(source, payload), payload)

    @property
    def cacheable(self) -> bool:
        # Augmented copies are new content every time: caching them would only grow the
        # cache, so they are neither looked up nor stored.
        return not isinstance(self.source, TransientImage)


def prefetch(tasks: Iterable[Callable[[], object]], depth: int = 2) -> Iterator[object]:
    """Run ``tasks`` in a background thread, ``depth`` ahead of the consumer (with the
    caller's settings, see :func:`~cnnfeatures.config.carry_config`).

    Decoding and resizing (Pillow and OpenCV release the GIL) then overlap with inference.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnfeatures-load") as pool:
        pending = []
        for task in tasks:
            pending.append(pool.submit(carry_config(task)))
            if len(pending) > depth:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


class CacheFiller:
    """Fill each image's activations for a plan, from the cache or by forwarding only the
    (image, side) pairs missing, storing what it computes."""

    def __init__(self, plan: ForwardPlan, cache: ActivationCache | None, batch_size: int,
                 progress: Progress):
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

    def fill(self, images: list[ImageRecord]) -> list[ImageRecord]:
        """Fill ``activations`` of every image for every side of the plan."""
        for side in self.plan.sides:
            todo = [image for image in images if not self._lookup(image, side)]
            if self._shared():
                self._forward_claimed(side, todo)
            else:
                self._forward(side, todo)
        return images

    def _shared(self) -> bool:
        """Whether other processes may be forwarding the same images: claims pay off."""
        return (self.cache is not None and self.cache.directory is not None
                and self.plan.pooling is not None)

    def _forward_claimed(self, side: int, todo: list[ImageRecord]) -> None:
        """Processes sharing the cache directory split the work: each forwards the images
        it could claim, then waits for the others' (taking over any whose process died),
        so each (image, side) is forwarded once in all of them. Claims are taken a batch
        at a time, so that processes interleave batches."""
        step = self.side_batch(side)
        while todo:
            mine, elsewhere, looked = [], [], 0
            for image in todo:
                if len(mine) == step:
                    break
                looked += 1
                key = self.plan.claim_key(image.digest, side)
                if not self.cache.claim(key):
                    elsewhere.append(image)  # another process forwards it now
                elif self._lookup(image, side):
                    self.cache.release(key)  # another process finished it meanwhile
                else:
                    mine.append(image)
            try:
                self._forward(side, mine)
            finally:
                for image in mine:
                    self.cache.release(self.plan.claim_key(image.digest, side))
            # Only the images other processes hold are looked up again; the rest are
            # looked up when their claim is taken.
            todo = todo[looked:] + [image for image in elsewhere
                                    if not self._lookup(image, side)]
            if todo and not mine:
                time.sleep(CLAIM_POLL_SECONDS)

    def _lookup(self, image: ImageRecord, side: int) -> bool:
        """Fill ``image.activations`` for ``side`` from the cache; whether every layer was
        there."""
        plan = self.plan
        if self.cache is None or not image.cacheable:
            return False
        found = {}
        for layer in plan.layers:
            value = self.cache.get(plan.key(image.digest, side, layer, plan.pooling),
                                   plan.entry_shape(side, layer, plan.pooling))
            if value is None:
                return False
            found[(side, layer)] = value
        image.activations.update(found)
        self.progress.update(1)  # this (image, side) is done already
        return True

    def _forward(self, side: int, todo: list[ImageRecord]) -> None:
        if not todo:
            return
        net = self.plan.network()
        read = self.reader()
        step = self.side_batch(side)
        batches = [todo[k : k + step] for k in range(0, len(todo), step)]

        def load(batch):
            pixels = [load_image(image.source, side, name=image.name, data=image.payload)
                      for image in batch]
            return batch, net.preprocess(np.stack(pixels))

        for batch, x in prefetch(lambda b=b: load(b) for b in batches):
            values = dict(zip(self.plan.outputs, read(x)))
            count_forward(net.spec.name, net.fingerprint, net.precision, side, len(batch))
            self._store(side, batch, values)
            self.progress.update(len(batch))

    def _store(self, side: int, batch: list[ImageRecord], values: dict) -> None:
        plan = self.plan
        for (layer, kind), array in values.items():
            pooling = None if kind == "map" else kind
            if pooling is None:
                array = array.reshape(len(array), -1, array.shape[-1])  # one row per position
            for image, value in zip(batch, array):
                if self.cache is not None and image.cacheable:
                    self.cache.put(plan.key(image.digest, side, layer, pooling), value)
                if pooling == plan.pooling and layer in plan.layers:
                    image.activations[(side, layer)] = value


def stream_activations(plan: ForwardPlan, sources: Sequence[ImageSource],
                       cache: ActivationCache | None, batch_size: int,
                       verbose: int = 0) -> Iterator[ImageRecord]:
    """Yield each image with its activations for ``plan``, in order; streams in chunks so
    that memory holds one chunk's files and activations at a time."""
    n = len(sources)
    # Counts (image, scale) pairs done, found in the cache or forwarded.
    progress = Progress(n * len(plan.sides), f"{plan.card.backbone} forward passes",
                        verbose=verbose)
    filler = CacheFiller(plan, cache, batch_size, progress)
    # Local maps are large: hold fewer images' worth at a time.
    chunk = max(256, 16 * batch_size) if plan.pooling is not None else max(32, batch_size)
    try:
        for start in range(0, n, chunk):
            yield from filler.fill([ImageRecord.read(sources[i], i)
                                    for i in range(start, min(n, start + chunk))])
    finally:
        progress.close()
