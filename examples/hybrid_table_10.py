"""Table 10 of the report: the hybrid SeparableConv network vs fine-tuned VGG, four sets.

HybridSepConvClassifier (VGG-16 blocks 1-3 with offline ImageNet weights, frozen; two
SeparableConv2D + BatchNorm blocks; dropout head) against FineTunedCNNClassifier (VGG-16
base frozen, Figure 21's dropout head), on chest_xray, ham10000_7class, malaria_cells and
mini_scene. VGG-16 instead of the report's VGG-19: no VGG-19 weights offline.

Epoch budget for 2 CPU cores: up to ``--max-epochs`` (default 8) with early stopping
(patience 3) on a 10% validation split, training on at most ``--train`` (default 400)
stratified images per set; the frozen VGG prefix is computed once per image (frozen-prefix
caching). Scores on each set's whole test/ split.

Usage: python examples/hybrid_table_10.py [--train 400] [--max-epochs 8]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
SETS = ["chest_xray", "ham10000_7class", "malaria_cells", "mini_scene"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--datasets", nargs="+", default=SETS)
    args = parser.parse_args()

    import pandas as pd
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import train_test_split

    from cnnfeatures import FineTunedCNNClassifier, HybridSepConvClassifier, load_image_folder

    weights = SHARED / "weights" / "vgg16_notop_imagenet.weights.h5"
    common = dict(weights=weights, learning_rate=args.lr, max_epochs=args.max_epochs,
                  patience=3, random_state=0)
    rows = []
    for name in args.datasets:
        train = load_image_folder(SHARED / "data" / name, split="train")
        test = load_image_folder(SHARED / "data" / name, split="test")
        idx = np.arange(len(train.filenames))
        if args.train < len(idx):
            idx, _ = train_test_split(idx, train_size=args.train, stratify=train.target,
                                      random_state=0)
        models = {
            "hybrid": HybridSepConvClassifier(backbone="vgg16", **common),
            "fine-tuned (frozen base)": FineTunedCNNClassifier(backbone="vgg16",
                                                               frozen=("blocks",), **common),
        }
        for label, clf in models.items():
            start = time.perf_counter()
            clf.fit(train.filenames[idx], train.target[idx])
            predicted = clf.predict(test.filenames)
            rows.append({
                "dataset": name, "model": label,
                "accuracy": float(np.mean(predicted == test.target)),
                "balanced accuracy": balanced_accuracy_score(test.target, predicted),
                "epochs (best/run)": f"{clf.best_epoch_}/{clf.n_epochs_}",
                "minutes": (time.perf_counter() - start) / 60,
            })
            print(rows[-1], flush=True)
    print(f"\nTable 10 layout: test accuracy, <= {args.train} train images per set, "
          f"<= {args.max_epochs} epochs")
    print(pd.DataFrame(rows).set_index(["dataset", "model"]).round(3).to_string())


if __name__ == "__main__":
    main()
