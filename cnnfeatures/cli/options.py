"""The options several sub-commands share, and what they make (an extractor, a split)."""

from __future__ import annotations

import argparse
import ast
import functools
import os
from pathlib import Path

from ..backbones import PRECISIONS

__all__ = ["HelpFormatter", "add_extractor_args", "add_network_args", "add_verbosity",
           "find_splits", "library_default", "load_part", "make_extractor",
           "weights_option"]


def weights_option(value: str):
    return None if value.lower() == "none" else value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help with each default shown once, and descriptions kept as written.

    An option whose help already says its default, or whose default is None or False
    (nothing to show), gets no ``(default: ...)`` appended."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def add_network_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default=library_default("backbone"),
                   help="a backbone of the registry (cnnfeatures.backbones.BACKBONES: the "
                        "Keras applications, and any added with register_backbone); an "
                        "unknown name is an error that lists them")
    p.add_argument("--weights", default=library_default("weights"), type=weights_option,
                   help="'imagenet' (Keras' cache or download), the path of a Keras weights "
                        "file, or 'none' (random)")
    p.add_argument("--precision", default="float32", choices=sorted({*PRECISIONS, "int8"}),
                   help="precision of the networks, extraction and training (bfloat16: "
                        "3-5x faster on CPUs with AMX / AVX-512 BF16; features change by "
                        "under 1%%)")
    p.add_argument("--device", default=library_default("device"),
                   help="where the networks run: auto (a GPU when the backend sees one), "
                        "cpu, gpu or gpu:N")


def add_extractor_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    add_network_args(p)
    if not many:
        p.add_argument("--layer", nargs="+", default=None,
                       help="layer name(s) (default: the backbone's last pooled block, "
                            "e.g. block5_pool)")
        p.add_argument("--pooling", default=library_default("pooling"), choices=["mean", "max"],
                       help="pooling over positions")
        p.add_argument("--scales", nargs="+", type=int, default=[0],
                       help="scale numbers n (input side 224 + 320n)")
    p.add_argument("--engine", default=library_default("engine"), choices=["keras", "openvino"],
                   help="what runs the network: Keras, or OpenVINO's CPU runtime (the "
                        "openvino extra; with --precision int8 too, calibrated on the "
                        "images)")
    p.add_argument("--scale-combination", default="pool", choices=["pool", "concat"],
                   help="several scales: pool their vectors, or concatenate them")
    p.add_argument("--no-l2", action="store_true", help="skip the L2 normalisation")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images per forward pass at side 224")
    p.add_argument("--cache-dir", default=None,
                   help="directory of the activation cache, shared between runs and "
                        "processes (default: memory only, or $CNNFEATURES_CACHE_DIR)")
    add_verbosity(p)


def add_verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the results (no progress lines)")
    p.add_argument("-v", "--verbose", action="count", default=1,
                   help="progress: network builds, forward passes, runs, epochs (on by "
                        "default; -q turns it off)")


@functools.cache
def _extractor_defaults() -> dict:
    # Read from the source, not from the class: importing the extractor imports
    # scikit-learn (about 2 s), which ``--help`` should not pay for.
    source = Path(__file__).parent.parent / "extraction" / "extractor.py"
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef) and node.name == "CNNFeatureExtractor":
            init = next(f for f in node.body
                        if isinstance(f, ast.FunctionDef) and f.name == "__init__")
            names = [a.arg for a in init.args.args][-len(init.args.defaults):]
            return {n: ast.literal_eval(d) for n, d in zip(names, init.args.defaults)}
    raise LookupError(f"no CNNFeatureExtractor.__init__ in {source}")


def library_default(parameter: str):
    """``CNNFeatureExtractor``'s default of ``parameter``: the command line and the library
    share one set of defaults."""
    return _extractor_defaults()[parameter]


def make_extractor(args, **overrides):
    from ..extraction import CNNFeatureExtractor

    params = dict(
        backbone=args.backbone, weights=args.weights,
        scale_combination=args.scale_combination, l2_normalize=not args.no_l2,
        batch_size=args.batch_size, cache=args.cache_dir or True, verbose=args.verbose,
        precision=args.precision, device=args.device, engine=args.engine,
    )
    if hasattr(args, "layer"):
        # No --layer: None, which the extractor reads as the backbone's last pooled block.
        layer = args.layer[0] if args.layer and len(args.layer) == 1 else args.layer
        params.update(layer=layer, pooling=args.pooling, scales=tuple(args.scales))
    params.update(overrides)
    return CNNFeatureExtractor(**params)


def load_part(root, split, group_pattern=None):
    from ..report import load_split

    part, _ = load_split(root, split, group_pattern=group_pattern)
    return part


def find_splits(root: str) -> list[str | None]:
    """The split folders of a <root>/<split>/<class>/<image> layout, or [None] when flat."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: dataset folder not found")
    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    nested = [d for d in subdirs
              if all(os.path.isdir(os.path.join(root, d, c)) for c in os.listdir(
                  os.path.join(root, d))) and os.listdir(os.path.join(root, d))]
    return nested if nested and len(nested) == len(subdirs) else [None]
