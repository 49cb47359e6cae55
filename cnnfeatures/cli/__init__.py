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

from .parser import build_parser, main

__all__ = ["build_parser", "main"]
