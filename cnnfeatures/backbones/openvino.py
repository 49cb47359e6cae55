"""OpenVINO: the CPU engine of the extractor (``engine="openvino"``).

A :class:`~cnnfeatures.backbones.FeatureNetwork`'s reader — the network cut where the
asked layers end, pooled inside the graph — is converted by ``openvino.convert_model``
from its TensorFlow graph with a free batch size and side, so one converted model serves
every scale, and compiled for the CPU with the LATENCY hint (for synchronous batches it
measured twice the THROUGHPUT hint's speed, see ``benchmarks/bench_engine.py``).

Precisions: ``"float32"``, ``"bfloat16"`` (OpenVINO's inference precision hint; faster only
on CPUs with AMX) and ``"int8"``: NNCF's post-training quantization, calibrated on images
given by the caller. A quantized model is kept as OpenVINO IR bytes (:class:`QuantizedIR`),
which pickle; compiled models never do — each process compiles its own, once (a bounded
memo; :func:`~cnnfeatures.memo.clear_memos` forgets it).

OpenVINO and NNCF are an optional extra: ``pip install "cnnfeatures[openvino]"``.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..backend import concrete_function
from ..memo import Memo
from .network import FeatureNetwork, reader_model

__all__ = ["ENGINES", "ENGINE_PRECISIONS", "MAX_COMPILED", "OpenVINONetwork", "QuantizedIR",
           "load_runtime", "quantize_reader"]

#: The engines of the extractor, and the precisions each computes in.
ENGINES = ("keras", "openvino")
ENGINE_PRECISIONS = {"keras": ("float32", "bfloat16", "float16"),
                     "openvino": ("float32", "bfloat16", "int8")}

# OpenVINO's inference precision of each of our precisions (int8: what is not quantized
# runs in float32, never in an implicit bfloat16).
_HINTS = {"float32": "f32", "bfloat16": "bf16", "int8": "f32"}

#: Compiled models kept per process (each holds its weights: VGG-16's are 60-530 MB).
MAX_COMPILED = 4
COMPILED = Memo("openvino compiled models", MAX_COMPILED)


def load_runtime(name: str = "openvino"):
    """Import ``openvino`` or ``nncf``; a missing one is an ImportError saying what to
    install."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"engine='openvino' needs the {name} package, which is not installed: "
            f"pip install \"cnnfeatures[openvino]\" (openvino and nncf)") from error


@dataclass(frozen=True)
class QuantizedIR:
    """An int8 model as OpenVINO IR (the XML graph and its weights' bytes), the outputs
    it returns and their tensors' names; what a fitted int8 extractor pickles."""

    xml: bytes
    weights: bytes
    outputs: tuple[tuple[str, str], ...]
    names: tuple[str, ...]

    def model(self):
        ov = load_runtime()
        return ov.Core().read_model(self.xml.decode(), ov.Tensor(
            np.frombuffer(self.weights, np.uint8).copy()))


def _converted(net: FeatureNetwork, outputs: Sequence[tuple[str, str]]):
    """The converted reader, and the name of each output's tensor in ``outputs``' order
    (OpenVINO orders a converted model's outputs by name: ``Identity_10`` before
    ``Identity_2``)."""
    ov = load_runtime()
    function = concrete_function(reader_model(net.model, outputs))
    return ov.convert_model(function), tuple(t.name for t in function.outputs)


def quantize_reader(net: FeatureNetwork, outputs: Sequence[tuple[str, str]],
                    calibration: Sequence[np.ndarray]) -> QuantizedIR:
    """NNCF's post-training int8 quantization of ``net``'s reader of ``outputs``.

    Parameters
    ----------
    net : FeatureNetwork
        A float32 network.
    outputs : sequence of (layer, kind)
        As :meth:`FeatureNetwork.reader` takes them.
    calibration : sequence of ndarray
        Preprocessed batches ``(1, h, w, 3)`` (``net.preprocess``), in a fixed order: the
        same batches give the same model.
    """
    ov, nncf = load_runtime(), load_runtime("nncf")
    model, names = _converted(net, outputs)
    quantized = nncf.quantize(model, nncf.Dataset(list(calibration)),
                              subset_size=len(calibration))
    with tempfile.TemporaryDirectory(prefix="cnnfeatures-ov-") as folder:
        xml = os.path.join(folder, "model.xml")
        ov.save_model(quantized, xml, compress_to_fp16=False)
        with open(xml, "rb") as graph, open(xml[:-4] + ".bin", "rb") as weights:
            return QuantizedIR(graph.read(), weights.read(), tuple(map(tuple, outputs)), names)


class OpenVINONetwork:
    """A float32 :class:`FeatureNetwork` whose readers run on OpenVINO.

    It answers as the network does (spec, fingerprint, layers, shapes, preprocessing);
    ``precision`` names the engine, the precision and, for int8, the calibration, so that
    cache keys never mix features of two engines.
    """

    def __init__(self, net: FeatureNetwork, precision: str, label: str,
                 quantized: QuantizedIR | None = None):
        if precision == "int8" and quantized is None:
            raise ValueError("an int8 OpenVINO network needs its quantized model")
        self.net, self.engine_precision, self.precision = net, precision, label
        self.quantized = quantized

    def __getattr__(self, name: str):  # spec, model, fingerprint, layer_names, ...
        return getattr(self.net, name)

    def reader(self, outputs: Sequence[str | tuple[str, str]]
               ) -> Callable[[np.ndarray], list[np.ndarray]]:
        outputs = tuple((o, "map") if isinstance(o, str) else tuple(o) for o in outputs)
        self.net.check_layers([layer for layer, _ in outputs])
        if self.quantized is not None and set(outputs) != set(self.quantized.outputs):
            raise ValueError(f"this int8 model was quantized for the outputs "
                             f"{self.quantized.outputs}, not {outputs}: fit the extractor "
                             "again")
        # One compiled model per set of outputs: its tensors are read in the order asked.
        canonical = tuple(sorted(outputs))
        key = (self.precision, self.net.fingerprint, canonical)
        compiled, canonical_names = COMPILED.get_or_compute(
            key, lambda: self._compile(canonical))
        names = [dict(zip(canonical, canonical_names))[output] for output in outputs]

        def read(batch: np.ndarray) -> list[np.ndarray]:
            result = compiled(np.ascontiguousarray(batch, np.float32))
            return [np.asarray(result[name], np.float32) for name in names]

        return read

    def _compile(self, outputs):
        """The compiled model, and its outputs' tensor names in ``outputs``' order."""
        ov = load_runtime()
        if self.quantized is not None:
            by_output = dict(zip(self.quantized.outputs, self.quantized.names))
            model, names = self.quantized.model(), tuple(by_output[o] for o in outputs)
        else:
            model, names = _converted(self.net, outputs)
        return ov.Core().compile_model(model, "CPU", {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": _HINTS[self.engine_precision]}), names
