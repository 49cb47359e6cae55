"""The extractor on each Keras backend, side by side with raw Keras ``predict`` there.

For every backend given (TensorFlow with this interpreter; JAX and PyTorch with the
interpreters of the venvs the README's "Other Keras backends" commands make), one child
process times, on the same images:

- the extractor: VGG-16 ``block5_pool`` mean pooling at 224, from image paths (reading and
  resizing included), cache off, float32 and bfloat16;
- the strongest baseline a user would write: a fixed-input (224, 224, 3) Keras VGG-16 with
  ``pooling="avg"`` and ``predict(batch_size=16)`` on images already decoded, resized and
  preprocessed in memory.

It prints images/s of each, their ratio, and the largest feature difference between the
backend and TensorFlow (the same weights file everywhere).

Usage: python benchmarks/bench_backends.py [--images 48] [--backend jax=.venv-jax/bin/python]
       [--backend torch=.venv-torch/bin/python] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

CHILD = r"""
import json, sys, time
import numpy as np
from cnnfeatures import CNNFeatureExtractor, load_image_folder
from cnnfeatures.backend import backend_name, load_keras
from cnnfeatures.backbones import get_backbone
from cnnfeatures.images import load_image

data, weights, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
paths = list(load_image_folder(data, split="train").filenames)[:n]
result = {"backend": backend_name()}
features = {}
for precision in ("float32", "bfloat16"):
    ext = CNNFeatureExtractor(backbone="vgg16", weights=weights, layer="block5_pool",
                              pooling="mean", cache=False, precision=precision)
    try:
        ext.fit(paths[:4]).transform(paths[:4])  # build, trace, warm
    except Exception as exc:  # a backend without this precision says so
        result[precision] = f"unavailable: {type(exc).__name__}: {str(exc)[:120]}"
        continue
    start = time.perf_counter()
    features[precision] = ext.transform(paths)
    result[precision] = n / (time.perf_counter() - start)
keras = load_keras()
model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3),
                                 pooling="avg")
model.load_weights(weights)
batch = get_backbone("vgg16").preprocess_input(
    np.stack([load_image(p, 224) for p in paths]).astype(np.float32))
model.predict(batch[:16], batch_size=16, verbose=0)  # warm
start = time.perf_counter()
raw = model.predict(batch, batch_size=16, verbose=0)
result["raw_predict"] = n / (time.perf_counter() - start)
np.save(out + ".npy", features["float32"])
json.dump(result, open(out, "w"))
"""


def measure(python: str, backend: str, data: str, weights: str, n: int, folder: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNFEATURES_SESSION")}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    out = os.path.join(folder, backend + ".json")
    done = subprocess.run([python, "-c", CHILD, data, weights, str(n), out], env=env,
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{backend}: {done.stderr[-2000:]}")
    with open(out) as f:
        return json.load(f)


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--data", default=str(SHARED / "data" / "mini_scene"))
    parser.add_argument("--weights",
                        default=str(SHARED / "weights" / "vgg16_notop_imagenet.weights.h5"))
    parser.add_argument("--backend", action="append", default=[], metavar="NAME=PYTHON",
                        help="another backend and the interpreter that has it")
    args = parser.parse_args()
    runs = [("tensorflow", sys.executable)] + [tuple(b.split("=", 1)) for b in args.backend]
    print(f"VGG-16 block5_pool mean, 224, {args.images} images, images/s (higher is better)")
    print("| backend | extractor float32 | extractor bfloat16 | raw Keras predict | "
          "extractor / raw | max feature diff vs TensorFlow |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        reference = None
        for backend, python in runs:
            r = measure(python, backend, args.data, args.weights, args.images, folder)
            features = np.load(os.path.join(folder, backend + ".json.npy"))
            reference = features if reference is None else reference
            diff = float(np.abs(features - reference).max())
            bf16 = r["bfloat16"]
            bf16 = f"{bf16:.2f}" if isinstance(bf16, float) else bf16
            print(f"| {backend} | {r['float32']:.2f} | {bf16} | {r['raw_predict']:.2f} | "
                  f"{r['float32'] / r['raw_predict']:.2f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
