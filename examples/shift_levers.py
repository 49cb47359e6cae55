"""The levers against a train/test shift, each alone and combined, on fixed CNN features.

Trains on a dataset's ``train/`` split and scores its ``test/`` split with pipelines that
differ by one lever at a time (docs/results.md, "Levers against the shift"):

- class weights: balanced ``sample_weight`` routed to the ``CalibratedClassifierCV``, which
  weights both the SVM and its sigmoid (``LinearSVC(class_weight="balanced")`` alone weights
  the SVM only, and the sigmoid, fitted on unweighted folds, undoes it: the
  ``svm-weights`` row);
- the decision threshold tuned for balanced accuracy by scikit-learn's
  ``TunedThresholdClassifierCV`` on folds of train (patient-grouped with ``--group-pattern``;
  two-class sets only);
- test-time views (``TestTimeAugmentationClassifier``: identity, left-right flip, centre
  crop);
- the region of interest (``RegionCropper(mode="mask")``: the largest bright or dark
  component's box, what lies outside its convex hull blacked out);
- a second backbone (Xception) and the soft vote of both (``VotingClassifier``);
- everything together.

Every row's classifier is ``CalibratedClassifierCV(LinearSVC())`` on L2-normalised
``block5_pool`` (VGG-16) or ``block14_sepconv2_act`` (Xception) mean features, so that
posteriors can be averaged; every fit is deterministic (one run is every seed's). The
OpenVINO int8 engine computes the features (3.5x Keras here, the same accuracy within an
image or two: docs/extraction.md); one fixed calibration set per backbone serves every fit.
Nothing is chosen on test labels: the rows, views and regions are fixed in advance.

Usage: python examples/shift_levers.py --data ../shared/data/chest_xray
       [--group-pattern chest_xray] [--polarity bright] [--rows base vote ...]
       [--engine keras] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
LAYERS = {"vgg16": "block5_pool", "xception": "block14_sepconv2_act"}
VIEWS = ("identity", "hflip", "crop_center")
ROWS = ("base", "svm-weights", "balanced", "threshold", "views", "region", "xception", "vote",
        "all")
WEIGHTED = ("balanced", "all")  # the rows whose fit takes balanced sample weights


def build_rows(args, train) -> dict:
    """Every row's unfitted model, by name."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import VotingClassifier
    from sklearn.metrics import balanced_accuracy_score, make_scorer
    from sklearn.model_selection import GroupKFold, StratifiedKFold, TunedThresholdClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from cnnfeatures import (
        CNNFeatureExtractor,
        RegionCropper,
        TestTimeAugmentationClassifier,
    )
    from cnnfeatures.extraction.calibration import calibration_sources

    cropper = RegionCropper(mode="mask", polarity=args.polarity)
    fixed = calibration_sources(list(train.filenames), 300)  # one int8 calibration per input
    cropped = cropper.transform(fixed)

    def pipeline(backbone="vgg16", region=False, weights=None):
        """weights: None, "svm" (LinearSVC's class_weight) or "sample" (fit's sample_weight,
        to the SVM and its sigmoid)."""
        extractor = CNNFeatureExtractor(
            backbone=backbone, layer=LAYERS[backbone], pooling="mean",
            weights=str(Path(args.weights_dir) / f"{backbone}_notop_imagenet.weights.h5"),
            engine=args.engine, precision="int8" if args.engine == "openvino" else "float32",
            calibration=cropped if region else fixed, cache=args.cache_dir)
        svm = LinearSVC(class_weight="balanced" if weights == "svm" else None)
        head = CalibratedClassifierCV(svm, cv=3)
        if weights == "sample":
            svm.set_fit_request(sample_weight=True)
            head.set_fit_request(sample_weight=True)
        return make_pipeline(*([cropper] if region else []), extractor, head)

    def tuned(model):
        if train.groups is not None:
            folds = list(GroupKFold(3).split(train.filenames, train.target, train.groups))
        else:
            folds = StratifiedKFold(3, shuffle=True, random_state=0)
        balanced = make_scorer(balanced_accuracy_score).set_score_request(sample_weight=False)
        return TunedThresholdClassifierCV(model, scoring=balanced, cv=folds)

    def vote(**kwargs):
        return VotingClassifier([(b, pipeline(b, **kwargs)) for b in LAYERS], voting="soft")

    binary = len(train.target_names) == 2
    everything = TestTimeAugmentationClassifier(vote(region=True, weights="sample"),
                                                views=list(VIEWS))
    rows = {"base": pipeline(), "svm-weights": pipeline(weights="svm"),
            "balanced": pipeline(weights="sample"),
            "threshold": tuned(pipeline()) if binary else None,
            "views": TestTimeAugmentationClassifier(pipeline(), views=list(VIEWS)),
            "region": pipeline(region=True), "xception": pipeline("xception"),
            "vote": vote(), "all": tuned(everything) if binary else everything}
    return {name: rows[name] for name in args.rows if rows[name] is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="<data>/{train,test}/<class>/<image>")
    parser.add_argument("--group-pattern", help="patients or slides to keep whole in folds")
    parser.add_argument("--polarity", default="bright", choices=("bright", "dark"),
                        help="RegionCropper's polarity: a bright body, a dark lesion")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--engine", default="openvino", choices=("openvino", "keras"))
    parser.add_argument("--weights-dir", default=str(SHARED / "weights"))
    parser.add_argument("--cache-dir", default=True,
                        help="activation cache directory (default: the user cache)")
    args = parser.parse_args()

    import sklearn
    from sklearn.utils.class_weight import compute_sample_weight

    from cnnfeatures import load_image_folder
    from cnnfeatures.report import evaluation_record

    sklearn.set_config(enable_metadata_routing=True)  # sample_weight to the rows that ask

    train = load_image_folder(args.data, split="train", group_pattern=args.group_pattern)
    test = load_image_folder(args.data, split="test")
    names = list(train.target_names)
    weights = compute_sample_weight("balanced", train.target)
    print(f"| {Path(args.data).name} | accuracy [95% CI] | balanced accuracy | recall "
          f"({', '.join(names)}) | ROC AUC | minutes |\n|---|---|---|---|---|---|")
    for name, model in build_rows(args, train).items():
        start = time.time()
        params = {"sample_weight": weights} if name in WEIGHTED else {}
        model.fit(list(train.filenames), train.target, **params)
        proba = model.predict_proba(list(test.filenames))  # one pass over the test images
        label = name
        if hasattr(model, "best_threshold_"):  # the tuned threshold decides, not 0.5
            predicted = (proba[:, 1] >= model.best_threshold_).astype(int)
            label += f" (threshold {model.best_threshold_:.2f})"
        else:
            predicted = np.argmax(proba, axis=1)
        r = evaluation_record(test.target, predicted, proba[:, 1] if len(names) == 2 else proba,
                              names=names)
        recalls = ", ".join(f"{r[f'recall {n}']:.3f}" for n in names)
        print(f"| {label} | {r['accuracy']:.3f} [{r['accuracy_low']:.3f}, "
              f"{r['accuracy_high']:.3f}] | {r['balanced_accuracy']:.3f} | {recalls} | "
              f"{r.get('roc_auc', float('nan')):.3f} | {(time.time() - start) / 60:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
