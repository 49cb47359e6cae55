"""Epoch time of FineTunedCNNClassifier with and without frozen-prefix caching.

VGG-16 with the offline ImageNet convolutional base (../shared/weights), all convolutional
blocks frozen, Figure 21's dropout head, 224x224 chest X-rays. Without caching every epoch
runs the frozen base forward over every image; with it the base runs once and each epoch
trains the head on the cached activations. Both runs use the same images, seed and epochs.

Usage: python benchmarks/bench_finetune.py [--images 96] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
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

    from cnnfeatures import FineTunedCNNClassifier, load_image_folder

    data = load_image_folder(SHARED / "data" / "chest_xray", split="train")
    X, _, y, _ = train_test_split(data.filenames, data.target, train_size=args.images,
                                  stratify=data.target, random_state=0)
    results = {}
    for cached in (True, False):
        clf = FineTunedCNNClassifier(
            backbone="vgg16", weights=SHARED / "weights" / "vgg16_notop_imagenet.weights.h5",
            frozen=("blocks",), head="dropout", max_epochs=args.epochs,
            patience=args.epochs, cache_frozen=cached, random_state=0)
        start = time.perf_counter()
        clf.fit(X, y)
        total = time.perf_counter() - start
        assert clf.frozen_prefix_cached_ == cached
        # The first epoch also traces the graph: report the median of the others.
        results[cached] = (float(np.median(clf.epoch_seconds_[1:] or clf.epoch_seconds_)),
                           total)
    (with_s, with_total), (without_s, without_total) = results[True], results[False]
    print(f"{args.images} chest_xray images at 224, VGG-16 blocks frozen, "
          f"{args.epochs} epochs")
    print(f"  epoch time with frozen-prefix caching   : {with_s:8.3f} s "
          f"(whole fit {with_total:.1f} s, prefix computed once included)")
    print(f"  epoch time without (base runs each epoch): {without_s:8.3f} s "
          f"(whole fit {without_total:.1f} s)")
    print(f"  epoch speed-up                          : {without_s / with_s:8.1f} x "
          f"(target >= 5)")


if __name__ == "__main__":
    main()
