"""The ``cnnfeatures`` argument parser and entry point."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence

from ..version import __version__
from .commands import (
    cmd_augment,
    cmd_cache,
    cmd_describe,
    cmd_evaluate,
    cmd_explain,
    cmd_extract,
    cmd_grid,
    cmd_reproduce,
)
from .options import (
    HelpFormatter,
    add_extractor_args,
    add_network_args,
    add_verbosity,
)

__all__ = ["build_parser", "main"]


class LazyOptionsParser(argparse.ArgumentParser):
    """A sub-command parser whose options may be added when it is first used.

    ``augment``'s options come from the augmentation policy, whose module imports
    scikit-learn (about 2 s): ``cnnfeatures --help`` and the other sub-commands should not
    pay for it."""

    def __init__(self, *args, add_options=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_options = add_options

    def _complete(self) -> None:
        if self._add_options is not None:
            add_options, self._add_options = self._add_options, None
            add_options(self)

    def parse_known_args(self, args=None, namespace=None):
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._complete()
        return super().format_help()

    def format_usage(self) -> str:
        self._complete()
        return super().format_usage()


def add_augment_settings(p: argparse.ArgumentParser) -> None:
    """One option per transformation setting, from their single declaration."""
    from ..augmentation import AUGMENTATION_SETTINGS

    for name, default, _, help_text in AUGMENTATION_SETTINGS:
        flag = f"--{name.replace('_', '-')}"
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                           help=help_text)
        else:
            p.add_argument(flag, type=float, default=default, help=help_text)


def add_augment_parser(sub) -> None:
    about = "save a grid of augmented views of one image"
    p = sub.add_parser("augment", help=about, description=about, formatter_class=HelpFormatter,
                       add_options=add_augment_settings)
    p.add_argument("image", help="an image file")
    p.add_argument("-n", type=int, default=8, help="number of augmented views")
    p.add_argument("--columns", type=int, default=3, help="views per row")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("-o", "--output", default="augmentations.png", help="output PNG")
    p.set_defaults(func=cmd_augment)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="cnnfeatures", description="Pretrained CNN features for scikit-learn.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=LazyOptionsParser)

    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {__version__} (Python {platform.python_version()})")

    def command(name: str, help_text: str):
        # The help is %-formatted by argparse, the raw description is not.
        return sub.add_parser(name, help=help_text, description=help_text.replace("%%", "%"),
                              formatter_class=HelpFormatter)

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
    add_extractor_args(p)
    p.set_defaults(func=cmd_extract)

    p = command("evaluate", "extractor + linear SVM: train on one split, test on another")
    p.add_argument("root", help="dataset folder with a train and a test split")
    p.add_argument("--train-split", default="train", help="split to train on")
    p.add_argument("--test-split", default="test", help="split to score on")
    p.add_argument("--C", type=float, default=1.0, help="LinearSVC's C")
    p.add_argument("--resamples", type=int, default=1000,
                   help="bootstrap resamples of the 95%% intervals (0: none)")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    add_extractor_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = command("grid", "layer x pooling x scale grid (report Tables 1-4)")
    p.add_argument("root", help="dataset folder with a train split")
    p.add_argument("--train-split", default="train", help="split the grid is searched on")
    p.add_argument("--test-split", default="test",
                   help="also score every configuration on this split when it exists")
    p.add_argument("--group-pattern", help="group CV folds by this pattern (see describe)")
    # The same option names as extract and evaluate, each value a candidate of the grid
    # (the plural spellings of earlier versions still work).
    p.add_argument("--layer", "--layers", dest="layers", nargs="+", default=None,
                   help="candidate layers, one run each (default: the report's: the last "
                        "block and fc1/fc2 when the weights hold them, else the two last "
                        "blocks)")
    p.add_argument("--pooling", "--poolings", dest="poolings", nargs="+",
                   default=["mean", "max"], choices=["mean", "max"],
                   help="candidate poolings")
    p.add_argument("--scales", nargs="+", type=int, default=[0],
                   help="scale numbers n (each costs a forward pass of every image at side "
                        "224 + 320n)")
    p.add_argument("--cv", type=int, default=3, help="cross-validation folds")
    p.add_argument("--C", type=float, default=1.0, help="LinearSVC's C")
    p.add_argument("-o", "--output", default="grid_results", help="output folder")
    add_extractor_args(p, many=True)
    p.set_defaults(func=cmd_grid)

    add_augment_parser(sub)

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
    p.add_argument("data", nargs="*", metavar="root",
                   help="dataset folder(s) with train/ and test/ splits")
    # The option of earlier versions, kept so that their commands still run.
    p.add_argument("--data", nargs="+", dest="data_option", help=argparse.SUPPRESS)
    add_network_args(p)
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
    add_verbosity(p)
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
    from ..backbones import WeightsUnavailableError

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
