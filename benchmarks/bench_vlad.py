"""VLAD over the whole chest X-ray set at scales (0, 1, 2) in bounded memory.

Extracts VGG-16 ``block5_pool`` local descriptors of every image of
../shared/data/chest_xray (train + test) at sides 224, 544 and 864, fits PCA(128) + k-means
(k=64) on a bounded subsample and encodes every image, then prints the peak resident memory
of the process beside what the descriptors would take held in memory at once.

Usage: python benchmarks/bench_vlad.py [--limit N] [--scales 0 1 2] [--weights PATH|none]
       [--data DIR] [--precision float32|bfloat16|float16]
(--limit N takes the first N images: run it at two sizes to see memory stay flat.)
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from offline import SHARED, add_weights_option, chosen_weights


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "chest_xray"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--scales", type=int, nargs="+", default=[0, 1, 2])
    add_weights_option(parser)
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "bfloat16", "float16"],
                        help="bfloat16: 3-5x faster on CPUs with AMX / AVX-512 BF16")
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--pca", type=int, default=128)
    args = parser.parse_args()

    from cnnfeatures import CNNFeatureExtractor, VLADEncoder, load_image_folder

    parts = [load_image_folder(args.data, split=s) for s in ("train", "test")]
    files = np.concatenate([p.filenames for p in parts])
    labels = np.concatenate([p.target for p in parts])
    is_test = np.repeat([False, True], [len(p.filenames) for p in parts])
    if args.limit:
        files, labels, is_test = files[: args.limit], labels[: args.limit], is_test[: args.limit]
    weights = chosen_weights(args)
    print(f"{len(files)} images of {args.data}, scales {tuple(args.scales)}, "
          f"weights {weights}, precision {args.precision}, "
          f"keras backend {os.environ.get('KERAS_BACKEND', 'tensorflow')}")
    print(f"peak RSS after imports: {peak_rss_gib():.2f} GiB")

    start = time.perf_counter()
    ext = CNNFeatureExtractor(backbone="vgg16", weights=weights, layer="block5_pool",
                              pooling=None, scales=tuple(args.scales), cache=False, verbose=1,
                              precision=args.precision)
    descriptors = ext.fit_transform(files)
    t_extract = time.perf_counter() - start
    held = descriptors.n_descriptors * descriptors.n_features * 4
    print(f"extraction: {t_extract:.1f} s, {descriptors.n_descriptors} descriptors "
          f"({descriptors.n_descriptors / len(files):.0f} per image), kept "
          f"{'in memory' if descriptors.in_memory else 'in a temporary file'}")
    print(f"peak RSS after extraction: {peak_rss_gib():.2f} GiB")

    start = time.perf_counter()
    vlad = VLADEncoder(k=args.k, pca_components=args.pca, random_state=0).fit(descriptors)
    t_fit = time.perf_counter() - start
    start = time.perf_counter()
    codes = vlad.transform(descriptors)
    t_transform = time.perf_counter() - start
    peak = peak_rss_gib()
    print(f"VLAD fit on {vlad.n_fit_descriptors_} descriptors: {t_fit:.1f} s; "
          f"transform: {t_transform:.1f} s -> {codes.shape}")
    if is_test.any() and not is_test.all():
        # Not the point of the benchmark, but the report could not run VLAD on this set at
        # all: the codes are here, so say how well they classify (train -> official test).
        from sklearn.metrics import accuracy_score, recall_score
        from sklearn.svm import LinearSVC

        clf = LinearSVC(C=1.0).fit(codes[~is_test], labels[~is_test])
        pred = clf.predict(codes[is_test])
        recalls = recall_score(labels[is_test], pred, average=None)
        print(f"LinearSVC on the VLAD codes, test split: accuracy "
              f"{accuracy_score(labels[is_test], pred):.4f}, recall per class "
              f"{dict(zip(parts[1].target_names, np.round(recalls, 4)))}")
    print()
    print(f"descriptors held in memory at once would take : {held / 2**30:8.2f} GiB")
    print(f"peak RSS of this whole run                    : {peak:8.2f} GiB  (target <= 2)")
    print(f"ratio held / peak                             : {held / 2**30 / peak:8.2f}")
    print(f"wall time                                     : "
          f"{t_extract + t_fit + t_transform:8.1f} s")


if __name__ == "__main__":
    main()
