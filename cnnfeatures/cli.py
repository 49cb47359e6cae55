"""The ``cnnfeatures`` command line: a thin layer over the library and its report application.

Sub-commands: ``describe`` (a dataset folder), ``extract`` (features to .npz), ``evaluate``
(train on one split, score on another), ``grid`` (the layout of the report's Tables 1–4),
``reproduce`` (any table of the report), ``augment`` (a picture of augmented views),
``explain`` (Grad-CAM overlays) and ``cache`` (inspect or clear a disk activation cache).

Registries (backbones, tables) are read when a command runs, not when the parser is built:
a backbone registered by a plugin is accepted, and ``--help`` stays the same whatever was
imported before. A user error (a missing folder, an unknown layer, weights that cannot be
had) prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from .backbones import PRECISIONS

__all__ = ["build_parser", "main"]



def _weights(value: str):
    return None if value.lower() == "none" else value


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help with every default shown, and descriptions kept as written."""


def _add_network_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="vgg16",
                   help="a backbone of the registry (cnnfeatures.backbones.BACKBONES: the "
                        "Keras applications, and any added with register_backbone); an "
                        "unknown name is an error that lists them")
    p.add_argument("--weights", default="imagenet", type=_weights,
                   help="'imagenet' (Keras' cache or download), the path of a Keras weights "
                        "file, or 'none' (random)")
    p.add_argument("--precision", default="float32", choices=sorted(PRECISIONS),
                   help="precision of the networks, extraction and training (bfloat16: "
                        "3-5x faster on CPUs with AMX / AVX-512 BF16; features change by "
                        "under 1%%)")


def _add_extractor_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    _add_network_args(p)
    if not many:
        p.add_argument("--layer", nargs="+", default=None,
                       help="layer name(s) (default: the backbone's last pooled block, "
                            "e.g. block5_pool)")
        p.add_argument("--pooling", default="mean", choices=["mean", "max"],
                       help="pooling over positions")
        p.add_argument("--scales", nargs="+", type=int, default=[0],
                       help="scale numbers n (input side 224 + 320n)")
    p.add_argument("--scale-combination", default="pool", choices=["pool", "concat"],
                   help="several scales: pool their vectors, or concatenate them")
    p.add_argument("--no-l2", action="store_true", help="skip the L2 normalisation")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images per forward pass at side 224")
    p.add_argument("--cache-dir", default=None,
                   help="directory of the activation cache, shared between runs and "
                        "processes (default: memory only, or $CNNFEATURES_CACHE_DIR)")
    _add_verbosity(p)


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the results (no progress lines)")
    p.add_argument("-v", "--verbose", action="count", default=1,
                   help="progress: network builds, forward passes, runs, epochs (on by "
                        "default; -q turns it off)")


def _default_layer(backbone: str) -> str:
    from .backbones import get_backbone

    return get_backbone(backbone).last_block_pool


def _extractor(args, **overrides):
    from .extraction import CNNFeatureExtractor

    params = dict(
        backbone=args.backbone, weights=args.weights,
        scale_combination=args.scale_combination, l2_normalize=not args.no_l2,
        batch_size=args.batch_size, cache=args.cache_dir or True, verbose=args.verbose,
        precision=args.precision,
    )
    if hasattr(args, "layer"):
        layers = args.layer or [_default_layer(args.backbone)]
        params.update(layer=layers[0] if len(layers) == 1 else layers, pooling=args.pooling,
                      scales=tuple(args.scales))
    params.update(overrides)
    return CNNFeatureExtractor(**params)


def _load(root, split, group_pattern=None):
    from .report import load_split

    part, _ = load_split(root, split, group_pattern=group_pattern)
    return part


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
    from .datasets import load_image_folder

    for split in [args.split] if args.split else _splits(args.root):
        data = load_image_folder(args.root, split=split, group_pattern=args.group_pattern)
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
    if args.scheduler or args.local_cluster:
        from .distributed import extract_distributed

        # The cluster forwards every image once and leaves the features in the cache;
        # this process then reads them from there.
        extract_distributed(ext, data.X, scheduler=args.scheduler,
                            local_workers=args.local_cluster, verbose=args.verbose)
    features = ext.fit_transform(data.X)
    np.savez(
        args.output, features=features, target=data.y,
        target_names=np.asarray(data.names), filenames=data.X,
        feature_names=ext.get_feature_names_out().astype(str),
        **({"groups": data.groups} if data.groups is not None else {}),
    )
    print(f"{features.shape[0]} images x {features.shape[1]} features -> {args.output} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


def cmd_evaluate(args) -> int:
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from .report import evaluate_model, format_record

    train = _load(args.root, args.train_split)
    test = _load(args.root, args.test_split)
    if train.names != test.names:
        raise ValueError(f"classes differ between {args.train_split} ({train.names}) and "
                         f"{args.test_split} ({test.names})")
    model = make_pipeline(_extractor(args), LinearSVC(C=args.C))
    record = evaluate_model(model, train, test, n_resamples=args.resamples)
    ext = model[0]
    print(f"{args.root}: train {len(train.X)}, test {len(test.X)} images")
    print(f"{ext.backbone} ({args.weights}) layer={ext.layer} pooling={ext.pooling} "
          f"scales={ext.scales} l2={ext.l2_normalize} -> LinearSVC(C={args.C})")
    print(format_record(record, test.names))
    print(f"time               {record['minutes'] * 60:.1f} s")
    if args.json:
        per_class = {name: {"recall": record[f"recall {name}"],
                            "specificity": record[f"specificity {name}"]}
                     for name in test.names}
        with open(args.json, "w") as f:
            json.dump({**record, "per_class": per_class, "seconds": record["minutes"] * 60},
                      f, indent=2)
    return 0


def cmd_grid(args) -> int:
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from .report import (
        Experiment,
        cv_results_records,
        evaluate_model,
        folds,
        params_record,
        save_heatmap,
        scale_table,
    )

    layers = args.layers or list(Experiment(backbone=args.backbone,
                                            weights=args.weights).fixed_layers()[0])
    train = _load(args.root, args.train_split, args.group_pattern)
    pipe = make_pipeline(_extractor(args, layer=layers[0], pooling=args.poolings[0]),
                         LinearSVC(C=args.C))
    grid = {
        "cnnfeatureextractor__layer": layers,
        "cnnfeatureextractor__pooling": args.poolings,
        "cnnfeatureextractor__scales": [(n,) for n in args.scales],
    }
    search = GridSearchCV(pipe, grid, cv=folds(train, args.cv), n_jobs=1, refit=False)
    start = time.perf_counter()
    search.fit(train.X, train.y, groups=train.groups)
    tables = {"cv": scale_table(cv_results_records(search.cv_results_))}

    test_split = args.test_split
    if test_split and os.path.isdir(os.path.join(args.root, test_split)):
        from sklearn.base import clone

        test = _load(args.root, test_split)
        records = [params_record(params, evaluate_model(clone(pipe).set_params(**params), train,
                                                        test, n_resamples=0)["accuracy"])
                   for params in search.cv_results_["params"]]
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

    from .augmentation import AUGMENTATION_SETTINGS, ImageAugmenter, augmentation_grid

    augmenter = ImageAugmenter(**{name: getattr(args, name)
                                  for name, *_ in AUGMENTATION_SETTINGS})
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
        raise ValueError("give --dir or set CNNFEATURES_CACHE_DIR: the memory cache of a "
                         "command ends with it")
    cache = get_cache(directory)
    if args.action == "clear":
        cache.clear()
        print(f"cleared {directory}")
    elif args.action == "prune":
        if args.max_mb is None:
            raise ValueError("cache prune needs --max-mb")
        removed = cache.prune(int(args.max_mb * 2**20))
        print(f"removed {removed} entries from {directory}")
    info = cache.info()
    print(f"{info.directory}: {info.disk_entries} entries, {info.disk_bytes / 2**20:.1f} MiB")
    return 0


def _group_patterns(values: Sequence[str] | None) -> dict[str, str]:
    """``NAME=PATTERN`` (one dataset) or ``PATTERN`` (every dataset) -> a mapping."""
    patterns = {}
    for value in values or []:
        name, sep, pattern = value.partition("=")
        if sep and name and not name.startswith(("^", "(", "dicom:")):
            patterns[name] = pattern
        else:
            patterns["*"] = value
    return patterns


def cmd_reproduce(args) -> int:
    from dataclasses import replace

    import pandas as pd

    from .report import BUDGETS, TABLES, Experiment, Journal, run_table, to_markdown, write_table
    from .report.plan import check_group_patterns

    for flag in ("max_train", "max_test", "max_epochs"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got "
                             f"{getattr(args, flag)}")
    if args.scales and min(args.scales) < 0:
        raise ValueError(f"--scales must be scale numbers >= 0, got {args.scales}")
    if args.table != "all" and args.table not in TABLES:
        raise ValueError(f"table must be one of {[*TABLES, 'all']}, got {args.table!r}")
    scales = tuple(args.scales) if args.scales else None
    changes = {"scales": scales, "vlad_scales": scales,
               "max_train": args.max_train, "max_test": args.max_test,
               "max_epochs": args.max_epochs}
    changes = {k: (None if v == 0 and k.startswith("max_t") else v)
               for k, v in changes.items() if v is not None}
    if args.budget not in BUDGETS:
        raise ValueError(f"--budget must be one of {list(BUDGETS)}, got {args.budget!r}")
    budget = BUDGETS[args.budget]
    budget = replace(budget, **changes, name=budget.name + ("*" if changes else ""))
    exp = Experiment(backbone=args.backbone, weights=args.weights, budget=budget,
                     precision=args.precision, cache=args.cache_dir or True,
                     checkpoint_dir=os.path.join(args.output, "checkpoints"),
                     group_patterns=_group_patterns(args.group_pattern),
                     verbose=args.verbose, random_state=args.seed)
    tables = list(TABLES) if args.table == "all" else [args.table]
    check_group_patterns(exp, args.data)
    if args.dry_run:
        return _print_plans(tables, args, exp)
    os.makedirs(args.output, exist_ok=True)
    for table in tables:
        journal_path = os.path.join(args.output, f"journal_{table}.jsonl")
        if args.fresh and os.path.exists(journal_path):
            # Set aside, not deleted: what was measured is never lost.
            kept = f"{journal_path}.{time.strftime('%Y%m%d-%H%M%S')}.old"
            os.replace(journal_path, kept)
            print(f"--fresh: earlier runs kept in {kept}")
        journal = Journal(journal_path)
        if len(journal):
            print(f"resuming: {len(journal)} finished run(s) in {journal_path}")
        start = time.perf_counter()
        progress = (lambda line: print(line, file=sys.stderr, flush=True)) if args.verbose \
            else None
        result = run_table(table, args.data, exp, journal=journal, progress=progress)
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
                       "group_patterns": dict(exp.group_patterns),
                       "minutes": minutes, "notes": list(dict.fromkeys(result.notes))},
                      f, indent=2)
    print(f"\nwrote tables (.md, .csv, .png), records_*.csv, run_*.json and journal_*.jsonl "
          f"to {args.output}")
    return 0


def _print_plans(tables: Sequence[str], args, exp) -> int:
    """``reproduce --dry-run``: every check of a real run, and its work; nothing run."""
    from .report.plan import plan_table

    total = 0.0
    print(f"plan ({exp.backbone}, weights {args.weights}, budget {exp.budget.name}, "
          f"{exp.precision}, output {args.output})")
    for table in tables:
        # --fresh sets the journal aside: every run would be measured again.
        journal = None if args.fresh else os.path.join(args.output, f"journal_{table}.jsonl")
        plan = plan_table(table, args.data, exp, journal=journal)
        print(plan.format())
        total += plan.estimated_minutes
    if len(tables) > 1:
        print(f"estimate, every table: {total:.1f} min")
    print("dry run: arguments, data, weights and layers checked; nothing computed or written")
    return 0


# --------------------------------------------------------------------------- parser


def _add_augment_parser(sub) -> None:
    from .augmentation import AUGMENTATION_SETTINGS

    p = sub.add_parser("augment", help="save a grid of augmented views of one image",
                       formatter_class=_Formatter)
    p.add_argument("image", help="an image file")
    p.add_argument("-n", type=int, default=8, help="number of augmented views")
    p.add_argument("--columns", type=int, default=3, help="views per row")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("-o", "--output", default="augmentations.png", help="output PNG")
    # One option per transformation setting, from their single declaration.
    for name, default, _, help_text in AUGMENTATION_SETTINGS:
        flag = f"--{name.replace('_', '-')}"
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                           help=help_text)
        else:
            p.add_argument(flag, type=float, default=default, help=help_text)
    p.set_defaults(func=cmd_augment)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="cnnfeatures", description="Pretrained CNN features for scikit-learn.",
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str):
        return sub.add_parser(name, help=help_text, description=help_text,
                              formatter_class=_Formatter)

    p = command("describe", "count the images of a dataset folder per class")
    p.add_argument("root", help="dataset folder: <root>/[<split>/]<class>/<image>")
    p.add_argument("--split", help="only this split (default: every split found)")
    p.add_argument("--group-pattern", help="regex, key of PATIENT_PATTERNS (chest_xray, "
                                           "malaria_cells) or dicom:<Keyword>: count groups")
    p.set_defaults(func=cmd_describe)

    p = command("extract", "features of a folder's images to a .npz file")
    p.add_argument("root", help="dataset folder: <root>/[<split>/]<class>/<image>")
    p.add_argument("--split", help="the split sub-folder to read")
    p.add_argument("--group-pattern", help="also store each image's group (see describe)")
    p.add_argument("-o", "--output", required=True, help="output .npz path")
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="extract on this Dask cluster (tcp://host:8786); needs "
                              "--cache-dir on a filesystem every worker mounts")
    cluster.add_argument("--local-cluster", type=int, metavar="N",
                         help="extract on a Dask LocalCluster of N worker processes")
    _add_extractor_args(p)
    p.set_defaults(func=cmd_extract)

    p = command("evaluate", "extractor + linear SVM: train on one split, test on another")
    p.add_argument("root", help="dataset folder with a train and a test split")
    p.add_argument("--train-split", default="train", help="split to train on")
    p.add_argument("--test-split", default="test", help="split to score on")
    p.add_argument("--C", type=float, default=1.0, help="LinearSVC's C")
    p.add_argument("--resamples", type=int, default=1000,
                   help="bootstrap resamples of the 95%% intervals (0: none)")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    _add_extractor_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = command("grid", "layer x pooling x scale grid (report Tables 1-4)")
    p.add_argument("root", help="dataset folder with a train split")
    p.add_argument("--train-split", default="train", help="split the grid is searched on")
    p.add_argument("--test-split", default="test",
                   help="also score every configuration on this split when it exists")
    p.add_argument("--group-pattern", help="group CV folds by this pattern (see describe)")
    p.add_argument("--layers", nargs="+", default=None,
                   help="layers (default: the report's: the last block and fc1/fc2 when the "
                        "weights hold them, else the two last blocks)")
    p.add_argument("--poolings", nargs="+", default=["mean", "max"], choices=["mean", "max"],
                   help="poolings")
    p.add_argument("--scales", nargs="+", type=int, default=[0],
                   help="scale numbers n (each costs a forward pass of every image at side "
                        "224 + 320n)")
    p.add_argument("--cv", type=int, default=3, help="cross-validation folds")
    p.add_argument("--C", type=float, default=1.0, help="LinearSVC's C")
    p.add_argument("-o", "--output", default="grid_results", help="output folder")
    _add_extractor_args(p, many=True)
    p.set_defaults(func=cmd_grid)

    _add_augment_parser(sub)

    p = command("explain", "Grad-CAM overlays for a saved model or pipeline")
    p.add_argument("model", help="a joblib file of a fitted classifier or pipeline (a "
                                 "pickle: load only files you trust)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--layer", nargs="+", help="layer(s); default: the last pooled block")
    p.add_argument("--target", help="class to explain (default: the predicted one)")
    p.add_argument("--panel", action="store_true",
                   help="one picture per image with every layer side by side")
    p.add_argument("--alpha", type=float, default=0.4, help="opacity of the heatmap")
    p.add_argument("-o", "--output", default="explanations", help="output folder")
    p.set_defaults(func=cmd_explain)

    p = command("reproduce", "rerun one of the report's comparisons (its table layout, every "
                             "metric with 95%% intervals); a killed run resumes")
    p.add_argument("table", help="1-4, 5-7, 8-9, 10, 11, 12 or all")
    p.add_argument("--data", nargs="+", required=True,
                   help="dataset folder(s) with train/ and test/ splits")
    _add_network_args(p)
    p.add_argument("--budget", default="quick",
                   help="quick: minutes on 2 CPU cores (subsamples, fewer scales and "
                        "epochs); full: the report's settings; cpu: the whole data, "
                        "trained tables cut to hours of CPU (the base trains in its last "
                        "block only, a patient-grouped fifth of train picks epochs and "
                        "threshold); cpu-augmented: cpu with augmented training, blocks "
                        "4-5 trained (add --precision bfloat16 where the CPU has AMX)")
    p.add_argument("--scales", nargs="+", type=int,
                   help="override the budget's scales (of every table)")
    p.add_argument("--max-train", type=int, help="override the budget's train subsample "
                                                  "(0: every image)")
    p.add_argument("--max-test", type=int, help="override the budget's test subsample "
                                                 "(0: every image)")
    p.add_argument("--max-epochs", type=int, help="override the budget's epoch cap")
    p.add_argument("--group-pattern", nargs="+", metavar="[NAME=]PATTERN",
                   help="keep each patient's images in one fold: PATTERN for every dataset, "
                        "or NAME=PATTERN for the dataset folder NAME (e.g. "
                        "chest_xray=chest_xray, a key of PATIENT_PATTERNS)")
    p.add_argument("--cache-dir", default=None,
                   help="reuse activations across runs (the Keras classifiers' "
                        "frozen-prefix activations too)")
    p.add_argument("--seed", type=int, default=0, help="random seed of every part")
    p.add_argument("--fresh", action="store_true",
                   help="measure every run again (the journal of finished runs in the "
                        "output folder is set aside as journal_*.jsonl.<time>.old)")
    p.add_argument("-o", "--output", default="reproduce_results",
                   help="output folder (its journal_*.jsonl lets a killed run resume)")
    p.add_argument("--dry-run", action="store_true",
                   help="check every argument (data, weights, layers) and print the plan: "
                        "datasets, runs, fits, forward passes and an estimate of the time; "
                        "nothing is computed or written")
    _add_verbosity(p)
    p.set_defaults(func=cmd_reproduce)

    p = command("cache", "inspect, prune or clear a disk activation cache")
    p.add_argument("action", choices=["info", "clear", "prune"], help="what to do")
    p.add_argument("--dir", help="the cache directory (default: $CNNFEATURES_CACHE_DIR)")
    p.add_argument("--max-mb", type=float, help="with prune: keep at most this many MiB")
    p.set_defaults(func=cmd_cache)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a user error)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    from .backbones import WeightsUnavailableError

    if getattr(args, "quiet", False):
        args.verbose = 0
    try:
        return args.func(args)
    except (ValueError, OSError, ImportError, WeightsUnavailableError) as exc:
        # ImageLoadError, NotACacheError and unknown names are ValueErrors; missing files
        # and permissions are OSErrors: the message says what to change.
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"cnnfeatures: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cnnfeatures: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
