"""CPU inference runtimes against Keras, side by side: speed, memory, features, accuracy.

The measurement behind the extractor's CPU engine (issue #30): VGG-16 ``block5_pool`` with
mean pooling, on the same images, through
- ``keras-fp32``: Keras' ``predict`` on a fixed-input model (the baseline a user writes),
- ``keras-bf16``: the same under Keras' ``mixed_bfloat16`` policy,
- ``openvino-fp32`` / ``openvino-bf16``: the free-size network converted by OpenVINO
  (``openvino.convert_model``), compiled for the CPU with the LATENCY hint,
- ``openvino-int8``: the same after NNCF's post-training quantization, calibrated on
  ``--calibration`` training images at side 224 (the time it takes is printed),
- ``extractor-keras-fp32`` / ``extractor-openvino-int8``: ``CNNFeatureExtractor`` itself
  on its two engines (no cache, no L2), fed the same arrays; the int8 one calibrated on
  the same images (its ``fit`` time, per side, in the last column).
Each runtime runs in a process of its own, so that its peak resident memory is its own.
Printed: images/s and the ratio to keras-fp32 at each side; the features' agreement with
keras-fp32 (lowest cosine, largest relative error); with ``--accuracy``, the test accuracy
of a LinearSVC trained on each runtime's side-224 features.

Usage: python benchmarks/bench_engine.py [--data DIR] [--limit N] [--sides 224 864]
       [--calibration N] [--accuracy] [--weights PATH|none]
Needs ``pip install openvino nncf`` (the runtimes missing are said and skipped).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from offline import SHARED, add_weights_option, chosen_weights

RUNTIMES = ("keras-fp32", "keras-bf16", "openvino-fp32", "openvino-bf16", "openvino-int8",
            "extractor-keras-fp32", "extractor-openvino-int8")


def load(paths, side: int) -> np.ndarray:
    """Images squashed to side x side, RGB uint8: every runtime gets the same pixels."""
    import cv2

    from cnnfeatures import load_image

    return np.rint(np.stack([cv2.resize(load_image(p), (side, side),
                                        interpolation=cv2.INTER_AREA) for p in paths])
                   ).clip(0, 255).astype(np.uint8)


def keras_model(weights, side: int | None, precision: str = "float32"):
    import keras

    from cnnfeatures.backbones import precision_policy

    with precision_policy(precision):
        base = keras.applications.VGG16(include_top=False, weights=None,
                                        input_shape=(side, side, 3))
        out = keras.layers.GlobalAveragePooling2D(dtype="float32")(base.output)
    if weights is not None:
        base.load_weights(weights)
    return keras.Model(base.input, out)


def openvino_model(weights, runtime: str, calibration: np.ndarray | None):
    """(compiled model, seconds spent quantizing)."""
    import openvino as ov

    from cnnfeatures.backend import concrete_function

    converted = ov.convert_model(concrete_function(keras_model(weights, None)))
    quantize_seconds = 0.0
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if runtime == "openvino-int8":
        import nncf

        start = time.perf_counter()
        converted = nncf.quantize(converted, nncf.Dataset(list(calibration[:, None])),
                                  subset_size=len(calibration))
        quantize_seconds = time.perf_counter() - start
    else:
        config["INFERENCE_PRECISION_HINT"] = "bf16" if runtime == "openvino-bf16" else "f32"
    return ov.Core().compile_model(converted, "CPU", config), quantize_seconds


def extractor_predictor(runtime: str, weights, calibration: np.ndarray):
    """The library's own extractor on ``runtime``'s engine, fed the same arrays (no cache,
    no L2: the raw pooled features). Returns (predict(images, side), seconds of ``fit``)."""
    from cnnfeatures import CNNFeatureExtractor

    engine, precision = (("keras", "float32") if runtime == "extractor-keras-fp32"
                         else ("openvino", "int8"))
    extractors = {}
    fit_seconds = 0.0

    def predict(images, side):
        nonlocal fit_seconds
        if side not in extractors:
            start = time.perf_counter()
            extractors[side] = CNNFeatureExtractor(
                weights=weights, layer="block5_pool", pooling="mean",
                scales=((side - 224) // 320,), l2_normalize=False, cache=False,
                engine=engine, precision=precision,
                calibration=list(calibration)).fit(calibration[:1])
            fit_seconds += time.perf_counter() - start
        return extractors[side].transform(list(images))

    return predict, lambda: fit_seconds


def run(runtime: str, weights, batches: dict, calibration, queue) -> None:
    """In a process of its own: features and images/s per side, peak RSS."""
    from keras.applications.vgg16 import preprocess_input

    result = {"features": {}, "rate": {}, "quantize_s": 0.0}
    fit_seconds = None
    if runtime.startswith("extractor-"):
        predict, fit_seconds = extractor_predictor(runtime, weights, calibration)
    elif runtime.startswith("openvino"):
        compiled, result["quantize_s"] = openvino_model(weights, runtime,
                                                        preprocess_input(calibration.astype(np.float32)))

        def predict(images, _side):
            x = preprocess_input(images.astype(np.float32))
            return np.concatenate([compiled(x[i:i + 16])[0] for i in range(0, len(x), 16)])
    else:
        models = {}

        def predict(images, side):
            if side not in models:
                precision = "bfloat16" if runtime == "keras-bf16" else "float32"
                models[side] = keras_model(weights, side, precision)
            return models[side].predict(preprocess_input(images.astype(np.float32)), batch_size=16,
                                        verbose=0)
    for name, images in batches.items():  # a side, or "train" / "test" (side 224)
        predict(images[:2], images.shape[1])  # build, trace and compile outside the clock
        start = time.perf_counter()
        result["features"][name] = np.asarray(predict(images, images.shape[1]), np.float32)
        result["rate"][name] = len(images) / (time.perf_counter() - start)
    if fit_seconds is not None:
        result["quantize_s"] = fit_seconds()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def in_process(runtime: str, *args) -> dict | None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=run, args=(runtime, *args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def available(runtime: str) -> bool:
    import importlib.util

    needs = (("openvino", "nncf") if runtime.endswith("int8")
             else ("openvino",) if runtime.startswith("openvino") else ())
    return all(importlib.util.find_spec(name) for name in needs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "mini_scene"))
    parser.add_argument("--limit", type=int, default=32, help="images timed at side 224 "
                        "(a quarter of them, at least 2, at larger sides)")
    parser.add_argument("--sides", nargs="+", type=int, default=[224, 864])
    parser.add_argument("--calibration", type=int, default=300,
                        help="training images int8 is calibrated on")
    parser.add_argument("--accuracy", action="store_true",
                        help="also train and score a LinearSVC on each runtime's features")
    add_weights_option(parser)
    args = parser.parse_args()

    from sklearn.svm import LinearSVC

    from cnnfeatures import load_image_folder

    weights = chosen_weights(args)
    train = load_image_folder(args.data, split="train")
    test = load_image_folder(args.data, split="test")
    timed = list(train.filenames[: args.limit])
    batches = {side: load(timed if side == 224 else timed[: max(2, len(timed) // 4)], side)
               for side in args.sides}
    calibration = load(train.filenames[:: max(1, len(train.filenames) // args.calibration)]
                       [: args.calibration], 224)
    if args.accuracy:
        batches["train"], batches["test"] = load(train.filenames, 224), load(test.filenames, 224)
    print(f"VGG-16 block5_pool mean on {args.data}; cpu: {cpu_flags()}")
    results = {}
    for runtime in RUNTIMES:
        if not available(runtime):
            print(f"{runtime}: not installed (pip install openvino nncf)")
            continue
        results[runtime] = in_process(runtime, weights, batches, calibration)
    base = results["keras-fp32"]
    print(f"{'runtime':>23} " + " ".join(f"{f'img/s @{s}':>11} {'ratio':>6}" for s in args.sides)
          + f" {'peak RSS MB':>11} {'min cos':>8} {'max rel err':>11} {'fit/quant. s':>12}")
    for runtime, r in results.items():
        rates = " ".join(f"{r['rate'][s]:>11.2f} {r['rate'][s] / base['rate'][s]:>5.2f}x"
                         for s in args.sides)
        a, b = r["features"][224], base["features"][224]
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        rel = np.abs(a - b).max() / np.abs(b).max()
        print(f"{runtime:>23} {rates} {r['peak_rss_mb']:>11.0f} {cos.min():>8.5f} "
              f"{rel:>11.2e} {r['quantize_s']:>12.1f}")
    if args.accuracy:
        print(f"\ntest accuracy of a LinearSVC on side-224 features ({len(train.filenames)} "
              f"train, {len(test.filenames)} test images):")
        for runtime, r in results.items():
            clf = LinearSVC().fit(r["features"]["train"], train.target)
            print(f"  {runtime:>23}: {clf.score(r['features']['test'], test.target):.4f}")


def cpu_flags() -> str:
    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
                    .split(":")[1].split())
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return " ".join(f for f in wanted if f in flags) or "no AVX2"


if __name__ == "__main__":
    main()
