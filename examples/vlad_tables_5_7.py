"""Tables 5-7 of the report: VLAD accuracy for k = 64 and 128, by layer.

Pipeline (report §4.2): local descriptors of a VGG layer at scales 0, 1, 2 -> PCA(128) ->
k-means(k) -> VLAD (residual sums, then L2) -> linear SVM, trained on train/ and scored on
test/. The plain pooled-feature pipeline (mean pooling, scale 0) is printed beside it as the
"previous best" column.

Offline, only the VGG-16 convolutional base has ImageNet weights (../shared/weights), so
the layers are block4_pool and block5_pool; fc1/fc2 need VGG fc weights that are not
available offline (pass --weights imagenet on a machine with network to add them).

Usage: python examples/vlad_tables_5_7.py [--datasets mini_scene malaria_cells]
       [--scales 0 1 2] [--ks 64 128]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mini_scene", "malaria_cells"])
    parser.add_argument("--layers", nargs="+", default=["block4_pool", "block5_pool"])
    parser.add_argument("--scales", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ks", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--weights", default=str(SHARED / "weights" /
                                                 "vgg16_notop_imagenet.weights.h5"))
    parser.add_argument("--cache-dir", default=None, help="reuse activations across runs")
    args = parser.parse_args()

    import pandas as pd
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from cnnfeatures import CNNFeatureExtractor, VLADEncoder, load_image_folder

    print("fc1/fc2: not run — VGG fc weights are not available offline "
          "(../shared/weights holds the VGG-16 convolutional base only).")
    rows = []
    for name in args.datasets:
        train = load_image_folder(SHARED / "data" / name, split="train")
        test = load_image_folder(SHARED / "data" / name, split="test")
        for layer in args.layers:
            start = time.perf_counter()
            ext = CNNFeatureExtractor(backbone="vgg16", weights=args.weights, layer=layer,
                                      pooling=None, scales=tuple(args.scales),
                                      cache=args.cache_dir or True)
            local_train = ext.fit_transform(train.filenames)
            local_test = ext.transform(test.filenames)
            row = {"dataset": name, "layer": layer}
            for k in args.ks:
                model = make_pipeline(VLADEncoder(k=k, pca_components=128, random_state=0),
                                      LinearSVC())
                model.fit(local_train, train.target)
                row[f"accuracy (k={k})"] = round(model.score(local_test, test.target), 3)
            pooled = make_pipeline(
                CNNFeatureExtractor(backbone="vgg16", weights=args.weights, layer=layer,
                                    pooling="mean", cache=args.cache_dir or True),
                LinearSVC(),
            ).fit(train.filenames, train.target)
            row["pooled mean, N=0"] = round(pooled.score(test.filenames, test.target), 3)
            row["minutes"] = round((time.perf_counter() - start) / 60, 1)
            rows.append(row)
            print(row, flush=True)
    table = pd.DataFrame(rows).set_index(["layer", "dataset"]).sort_index()
    print(f"\nVLAD (PCA 128, scales {tuple(args.scales)}, linear SVM), test accuracy")
    print(table.to_string())


if __name__ == "__main__":
    main()
