"""Table 11 of the report (accuracy with vs without data augmentation), and CLAHE.

Fixed-feature pipeline with the offline ImageNet VGG-16 (``block5_pool``, mean pooling,
scale 0, L2, linear SVM), trained on train/ and scored on test/:

1. mini_scene and malaria_cells, without and with ``ImageAugmenter`` (2 augmented copies
   of every training image, inside an imbalanced-learn pipeline: the test images are never
   augmented);
2. chest_xray: raw vs CLAHE vs both (a FeatureUnion of a raw and a CLAHE branch). By default
   on a stratified 1,000-image subsample of train/ (all 618 test images) to stay within
   20 minutes on 2 CPU cores; ``--chest-train 0`` uses all 5,190.

Usage: python examples/clahe_augmentation_table_11.py [--copies 2] [--chest-train 1000]
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


def extractor():
    from cnnfeatures import CNNFeatureExtractor

    return CNNFeatureExtractor(backbone="vgg16", weights=WEIGHTS, layer="block5_pool",
                               pooling="mean")


def split(name):
    from cnnfeatures import load_image_folder

    return (load_image_folder(SHARED / "data" / name, split="train"),
            load_image_folder(SHARED / "data" / name, split="test"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--chest-train", type=int, default=1000)
    args = parser.parse_args()

    import pandas as pd
    from imblearn.pipeline import make_pipeline as make_imb_pipeline
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    from cnnfeatures import CLAHETransformer, ImageAugmenter

    rows = []
    for name in ("malaria_cells", "mini_scene"):
        start = time.perf_counter()
        train, test = split(name)
        plain = make_pipeline(extractor(), LinearSVC()).fit(train.filenames, train.target)
        augmented = make_imb_pipeline(
            ImageAugmenter(n_copies=args.copies, rotation=20, zoom=0.1, shift=0.05,
                           brightness=0.1, contrast=0.1, vertical_flip=name == "malaria_cells",
                           random_state=0),
            extractor(), LinearSVC(),
        ).fit(train.filenames, train.target)
        rows.append({
            "dataset": name,
            "without augmentation": plain.score(test.filenames, test.target),
            f"with augmentation (x{args.copies + 1} train)": augmented.score(
                test.filenames, test.target),
            "minutes": (time.perf_counter() - start) / 60,
        })
        print(rows[-1], flush=True)
    print("\nTable 11 layout: test accuracy, VGG-16 block5_pool mean, scale 0, LinearSVC")
    print(pd.DataFrame(rows).set_index("dataset").round(3).to_string())

    start = time.perf_counter()
    train, test = split("chest_xray")
    X, y = train.filenames, train.target
    if args.chest_train and args.chest_train < len(X):
        X, _, y, _ = train_test_split(X, y, train_size=args.chest_train, stratify=y,
                                      random_state=0)
    variants = {
        "raw": make_pipeline(extractor(), LinearSVC()),
        "CLAHE": make_pipeline(CLAHETransformer(), extractor(), LinearSVC()),
        "raw + CLAHE": make_pipeline(
            make_union(extractor(), make_pipeline(CLAHETransformer(), extractor())),
            LinearSVC()),
    }
    rows = []
    for label, model in variants.items():
        predicted = model.fit(X, y).predict(test.filenames)
        rows.append({"input": label, "accuracy": np.mean(predicted == test.target),
                     "recall PNEUMONIA": np.mean(predicted[test.target == 1] == 1),
                     "recall NORMAL": np.mean(predicted[test.target == 0] == 0)})
    print(f"\nchest_xray ({len(X)} train images, {len(test.filenames)} test): CLAHE vs raw "
          f"vs both ({(time.perf_counter() - start) / 60:.1f} min)")
    print(pd.DataFrame(rows).set_index("input").round(3).to_string())


if __name__ == "__main__":
    main()
