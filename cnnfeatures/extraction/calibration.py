"""The int8 calibration of the OpenVINO engine: which images, their identity, the model.

``calibration`` is a number of the images the extractor is fitted on (evenly spaced
through them, so a sorted folder gives every class its share) or a fixed sequence of
images. Either way the images go through the network at the backbone's default side
(224 for VGG): activation ranges are a matter of content, not of image size, and one
calibration then serves every scale — so a grid over scales shares one int8 model and
its cache entries.

The calibration's identity — a digest of the chosen images' contents, their number, the
side and NNCF's version — is a part of the features' cache keys: features of two
calibrations are never mixed. Quantized models are kept per process by identity and
outputs, so the candidates of a grid search that share a calibration quantize once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from numbers import Integral

import numpy as np

from ..backbones import get_backbone
from ..backbones.openvino import QuantizedIR, load_runtime, quantize_reader
from ..images import check_image_sources, image_digest, image_name, load_image
from ..memo import Memo
from ..messages import announce
from .forward import ForwardPlan, NetworkCard
from .settings import ExtractionSettings

__all__ = ["QUANTIZED", "calibrate", "calibration_sources"]

#: Quantized models of this process, by (network, calibration, outputs).
QUANTIZED = Memo("int8 quantized models", 4)


def calibration_sources(X: Sequence, calibration) -> list:
    """The calibration images: ``calibration`` evenly spaced images of ``X`` (an int), or
    the images ``calibration`` lists.

    Examples
    --------
    >>> calibration_sources(list("abcdefgh"), 3)
    ['a', 'c', 'f']
    """
    if isinstance(calibration, Integral):
        if calibration < 1:
            raise ValueError(f"calibration must be a positive number of images, got "
                             f"{calibration}")
        n = min(int(calibration), len(X))
        return [X[int(i)] for i in np.linspace(0, len(X), n, endpoint=False)]
    return list(check_image_sources(calibration, name="calibration"))


def calibrate(settings: ExtractionSettings, card: NetworkCard, sources: Sequence,
              verbose: int = 0) -> tuple[ExtractionSettings, QuantizedIR]:
    """Quantize the network of ``settings`` for its plan's outputs on ``sources``.

    Returns the settings with their calibration identity, and the int8 model."""
    side = get_backbone(settings.backbone).default_side
    nncf = load_runtime("nncf")
    digests = [image_digest(source) for source in sources]
    identity = hashlib.sha256("\n".join(
        [*digests, str(len(digests)), str(side), nncf.__version__]).encode()).hexdigest()[:12]
    settings = replace(settings, calibration=identity)
    # Sorted: the candidates of a grid over the layers a pass computes anyway (whose plans
    # list the same outputs in another order) share one quantized model.
    outputs = tuple(sorted(ForwardPlan.of(replace(card, precision=settings.label),
                                          lambda: None, settings.layers, settings.pooling,
                                          settings.sides).outputs))
    def quantize() -> QuantizedIR:
        net = settings.network(verbose=verbose)
        announce(f"quantizing {settings.backbone} to int8 on {len(sources)} calibration "
                 f"images at side {side}", verbose)
        batches = [net.preprocess(load_image(source, side, name=image_name(source, i))[None])
                   for i, source in enumerate(sources)]
        return quantize_reader(net, outputs, batches)

    return settings, QUANTIZED.get_or_compute((card.fingerprint, identity, outputs), quantize)
