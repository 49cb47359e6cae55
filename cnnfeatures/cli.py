"""The ``cnnfeatures`` command line.

Sub-commands: ``describe`` (a dataset folder), ``extract`` (features to .npz), ``evaluate``
(train on one split, score on another), ``grid`` (the layout of the report's Tables 1–4)
and ``cache`` (inspect or clear the activation cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from .backbones import BACKBONES

__all__ = ["main"]


def _weights(value: str):
    return None if value.lower() == "none" else value


def _add_extractor_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    p.add_argument("--backbone", default="vgg19", choices=sorted(BACKBONES))
    p.add_argument(
        "--weights", default="imagenet", type=_weights,
        help="'imagenet' (Keras cache), a Keras weights file, or 'none' (random)",
    )
    if not many:
        p.add_argument("--layer", nargs="+", default=["fc2"], help="layer name(s)")
        p.add_argument("--pooling", default="max", choices=["mean", "max"])
        p.add_argument("--scales", nargs="+", type=int, default=[0],
                       help="scale numbers n (side 224 + 320n)")
    p.add_argument("--scale-combination", default="pool", choices=["pool", "concat"])
    p.add_argument("--no-l2", action="store_true", help="skip L2 normalisation")
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="precision of the convolutions (bfloat16: 3-5x faster on CPUs "
                        "with AMX / AVX-512 BF16; features change by under 1%%)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cache-dir", default=None,
                   help="directory for the activation cache (default: memory only, or "
                        "$CNNFEATURES_CACHE_DIR)")
    p.add_argument("-v", "--verbose", action="count", default=0)


def _extractor(args, **overrides):
    from .extraction import CNNFeatureExtractor

    params = dict(
        backbone=args.backbone, weights=args.weights,
        scale_combination=args.scale_combination, l2_normalize=not args.no_l2,
        batch_size=args.batch_size, cache=args.cache_dir or True, verbose=args.verbose,
        precision=args.precision,
    )
    if hasattr(args, "layer"):
        layer = args.layer[0] if len(args.layer) == 1 else args.layer
        params.update(layer=layer, pooling=args.pooling, scales=tuple(args.scales))
    params.update(overrides)
    return CNNFeatureExtractor(**params)


def _load(root, split, group_pattern=None):
    from .datasets import load_image_folder

    return load_image_folder(root, split=split, group_pattern=group_pattern)


def _has_split(root: str, split: str) -> bool:
    return os.path.isdir(os.path.join(root, split))


# --------------------------------------------------------------------------- commands


def _splits(root: str) -> list[str | None]:
    """The split folders of a <root>/<split>/<class>/<image> layout, or [None] when flat."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: dataset folder not found")
    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    nested = [d for d in subdirs
              if all(os.path.isdir(os.path.join(root, d, c)) for c in os.listdir(
                  os.path.join(root, d))) and os.listdir(os.path.join(root, d))]
    return nested if nested and len(nested) == len(subdirs) else [None]


def cmd_describe(args) -> int:
    for split in [args.split] if args.split else _splits(args.root):
        data = _load(args.root, split, args.group_pattern)
        counts = np.bincount(data.target, minlength=len(data.target_names))
        print(f"{data.root}: {len(data.filenames)} images, {len(data.target_names)} classes")
        for name, n in zip(data.target_names, counts):
            print(f"  {name:<24} {n:>6}")
        if data.groups is not None:
            print(f"  groups: {len(set(data.groups))} distinct")
    return 0


def cmd_extract(args) -> int:
    data = _load(args.root, args.split, args.group_pattern)
    ext = _extractor(args)
    start = time.perf_counter()
    features = ext.fit_transform(data.filenames)
    np.savez(
        args.output, features=features, target=data.target,
        target_names=np.asarray(data.target_names), filenames=data.filenames,
        feature_names=ext.get_feature_names_out().astype(str),
        **({"groups": data.groups} if data.groups is not None else {}),
    )
    print(f"{features.shape[0]} images x {features.shape[1]} features -> {args.output} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


def cmd_evaluate(args) -> int:
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from .reporting import classification_metrics, format_metrics

    train = _load(args.root, args.train_split)
    test = _load(args.root, args.test_split)
    if train.target_names != test.target_names:
        raise SystemExit(
            f"classes differ between {args.train_split} ({train.target_names}) and "
            f"{args.test_split} ({test.target_names})"
        )
    model = make_pipeline(_extractor(args), LinearSVC(C=args.C))
    start = time.perf_counter()
    model.fit(train.filenames, train.target)
    predicted = model.predict(test.filenames)
    seconds = time.perf_counter() - start
    metrics = classification_metrics(test.target, predicted, labels=range(len(test.target_names)))
    ext = model[0]
    print(f"{args.root}: train {len(train.filenames)}, test {len(test.filenames)} images")
    print(f"{ext.backbone} ({args.weights}) layer={ext.layer} pooling={ext.pooling} "
          f"scales={ext.scales} l2={ext.l2_normalize} -> LinearSVC(C={args.C})")
    print(format_metrics(metrics, test.target_names))
    print(f"time               {seconds:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**metrics, "per_class": {test.target_names[k]: v for k, v in
                                                metrics["per_class"].items()},
                       "seconds": seconds}, f, indent=2)
    return 0


def cmd_grid(args) -> int:
    from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from .reporting import cv_results_records, params_record, save_heatmap, scale_table

    train = _load(args.root, args.train_split, args.group_pattern)
    pipe = make_pipeline(_extractor(args, layer=args.layers[0], pooling=args.poolings[0]),
                         LinearSVC(C=args.C))
    grid = {
        "cnnfeatureextractor__layer": args.layers,
        "cnnfeatureextractor__pooling": args.poolings,
        "cnnfeatureextractor__scales": [(n,) for n in args.scales],
    }
    cv = (GroupKFold(args.cv) if train.groups is not None
          else StratifiedKFold(args.cv, shuffle=True, random_state=0))
    search = GridSearchCV(pipe, grid, cv=cv, n_jobs=1, refit=False)
    start = time.perf_counter()
    search.fit(train.filenames, train.target, groups=train.groups)
    tables = {"cv": scale_table(cv_results_records(search.cv_results_))}

    test_split = args.test_split
    if test_split and _has_split(args.root, test_split):
        from sklearn.base import clone

        test = _load(args.root, test_split)
        records = []
        for params in search.cv_results_["params"]:
            model = clone(pipe).set_params(**params).fit(train.filenames, train.target)
            records.append(params_record(params, model.score(test.filenames, test.target)))
        tables["test"] = scale_table(records)
    seconds = time.perf_counter() - start

    os.makedirs(args.output, exist_ok=True)
    for name, table in tables.items():
        title = (f"{args.cv}-fold CV accuracy on {args.train_split}" if name == "cv"
                 else f"accuracy on {test_split} (trained on {args.train_split})")
        print(f"\n{title}\n{table.round(4).to_string()}")
        table.to_csv(os.path.join(args.output, f"grid_{name}.csv"))
        try:
            save_heatmap(table, os.path.join(args.output, f"grid_{name}.png"), title)
        except ImportError:
            print("(matplotlib is not installed: no heatmap)")
    print(f"\nwrote {args.output}/grid_*.csv and .png ({seconds:.1f} s)")
    return 0


def cmd_augment(args) -> int:
    from PIL import Image

    from .augmentation import ImageAugmenter, augmentation_grid

    augmenter = ImageAugmenter(
        rotation=args.rotation, zoom=args.zoom, shift=args.shift, shear=args.shear,
        crop=args.crop, brightness=args.brightness, contrast=args.contrast, gamma=args.gamma,
        elastic_alpha=args.elastic_alpha, vertical_flip=args.vertical_flip,
    )
    augmenter._validate_params()
    grid = augmentation_grid(args.image, augmenter, n=args.n, columns=args.columns,
                             random_state=args.seed)
    Image.fromarray(grid).save(args.output)
    print(f"{args.image}: original + {args.n} augmented views -> {args.output}")
    return 0


def cmd_explain(args) -> int:
    import joblib
    from PIL import Image

    from .explain import grad_cam, layer_panel, overlay

    # joblib files are pickles: loading one runs code, so only load files you trust.
    model = joblib.load(args.model)
    os.makedirs(args.output, exist_ok=True)
    target = args.target
    if target is not None:
        classes = list(getattr(model, "classes_", []))
        target = next((c for c in classes if str(c) == target), target)
    for path in args.images:
        stem = os.path.splitext(os.path.basename(path))[0]
        if args.panel:
            picture = layer_panel(model, path, layers=args.layer, target=target)
            out = os.path.join(args.output, f"{stem}_layers.png")
            Image.fromarray(picture).save(out)
            print(f"{path} -> {out}")
            continue
        for layer in args.layer or [None]:
            (heat,) = grad_cam(model, [path], layer=layer, target=target)
            out = os.path.join(args.output, f"{stem}_gradcam_{layer or 'default'}.png")
            Image.fromarray(overlay(path, heat, alpha=args.alpha)).save(out)
            print(f"{path} -> {out}")
    return 0


def cmd_cache(args) -> int:
    from .cache import default_cache_dir, get_cache

    directory = args.dir or default_cache_dir()
    if directory is None:
        raise SystemExit("give --dir or set CNNFEATURES_CACHE_DIR: the memory cache of a "
                         "command ends with it")
    cache = get_cache(directory)
    if args.action == "clear":
        cache.clear()
        print(f"cleared {directory}")
    elif args.action == "prune":
        if args.max_mb is None:
            raise SystemExit("cache prune needs --max-mb")
        removed = cache.prune(int(args.max_mb * 2**20))
        print(f"removed {removed} entries from {directory}")
    info = cache.info()
    print(f"{info.directory}: {info.disk_entries} entries, {info.disk_bytes / 2**20:.1f} MiB")
    return 0


def cmd_reproduce(args) -> int:
    import json
    import time
    from dataclasses import replace

    import pandas as pd

    from .reporting import to_markdown, write_table
    from .reproduce import BUDGETS, Experiment, run_table

    budget = BUDGETS[args.budget]
    for flag in ("max_train", "max_test", "max_epochs"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got "
                             f"{getattr(args, flag)}")
    if args.scales and min(args.scales) < 0:
        raise ValueError(f"--scales must be scale numbers >= 0, got {args.scales}")
    scales = tuple(args.scales) if args.scales else None
    changes = {"scales": scales, "vlad_scales": scales,
               "max_train": args.max_train, "max_test": args.max_test,
               "max_epochs": args.max_epochs}
    changes = {k: (None if v == 0 and k.startswith("max_t") else v)
               for k, v in changes.items() if v is not None}
    budget = replace(budget, **changes, name=budget.name + ("*" if changes else ""))
    exp = Experiment(backbone=args.backbone, weights=args.weights, budget=budget,
                     precision=args.precision, cache=args.cache_dir or True,
                     verbose=args.verbose, random_state=args.seed)
    tables = list(TABLE_NAMES) if args.table == "all" else [args.table]
    os.makedirs(args.output, exist_ok=True)
    for table in tables:
        start = time.perf_counter()
        result = run_table(table, args.data, exp)
        minutes = (time.perf_counter() - start) / 60
        print(f"\n# Table {table} ({exp.backbone}, weights {args.weights}, budget "
              f"{exp.budget.name}): {minutes:.1f} min")
        for note in dict.fromkeys(result.notes):
            print(f"note: {note}")
        for name, frame in result.tables.items():
            title = f"{name} — test accuracy ({exp.backbone}, budget {exp.budget.name})"
            write_table(frame, args.output, name, title)
            print(f"\n{name}\n{to_markdown(frame)}")
        records = pd.DataFrame(result.records)
        records.to_csv(os.path.join(args.output, f"records_{table}.csv"), index=False)
        with open(os.path.join(args.output, f"run_{table}.json"), "w") as f:
            json.dump({"table": table, "data": [os.fspath(d) for d in args.data],
                       "backbone": exp.backbone, "weights": str(args.weights),
                       "budget": exp.budget.name, "precision": exp.precision,
                       "minutes": minutes, "notes": list(dict.fromkeys(result.notes))},
                      f, indent=2)
    print(f"\nwrote tables (.md, .csv, .png), records_*.csv and run_*.json to {args.output}")
    return 0


TABLE_NAMES = ("1-4", "5-7", "8-9", "10", "11", "12")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnfeatures", description="Pretrained CNN features for scikit-learn."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("describe", help="count the images of a dataset folder per class")
    p.add_argument("root")
    p.add_argument("--split")
    p.add_argument("--group-pattern", help="regex or key of PATIENT_PATTERNS")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("extract", help="features of a folder's images to a .npz file")
    p.add_argument("root")
    p.add_argument("--split")
    p.add_argument("--group-pattern")
    p.add_argument("-o", "--output", required=True, help="output .npz path")
    _add_extractor_args(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("evaluate", help="extractor + linear SVM: train on one split, test "
                                        "on another")
    p.add_argument("root")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--C", type=float, default=1.0, help="LinearSVC's C")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    _add_extractor_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("grid", help="layer x pooling x scale grid (report Tables 1-4)")
    p.add_argument("root")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test",
                   help="also score every configuration on this split when it exists")
    p.add_argument("--group-pattern", help="group CV folds by this file-name pattern")
    p.add_argument("--layers", nargs="+", default=["block5_pool", "fc1", "fc2"])
    p.add_argument("--poolings", nargs="+", default=["mean", "max"], choices=["mean", "max"])
    p.add_argument("--scales", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--cv", type=int, default=5)
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("-o", "--output", default="grid_results")
    _add_extractor_args(p, many=True)
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("augment", help="save a grid of augmented views of one image")
    p.add_argument("image")
    p.add_argument("-n", type=int, default=8, help="number of augmented views")
    p.add_argument("--columns", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="augmentations.png")
    defaults = {"rotation": 15.0, "zoom": 0.1, "shift": 0.05, "shear": 0.0, "crop": 0.0,
                "brightness": 0.1, "contrast": 0.1, "gamma": 0.0, "elastic_alpha": 0.0}
    for name, value in defaults.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=value)
    p.add_argument("--vertical-flip", action="store_true")
    p.set_defaults(func=cmd_augment)

    p = sub.add_parser("explain", help="Grad-CAM overlays for a saved model or pipeline")
    p.add_argument("model", help="a joblib file of a fitted classifier or pipeline")
    p.add_argument("images", nargs="+")
    p.add_argument("--layer", nargs="+", help="layer(s); default: the last pooled block")
    p.add_argument("--target", help="class to explain (default: the predicted one)")
    p.add_argument("--panel", action="store_true",
                   help="one picture per image with every layer side by side")
    p.add_argument("--alpha", type=float, default=0.4)
    p.add_argument("-o", "--output", default="explanations")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("reproduce", help="rerun one of the report's comparisons (its table "
                                         "layout, every metric with 95%% intervals)")
    p.add_argument("table", choices=[*TABLE_NAMES, "all"])
    p.add_argument("--data", nargs="+", required=True,
                   help="dataset folder(s) with train/ and test/ splits")
    p.add_argument("--backbone", default="vgg19", choices=sorted(BACKBONES))
    p.add_argument("--weights", default="imagenet", type=_weights,
                   help="'imagenet' (Keras cache), a Keras weights file, or 'none' (random)")
    p.add_argument("--budget", default="quick", choices=["quick", "full"],
                   help="quick: minutes on 2 CPU cores (subsamples, fewer scales and "
                        "epochs); full: the report's settings")
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--scales", nargs="+", type=int,
                   help="override the budget's scales (of every table)")
    p.add_argument("--max-train", type=int, help="override the budget's train subsample "
                                                  "(0: every image)")
    p.add_argument("--max-test", type=int, help="override the budget's test subsample "
                                                 "(0: every image)")
    p.add_argument("--max-epochs", type=int, help="override the budget's epoch cap")
    p.add_argument("--cache-dir", default=None, help="reuse activations across runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="reproduce_results")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("cache", help="inspect or clear a disk activation cache")
    p.add_argument("action", choices=["info", "clear", "prune"])
    p.add_argument("--dir")
    p.add_argument("--max-mb", type=float, help="with prune: keep at most this many MiB")
    p.set_defaults(func=cmd_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    from .images import ImageLoadError

    try:
        return args.func(args)
    except (ImageLoadError, FileNotFoundError, ValueError) as exc:
        print(f"cnnfeatures: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
