"""Training speed of the Keras classifiers in float32 and bfloat16, against plain Keras.

The configuration that frozen-prefix caching cannot speed up: VGG-16 (offline ImageNet
base) with blocks 4-5 and Figure 21's dropout head training, augmentation on the fly, so
every epoch runs the whole network forward and blocks 4-5 backward. Side by side, on the
same chest X-rays, in one run:

1. ``FineTunedCNNClassifier(precision="float32")``;
2. ``FineTunedCNNClassifier(precision="bfloat16")``;
3. the strongest baseline a user would write: the same network as a fixed-input Keras
   model, ``model.fit`` on an array already decoded, resized and preprocessed (no
   augmentation at all: the library's fits do more work), in float32 and under Keras'
   ``mixed_bfloat16`` policy, a tenth held out for validation as the library's fits do.

Images per second of training (the median epoch, the first one, which traces the graph,
left out). bfloat16 pays only on processors with bfloat16 matrix units (Intel AMX or
AVX-512 BF16); elsewhere it can be slower: compare within one run.

Usage: python benchmarks/bench_training_precision.py [--images 160] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "weights" / "vgg16_notop_imagenet.weights.h5"
FROZEN = ("block1", "block2", "block3")


def library_fit(X, y, precision: str, epochs: int) -> float:
    from cnnfeatures import FineTunedCNNClassifier, ImageAugmenter

    clf = FineTunedCNNClassifier(
        backbone="vgg16", weights=WEIGHTS, frozen=FROZEN, precision=precision,
        augmentation=ImageAugmenter(rotation=10, zoom=0.15, shift=0.1, random_state=0),
        max_epochs=epochs, patience=epochs, batch_size=16, random_state=0)
    clf.fit(X, y)
    return float(np.median(clf.epoch_seconds_[1:]))


def keras_fit(images, y, policy: str, epochs: int) -> float:
    """The same network in plain Keras, on preprocessed arrays, timed per epoch."""
    import keras

    keras.config.set_dtype_policy(policy)
    try:
        base = keras.applications.VGG16(include_top=False, weights=None,
                                        input_shape=(224, 224, 3))
        base.load_weights(WEIGHTS)
        x = keras.layers.Flatten()(base.output)
        x = keras.layers.Dropout(0.5)(keras.layers.Dense(1024, activation="relu")(x))
        x = keras.layers.Dropout(0.5)(keras.layers.Dense(512, activation="relu")(x))
        out = keras.layers.Dense(2, activation="softmax", dtype="float32")(x)
    finally:
        keras.config.set_dtype_policy("float32")
    model = keras.Model(base.input, out)
    for layer in base.layers:
        layer.trainable = not layer.name.startswith(FROZEN)
    model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    seconds = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    # A tenth held out, as the library's fit holds out its validation_fraction.
    model.fit(images, y, batch_size=16, epochs=epochs, callbacks=[Clock()], verbose=0,
              validation_split=0.1)
    return float(np.median(seconds[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    from keras.applications.vgg16 import preprocess_input
    from sklearn.model_selection import train_test_split

    from cnnfeatures import load_image, load_image_folder

    data = load_image_folder(SHARED / "data" / "chest_xray", split="train")
    X, _, y, _ = train_test_split(data.filenames, data.target, train_size=args.images,
                                  stratify=data.target, random_state=0)
    codes = np.searchsorted(np.unique(y), y)
    images = preprocess_input(np.stack([load_image(f, 224) for f in X]))
    n = args.images
    print(f"{n} chest_xray images at 224, VGG-16 blocks 4-5 + dropout head training, "
          f"{args.epochs} epochs (median epoch; images/s)")
    rates = {}
    for name, run in [
        ("cnnfeatures float32, augmented", lambda: library_fit(X, y, "float32", args.epochs)),
        ("cnnfeatures bfloat16, augmented", lambda: library_fit(X, y, "bfloat16",
                                                                args.epochs)),
        ("plain Keras float32, arrays", lambda: keras_fit(images, codes, "float32",
                                                          args.epochs)),
        ("plain Keras mixed_bfloat16, arrays", lambda: keras_fit(images, codes,
                                                                 "mixed_bfloat16",
                                                                 args.epochs)),
    ]:
        seconds = run()
        rates[name] = n / seconds
        print(f"  {name:36s}: epoch {seconds:7.1f} s, {rates[name]:6.1f} images/s")
    names = list(rates)
    print(f"  bfloat16 / float32, cnnfeatures      : {rates[names[1]] / rates[names[0]]:6.2f} x")
    print(f"  cnnfeatures / plain Keras, bfloat16  : {rates[names[1]] / rates[names[3]]:6.2f} x")
    print(f"  cnnfeatures / plain Keras, float32   : {rates[names[0]] / rates[names[2]]:6.2f} x")


if __name__ == "__main__":
    main()
