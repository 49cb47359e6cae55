"""Epoch time of FineTunedCNNClassifier: frozen-prefix caching, and augmentation with it.

VGG-16 with the offline ImageNet convolutional base (../shared/weights), all convolutional
blocks frozen, Figure 21's dropout head, 224x224 chest X-rays. Four fits on the same
images, seed and epochs, side by side:

1. caching: the base runs once per image, each epoch trains the head on its activations;
2. no caching: every epoch runs the frozen base forward over every image;
3. augmentation on the fly: a new view of every image at every epoch, so the base runs at
   every epoch (what a plain Keras fit with an augmentation layer costs);
4. ``augmentation_views=2``: two views of each image drawn once; the base runs once per
   image and view, and epochs cost what (1)'s do.

Every cached fit starts from an empty cache directory of its own.

Usage: python benchmarks/bench_finetune.py [--images 96] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    from sklearn.model_selection import train_test_split

    from cnnfeatures import FineTunedCNNClassifier, ImageAugmenter, load_image_folder

    data = load_image_folder(SHARED / "data" / "chest_xray", split="train")
    X, _, y, _ = train_test_split(data.filenames, data.target, train_size=args.images,
                                  stratify=data.target, random_state=0)
    augmenter = ImageAugmenter(rotation=15, zoom=0.1, random_state=0)
    settings = {
        "frozen-prefix caching": dict(cache_frozen=True),
        "no caching (base runs each epoch)": dict(cache_frozen=False),
        "augmentation on the fly": dict(augmentation=augmenter),
        "augmentation_views=2, cached": dict(augmentation=augmenter, augmentation_views=2),
    }
    print(f"{args.images} chest_xray images at 224, VGG-16 blocks frozen, "
          f"{args.epochs} epochs")
    epochs = {}
    for name, params in settings.items():
        with tempfile.TemporaryDirectory() as cache:
            if params.get("cache_frozen", True):
                params = {**params, "cache_frozen": cache}
            clf = FineTunedCNNClassifier(
                backbone="vgg16",
                weights=SHARED / "weights" / "vgg16_notop_imagenet.weights.h5",
                frozen=("blocks",), head="dropout", max_epochs=args.epochs,
                patience=args.epochs, random_state=0, **params)
            start = time.perf_counter()
            clf.fit(X, y)
            total = time.perf_counter() - start
        # The first epoch also traces the graph: the median of the others.
        epochs[name] = float(np.median(clf.epoch_seconds_[1:] or clf.epoch_seconds_))
        print(f"  {name:36s}: epoch {epochs[name]:8.3f} s, whole fit {total:6.1f} s "
              f"(prefix cached: {clf.frozen_prefix_cached_})")
    names = list(settings)
    print(f"  epoch speed-up of caching            : "
          f"{epochs[names[1]] / epochs[names[0]]:8.1f} x (target >= 5)")
    print(f"  augmented epoch speed-up of views    : "
          f"{epochs[names[2]] / epochs[names[3]]:8.1f} x (on the fly / views)")


if __name__ == "__main__":
    main()
