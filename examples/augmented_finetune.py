"""Table 10's fine-tuned VGG-16 (frozen base) with fixed augmented views, on a whole dataset.

The protocol of ``cnnfeatures reproduce 10 --budget cpu`` (whole splits, a patient-grouped
fifth of train holding out the epochs and, for two classes, the threshold; classes
weighted; nothing chosen on test), with one change: ``augmentation_views`` random views of
each training image (rotation, zoom, shift, left-right flips), drawn once, whose frozen-base
activations are cached like the images'. It prints the test record and the validation
scores, and appends the record to ``--output`` (JSON lines).

Usage: python examples/augmented_finetune.py --data ../shared/data/ham10000_7class
       [--views 2] [--cache-dir DIR] [--group-pattern chest_xray] [-o records.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="<data>/{train,test}/<class>/<image>")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--cache-dir", default=True,
                        help="activation cache directory (default: the user cache)")
    parser.add_argument("--group-pattern", help="patients: a load_image_folder pattern")
    parser.add_argument("-o", "--output", default="augmented_finetune.jsonl")
    args = parser.parse_args()

    from cnnfeatures import FineTunedCNNClassifier, ImageAugmenter
    from cnnfeatures.report import Experiment, format_record, keras_description

    name = Path(args.data).name
    exp = Experiment(backbone="vgg16",
                     weights=SHARED / "weights" / "vgg16_notop_imagenet.weights.h5",
                     budget="cpu", cache=args.cache_dir,
                     group_patterns={name: args.group_pattern} if args.group_pattern else {})
    train, test, notes = exp.load(args.data)
    augmenter = ImageAugmenter(rotation=15, zoom=0.1, shift=0.05,  # and left-right flips
                               random_state=exp.random_state)
    model = exp.keras_model(FineTunedCNNClassifier(
        frozen=("blocks",), augmentation=augmenter, augmentation_views=args.views,
        **exp.keras_params(frozen_base=True)))
    method = f"fine-tuned VGG (frozen base, {args.views} augmented views)"
    record = exp.evaluate(model, train, test, dataset=name, method=method)
    record.update(keras_description(model))  # as reproduce records its Keras runs
    for note in notes:
        print(note)
    print(format_record(record, test.names))
    print(f"validation: {model.validation_scores_}, threshold {model.threshold_}, "
          f"epochs {record['epochs']}")
    with open(args.output, "a") as out:
        out.write(json.dumps(record, default=str) + "\n")


if __name__ == "__main__":
    main()
