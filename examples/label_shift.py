"""Fixed CNN features + a calibrated linear SVM, with and without label-shift correction.

Trains on a dataset's ``train/`` split and scores its ``test/`` split three ways: the
pipeline as it is (inductive), and wrapped in :class:`~cnnfeatures.LabelShiftAdapter`
with EM and with BBSE (transductive: the test images' class priors are estimated from the
test images themselves, without their labels). Prints each row's record (accuracy and
balanced accuracy with 95% intervals, per-class recall) and the estimated priors beside
the true ones. Nothing is chosen on test labels.

Usage: python examples/label_shift.py --data ../shared/data/chest_xray
       [--cache-dir DIR] [--weights PATH]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="<data>/{train,test}/<class>/<image>")
    parser.add_argument("--weights", default=str(SHARED / "weights" /
                                                 "vgg16_notop_imagenet.weights.h5"))
    parser.add_argument("--cache-dir", default=True,
                        help="activation cache directory (default: the user cache)")
    args = parser.parse_args()

    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from cnnfeatures import CNNFeatureExtractor, LabelShiftAdapter, load_image_folder
    from cnnfeatures.report import evaluation_record, format_record

    train, test = (load_image_folder(args.data, split=s) for s in ("train", "test"))
    pipe = make_pipeline(
        CNNFeatureExtractor(backbone="vgg16", weights=args.weights, layer="block5_pool",
                            pooling="mean", cache=args.cache_dir),
        CalibratedClassifierCV(LinearSVC(), cv=3))
    names = list(train.target_names)
    rows = {"inductive": pipe,
            "transductive, EM": LabelShiftAdapter(pipe, method="em"),
            "transductive, BBSE": LabelShiftAdapter(pipe, method="bbse", cv=3)}
    true_priors = np.bincount(test.target, minlength=len(names)) / len(test.target)
    for label, model in rows.items():
        model.fit(list(train.filenames), train.target)
        proba = model.predict_proba(list(test.filenames))  # one pass over the test images
        predicted = np.argmax(proba, axis=1)
        scores = proba[:, 1] if proba.shape[1] == 2 else proba
        print(f"\n{Path(args.data).name}, {label}")
        print(format_record(evaluation_record(test.target, predicted, scores, names=names),
                            names))
        if isinstance(model, LabelShiftAdapter):
            estimated = model.estimate_priors(list(test.filenames))
            print("priors   train " + " ".join(f"{p:.3f}" for p in model.train_priors_)
                  + " | test, estimated " + " ".join(f"{p:.3f}" for p in estimated)
                  + " | test, true " + " ".join(f"{p:.3f}" for p in true_priors))


if __name__ == "__main__":
    main()
