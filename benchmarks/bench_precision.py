"""float32 against bfloat16 extraction, side by side: speed, feature change, accuracy.

Times the extractor (VGG-16 ``block5_pool``, mean pooling, cache off) on the same images at
sides 224, 544 and 864 in both precisions, prints images/s and their ratio, the relative
difference of the features, and the test accuracy of a LinearSVC trained on each.

Usage: python benchmarks/bench_precision.py [--data DIR] [--limit N] [--weights PATH|none]
(bfloat16 pays off on CPUs with AMX or AVX-512 BF16: Intel Sapphire Rapids and later.)
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from offline import SHARED, add_weights_option, chosen_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "mini_scene"))
    parser.add_argument("--limit", type=int, default=24, help="images timed per side")
    add_weights_option(parser)
    args = parser.parse_args()

    from sklearn.svm import LinearSVC

    from cnnfeatures import CNNFeatureExtractor, load_image_folder

    weights = chosen_weights(args)
    train = load_image_folder(args.data, split="train")
    test = load_image_folder(args.data, split="test")

    def extractor(precision, scale):
        return CNNFeatureExtractor(backbone="vgg16", weights=weights, layer="block5_pool",
                                   pooling="mean", scales=(scale,), cache=False,
                                   precision=precision).fit(train.filenames[:1])

    print(f"VGG-16 block5_pool mean, {args.limit} images of {args.data} per side")
    print(f"{'side':>5} {'float32 img/s':>14} {'bfloat16 img/s':>15} {'speed-up':>9} "
          f"{'feature rel. diff':>18}")
    sample = train.filenames[: args.limit]
    for scale in (0, 1, 2):
        rates, feats = {}, {}
        for precision in ("float32", "bfloat16"):
            ext = extractor(precision, scale)
            ext.transform(sample[:2])  # warm-up: build and trace outside the clock
            start = time.perf_counter()
            feats[precision] = ext.transform(sample)
            rates[precision] = len(sample) / (time.perf_counter() - start)
        diff = np.linalg.norm(feats["bfloat16"] - feats["float32"], axis=1)
        print(f"{224 + 320 * scale:>5} {rates['float32']:>14.2f} {rates['bfloat16']:>15.2f} "
              f"{rates['bfloat16'] / rates['float32']:>8.2f}x {np.median(diff):>18.4f}")

    print("\ntest accuracy of a LinearSVC on side-224 features (train -> test):")
    for precision in ("float32", "bfloat16"):
        ext = extractor(precision, 0)
        start = time.perf_counter()
        clf = LinearSVC().fit(ext.transform(train.filenames), train.target)
        acc = clf.score(ext.transform(test.filenames), test.target)
        print(f"  {precision:>8}: {acc:.4f}  ({time.perf_counter() - start:.1f} s, "
              f"{len(train.filenames) + len(test.filenames)} images)")


if __name__ == "__main__":
    main()
