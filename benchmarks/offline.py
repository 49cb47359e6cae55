"""What the benchmarks share: the checkout's neighbour ``../shared`` (data and offline
ImageNet weights) and the ``--weights`` option that defaults to its VGG-16 file."""

from __future__ import annotations

import argparse
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
VGG16_WEIGHTS = SHARED / "weights" / "vgg16_notop_imagenet.weights.h5"


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    """``--weights PATH|none``: the offline VGG-16 file when it is there, else random."""
    parser.add_argument("--weights", default=str(VGG16_WEIGHTS) if VGG16_WEIGHTS.exists()
                        else "none", help="a Keras weights file, or none (random)")


def chosen_weights(args: argparse.Namespace) -> str | None:
    return None if args.weights.lower() == "none" else args.weights
