"""What each sub-command does (the parser is in :mod:`~cnnfeatures.cli.parser`)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from .options import find_splits, load_part, make_extractor


def cmd_describe(args) -> int:
    from ..datasets import load_image_folder

    for split in [args.split] if args.split else find_splits(args.root):
        data = load_image_folder(args.root, split=split, group_pattern=args.group_pattern)
        counts = np.bincount(data.target, minlength=len(data.target_names))
        print(f"{data.root}: {len(data.filenames)} images, {len(data.target_names)} classes")
        for name, n in zip(data.target_names, counts):
            print(f"  {name:<24} {n:>6}")
        if data.groups is not None:
            print(f"  groups: {len(set(data.groups))} distinct")
    return 0


def cmd_extract(args) -> int:
    data = load_part(args.root, args.split, args.group_pattern)
    ext = make_extractor(args)
    start = time.perf_counter()
    if args.scheduler or args.local_cluster:
        from ..distributed import extract_distributed

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

    from ..report import evaluate_model, format_record

    train = load_part(args.root, args.train_split)
    test = load_part(args.root, args.test_split)
    if train.names != test.names:
        raise ValueError(f"classes differ between {args.train_split} ({train.names}) and "
                         f"{args.test_split} ({test.names})")
    model = make_pipeline(make_extractor(args), LinearSVC(C=args.C))
    record = evaluate_model(model, train, test, n_resamples=args.resamples)
    ext = model[0]
    print(f"{args.root}: train {len(train.X)}, test {len(test.X)} images")
    print(f"{ext.backbone} ({args.weights}) layer={'+'.join(ext.layers_)} pooling={ext.pooling} "
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

    from ..report import (
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
    train = load_part(args.root, args.train_split, args.group_pattern)
    pipe = make_pipeline(make_extractor(args, layer=layers[0], pooling=args.poolings[0]),
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

        test = load_part(args.root, test_split)
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

    from ..augmentation import AUGMENTATION_SETTINGS, ImageAugmenter, augmentation_grid

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

    from ..explain import grad_cam, layer_panel, overlay

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
    from ..cache import default_cache_dir, get_cache

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


def parse_group_patterns(values: Sequence[str] | None) -> dict[str, str]:
    """``NAME=PATTERN`` (one dataset) or ``PATTERN`` (every dataset) -> a mapping."""
    patterns = {}
    for value in values or []:
        name, sep, pattern = value.partition("=")
        if sep and name and not name.startswith(("^", "(", "dicom:")):
            patterns[name] = pattern
        else:
            patterns["*"] = value
    return patterns


def data_folders(args) -> list[str]:
    """``reproduce``'s dataset folders: given after the table, as every command takes its
    data folder, or after ``--data`` as earlier versions took them (not both)."""
    if args.data and args.data_option:
        raise ValueError("give the dataset folders once: after the table (reproduce TABLE "
                         "FOLDER...) or after --data, not both")
    folders = args.data or args.data_option
    if not folders:
        raise ValueError("reproduce needs at least one dataset folder after the table, "
                         "e.g. cnnfeatures reproduce 1-4 ../shared/data/mini_scene")
    return folders


def cmd_reproduce(args) -> int:
    from dataclasses import replace

    import pandas as pd

    from ..extraction import Scales
    from ..report import BUDGETS, TABLES, Experiment, Journal, run_table, to_markdown, write_table
    from ..report.experiment import check_group_patterns

    args.data = data_folders(args)
    for flag in ("max_train", "max_test", "max_epochs"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 0, got "
                             f"{getattr(args, flag)}")
    if args.table != "all" and args.table not in TABLES:
        raise ValueError(f"table must be one of {[*TABLES, 'all']}, got {args.table!r}")
    scales = Scales.of(args.scales, name="--scales") if args.scales else None
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
                     precision=args.precision, device=args.device,
                     cache=args.cache_dir or True,
                     checkpoint_dir=os.path.join(args.output, "checkpoints"),
                     group_patterns=parse_group_patterns(args.group_pattern),
                     verbose=args.verbose, random_state=args.seed)
    tables = list(TABLES) if args.table == "all" else [args.table]
    check_group_patterns(exp, args.data)
    if args.dry_run:
        return print_plans(tables, args, exp)
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


def print_plans(tables: Sequence[str], args, exp) -> int:
    """``reproduce --dry-run``: every check of a real run, and its work; nothing run."""
    from ..report.plan import plan_table

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
