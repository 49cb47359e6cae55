"""What a fitted extractor computes (:class:`ExtractionSettings`) and how one image's
activations become its row of features."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state

from ..backbones import FeatureNetwork, get_backbone, get_feature_network, network_fingerprint
from ..backbones.openvino import ENGINE_PRECISIONS, OpenVINONetwork, QuantizedIR, load_runtime
from ..cache import ActivationCache, make_key
from ..devices import check_device
from .forward import NetworkCard
from .scales import Scales

__all__ = ["ExtractionSettings", "check_layers", "network_seed"]


def check_layers(layer: str | Sequence[str], pooling: str | None) -> tuple[str, ...]:
    """The ``layer`` parameter as a tuple of names; a ValueError saying what is wrong."""
    layers = (layer,) if isinstance(layer, str) else tuple(layer)
    if not layers or not all(isinstance(name, str) for name in layers):
        raise ValueError(f"layer must be a layer name or a list of names, got {layer!r}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layer lists a layer twice: {layer!r}")
    if pooling is None and len(layers) != 1:
        raise ValueError(
            f"pooling=None (local descriptors) reads one layer at a time; got layer={layer!r}")
    return layers


def check_engine(engine: str, precision: str) -> None:
    """The engine exists, computes in ``precision``, and is installed."""
    if engine not in ENGINE_PRECISIONS:
        raise ValueError(f"engine must be one of {list(ENGINE_PRECISIONS)}, got {engine!r}")
    if precision not in ENGINE_PRECISIONS[engine]:
        raise ValueError(f"precision={precision!r} is not one of engine={engine!r}'s: "
                         f"{list(ENGINE_PRECISIONS[engine])}")
    if engine == "openvino":
        load_runtime("openvino")
        if precision == "int8":
            load_runtime("nncf")


@dataclass(frozen=True)
class ExtractionSettings:
    """What a fitted :class:`~cnnfeatures.CNNFeatureExtractor` computes, fixed by ``fit``.

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
    scales: Scales
    scale_combination: str
    l2_normalize: bool
    # Where the network runs (devices.check_device); not a part of any cache key.
    device: str = "auto"
    engine: str = "keras"  # or "openvino" (backbones.openvino)
    calibration: str | None = None  # identity of an int8 model's calibration images

    @classmethod
    def of(cls, backbone: str, weights, precision: str, layer: str | Sequence[str] | None,
           pooling: str | None, scales, scale_combination: str, l2_normalize: bool,
           random_state, device: str = "auto", engine: str = "keras") -> ExtractionSettings:
        """The settings an extractor's parameters ask for, checked (the backbone against
        the registry, the layers, the scales)."""
        spec = get_backbone(backbone)
        check_engine(engine, precision)
        layers = check_layers(spec.last_block_pool if layer is None else layer, pooling)
        return cls(backbone=backbone, weights=weights, precision=precision,
                   seed=None if weights is not None else network_seed(random_state),
                   need_fc=any(name in spec.fc_layers for name in layers), layers=layers,
                   pooling=pooling, scales=Scales.of(scales),
                   scale_combination=scale_combination, l2_normalize=l2_normalize,
                   device=check_device(device), engine=engine)

    @property
    def sides(self) -> tuple[int, ...]:
        return self.scales.sides

    @property
    def keras_precision(self) -> str:
        """The precision of the Keras network (an OpenVINO engine converts a float32 one)."""
        return self.precision if self.engine == "keras" else "float32"

    @property
    def label(self) -> str:
        """What the features were computed with, in cache keys: the precision for Keras,
        else the engine, the precision and an int8 model's calibration."""
        if self.engine == "keras":
            return self.precision
        return "-".join(filter(None, [self.engine, self.precision, self.calibration]))

    def network(self, precision: str | None = None, verbose: int = 0) -> FeatureNetwork:
        """The Keras network (in ``precision``, default :attr:`keras_precision`)."""
        return get_feature_network(self.backbone, self.weights, need_fc=self.need_fc,
                                   precision=precision or self.keras_precision,
                                   seed=self.seed, verbose=verbose, device=self.device)

    def engine_network(self, quantized: QuantizedIR | None = None, verbose: int = 0):
        """The network that computes the features: Keras', or OpenVINO's over it."""
        net = self.network(verbose=verbose)
        if self.engine == "keras":
            return net
        return OpenVINONetwork(net, self.precision, self.label, quantized)

    def fingerprint(self) -> str | None:
        """The weights' identity now (a weights file is digested, the network not built)."""
        return network_fingerprint(self.backbone, self.weights, need_fc=self.need_fc,
                                   seed=self.seed)

    def check_unchanged(self, then: str, now: str) -> None:
        """A ValueError when the weights' fingerprint is no longer the fitted one."""
        if now != then:
            raise ValueError(
                f"the weights {os.fspath(self.weights)!r} have changed since this extractor "
                f"was fitted (fingerprint {then} then, {now} now): its features would "
                "differ from those the next steps were trained on; restore the file or fit "
                "the pipeline again")

    def card(self, cache: ActivationCache | None, verbose: int = 0,
             fingerprint: str | None = None) -> NetworkCard:
        """The network's card: from the cache when a process wrote it there, else from the
        network, built here (and the card written for the next process). ``fingerprint``:
        :meth:`fingerprint`, when the caller has it already."""
        fingerprint = fingerprint or self.fingerprint()
        key = None
        if fingerprint is not None and cache is not None:
            key = make_key("network card", self.backbone, fingerprint, self.keras_precision,
                           self.need_fc)
            stored = cache.get(key, dtype=np.uint8)
            if stored is not None:
                return replace(NetworkCard.from_array(stored), precision=self.label)
        card = NetworkCard.of(self.network(verbose=verbose))
        if key is not None:
            cache.put(key, card.to_array())
        return replace(card, precision=self.label)

    def n_features(self, widths: Sequence[int]) -> int:
        """Columns of a row, given each layer's width (a descriptor's width when local)."""
        if self.pooling is None:
            return widths[0]
        return sum(widths) * (len(self.scales) if self.scale_combination == "concat" else 1)

    def pooled_row(self, activations: dict) -> np.ndarray:
        """One image's features from its ``{(side, layer): pooled vector}``."""
        blocks = []
        for layer in self.layers:
            per_scale = [activations[(side, layer)] for side in self.sides]
            if self.scale_combination == "concat":
                blocks.extend(per_scale)
            elif self.pooling == "max":
                blocks.append(np.max(per_scale, axis=0))
            else:
                blocks.append(np.mean(per_scale, axis=0, dtype=np.float64).astype(np.float32))
        if self.l2_normalize:
            blocks = [_unit(block) for block in blocks]
        return np.concatenate(blocks).astype(np.float32, copy=False)

    def local_rows(self, activations: dict) -> tuple[np.ndarray, np.ndarray]:
        """One image's descriptors of every scale, and the scale number of each row."""
        layer = self.layers[0]
        per_scale = [activations[(side, layer)] for side in self.sides]
        rows = np.concatenate(per_scale).astype(np.float32)
        if self.l2_normalize:
            rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        scales = np.repeat(np.asarray(self.scales, dtype=np.int16), [len(a) for a in per_scale])
        return rows, scales

    def feature_names(self, widths: Sequence[int]) -> np.ndarray:
        """``<layer>_<pooling>_<i>``, with ``_n<scale>`` for ``scale_combination="concat"``."""
        pooling = self.pooling or "local"
        names = []
        for layer, width in zip(self.layers, widths):
            if self.scale_combination == "concat" and self.pooling is not None:
                for n in self.scales:
                    names.extend(f"{layer}_n{n}_{pooling}_{j}" for j in range(width))
            else:
                names.extend(f"{layer}_{pooling}_{j}" for j in range(width))
        return np.asarray(names, dtype=object)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def network_seed(random_state) -> int:
    """The seed of a random network: an int as is, one drawn from a RandomState, else 0."""
    if random_state is None:
        return 0
    if isinstance(random_state, Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))

