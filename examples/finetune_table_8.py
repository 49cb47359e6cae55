"""Table 8 of the report: fine-tuning VGG with different frozen layers, on chest_xray.

FineTunedCNNClassifier with the offline ImageNet VGG-16 convolutional base and VGG's
original top (fc1, fc2 of 4096 units, new 2-way softmax). Offline there are no VGG fc
weights: fc1 and fc2 start random here, so rows that freeze them freeze random layers
(the report froze ImageNet-trained ones) — the output says so.

Budget (2 CPU cores): a stratified subsample of train/ (``--train``, default 300), the whole
test/ split (618 images); rows whose convolutional base is frozen use frozen-prefix caching
and up to ``--max-epochs`` epochs (early stopping, patience 5); rows that train the base
run ``--base-epochs`` epochs (default 1: one epoch of VGG-16 backpropagation on CPU costs
about 0.5 s per image). Adam, learning rate ``--lr`` (the report: 1e-6 for 300 epochs).

Usage: python examples/finetune_table_8.py [--train 300] [--max-epochs 20]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
ROWS = [(), ("blocks",), ("blocks", "fc1"), ("blocks", "fc2"), ("fc1",), ("fc2",)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--base-epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-5)
    args = parser.parse_args()

    import pandas as pd
    from sklearn.metrics import accuracy_score, recall_score
    from sklearn.model_selection import train_test_split

    from cnnfeatures import FineTunedCNNClassifier, load_image_folder

    train = load_image_folder(SHARED / "data" / "chest_xray", split="train",
                              group_pattern="chest_xray")
    test = load_image_folder(SHARED / "data" / "chest_xray", split="test")
    idx = np.arange(len(train.filenames))
    if args.train < len(idx):
        idx, _ = train_test_split(idx, train_size=args.train, stratify=train.target,
                                  random_state=0)
    print("Note: fc1/fc2 have no ImageNet weights offline; they start random here.")
    rows = []
    for frozen in ROWS:
        base_trains = "blocks" not in frozen
        clf = FineTunedCNNClassifier(
            backbone="vgg16", weights=SHARED / "weights" / "vgg16_notop_imagenet.weights.h5",
            head="original", frozen=frozen, learning_rate=args.lr,
            max_epochs=args.base_epochs if base_trains else args.max_epochs, patience=5,
            random_state=0)
        start = time.perf_counter()
        clf.fit(train.filenames[idx], train.target[idx], groups=train.groups[idx])
        predicted = clf.predict(test.filenames)
        rows.append({
            "frozen layers": ", ".join(frozen) or "-",
            "accuracy": accuracy_score(test.target, predicted),
            "recall (PNEUMONIA)": recall_score(test.target, predicted),
            "epochs (best/run)": f"{clf.best_epoch_}/{clf.n_epochs_}",
            "trainable parameters": clf.count_params(trainable_only=True),
            "minutes": (time.perf_counter() - start) / 60,
        })
        print(rows[-1], flush=True)
    print(f"\nTable 8 layout: VGG-16, {len(idx)} train images, {len(test.filenames)} test")
    print(pd.DataFrame(rows).set_index("frozen layers").round(3).to_string())


if __name__ == "__main__":
    main()
