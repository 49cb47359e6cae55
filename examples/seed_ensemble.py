"""Trained networks, several seeds: each member's score, their mean ± sd, and the ensemble's.

Trains ``--members`` fits of one network that differ only by their seed (initial weights,
batch order, dropout) — ``SeedEnsembleClassifier`` — on a dataset's ``train/`` split and
scores the ``test/`` split: every member alone, the members' mean ± sd, the ensemble
(posteriors averaged), and the ensemble with test-time views
(``TestTimeAugmentationClassifier``: identity, left-right flip, centre crop).

The network is Table 10's frozen-base row under the ``cpu`` budget (docs/results.md):
VGG-16's ImageNet convolutional base frozen, Figure 21's dropout head (1024-512) trained at
1e-4, classes weighted, early stopping on a fifth of train (patient-grouped with
``--group-pattern``), at most 40 epochs. The frozen base runs once per image (its
activations cached in ``--cache-dir``), so each member costs minutes. Predictions are the
arg-max of the averaged posteriors; nothing is chosen on test labels.

Usage: python examples/seed_ensemble.py --data ../shared/data/chest_xray
       [--group-pattern chest_xray] [--members 3] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
VIEWS = ("identity", "hflip", "crop_center")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="<data>/{train,test}/<class>/<image>")
    parser.add_argument("--group-pattern", help="patients or slides to keep whole")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--weights", default=str(SHARED / "weights" /
                                                 "vgg16_notop_imagenet.weights.h5"))
    parser.add_argument("--cache-dir", default=True,
                        help="activation cache directory (default: the user cache)")
    args = parser.parse_args()

    from cnnfeatures import (
        FineTunedCNNClassifier,
        SeedEnsembleClassifier,
        TestTimeAugmentationClassifier,
        load_image_folder,
    )
    from cnnfeatures.report import evaluation_record

    train = load_image_folder(args.data, split="train", group_pattern=args.group_pattern)
    test = load_image_folder(args.data, split="test")
    names = list(train.target_names)
    network = FineTunedCNNClassifier(
        backbone="vgg16", weights=args.weights, frozen=("blocks",), learning_rate=1e-4,
        max_epochs=40, patience=4, class_weight="balanced", validation_fraction=0.2,
        cache_frozen=args.cache_dir)
    ensemble = TestTimeAugmentationClassifier(
        SeedEnsembleClassifier(network, n_members=args.members, random_state=0),
        views=list(VIEWS))
    start = time.time()
    ensemble.fit(list(train.filenames), train.target, groups=train.groups)
    minutes = (time.time() - start) / 60
    test_files = list(test.filenames)

    def row(label: str, proba: np.ndarray) -> float:
        r = evaluation_record(test.target, np.argmax(proba, axis=1),
                              proba[:, 1] if len(names) == 2 else proba, names=names)
        recalls = ", ".join(f"{r[f'recall {n}']:.3f}" for n in names)
        print(f"| {label} | {r['accuracy']:.3f} [{r['accuracy_low']:.3f}, "
              f"{r['accuracy_high']:.3f}] | {r['balanced_accuracy']:.3f} | {recalls} | "
              f"{r.get('roc_auc', float('nan')):.3f} |", flush=True)
        return r["accuracy"]

    print(f"| {Path(args.data).name} | accuracy [95% CI] | balanced accuracy | recall "
          f"({', '.join(names)}) | ROC AUC |\n|---|---|---|---|---|")
    members = ensemble.estimator_.estimators_
    probas = [member.predict_proba(test_files) for member in members]
    scores = [row(f"seed {seed} (epochs {m.best_epoch_}/{m.n_epochs_})", p)
              for seed, m, p in zip(ensemble.estimator_.seeds_, members, probas)]
    print(f"| members: mean ± sd | {np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f} "
          f"| | | |")
    row(f"ensemble of {len(members)}", np.mean(probas, axis=0))
    row(f"ensemble of {len(members)}, test-time views", ensemble.predict_proba(test_files))
    print(f"training: {minutes:.1f} minutes for {len(members)} members")


if __name__ == "__main__":
    main()
