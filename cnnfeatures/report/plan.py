"""What a run of a table will do, before it runs: ``cnnfeatures reproduce --dry-run``.

A whole-data run of the report's tables takes from minutes to hours. :func:`plan_table`
checks everything such a run needs — the table, the dataset folders and their splits,
the group patterns, the backbone, the weights file (loaded) and the layers — and counts
its work from the runs' unfitted models: datasets and images, model fits, forward passes
of the network per input side, and the training epochs of the Keras classifiers. The
time estimate multiplies that work by the cost of one forward pass measured on this
machine. Nothing is fitted and nothing is written.

Counting rules (the activation cache of a reproduce run makes a forward pass of an image
at a side happen once per table, whichever run asks for it first):

* a feature extractor forwards the train and test images once per scale; behind a
  ``CLAHETransformer`` they are other images (their own passes), and an
  ``ImageAugmenter`` adds ``n_copies`` new images per training image;
* a Keras classifier forwards its frozen prefix once per image (and per fixed view), or at
  every epoch where views are drawn anew; the layers after it cost about three forward
  passes per image and epoch (forward and backward), in proportion to their share of the
  network's multiply-adds (:func:`layer_costs`). Epochs are counted at their cap, and a
  network inside a cross-validated choice trains on every fold and once more: early
  stopping only shortens a run, so the estimate is an upper bound there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .catalogue import TABLES
from .experiment import Experiment, check_group_patterns, dataset_name
from .runner import Journal
from .selection import CrossValidatedChoice, HeldOutValidation

__all__ = ["RunPlan", "TablePlan", "plan_table"]

#: A training step (forward and backward) costs about this many forward passes.
TRAINING_STEP_FORWARDS = 3


@dataclass
class RunPlan:
    """One run of a table, counted.

    Attributes
    ----------
    params : dict
        The run's parameters, as in its record.
    fits : int
        Model fits (cross-validation folds and refits included).
    forwards : dict of (str, int) to int
        Images forwarded per (input, side): ``("images", 224)``, ``("CLAHE", 544)``...
        Passes that another run of the table makes too are counted once, in
        :attr:`TablePlan.forwards`.
    training : float
        Forward passes at side 224 that the Keras classifiers' training costs
        (upper bound: epochs at their cap).
    done : bool
        Already in the journal: a rerun skips it.
    """

    params: dict
    fits: int = 1
    forwards: dict = field(default_factory=dict)
    training: float = 0.0
    done: bool = False


@dataclass
class TablePlan:
    """The work of one table on its datasets, and an estimate of its time.

    Attributes
    ----------
    table : str
    datasets : list of dict
        ``name``, ``train`` and ``test`` (image counts after the budget's subsample) and
        ``classes`` for each dataset folder.
    runs : list of RunPlan
    notes : list of str
        What the table will say about itself (subsampling, layers replaced...).
    seconds_per_forward : float
        One image's forward pass at side 224 through the whole network, measured here.
    """

    table: str
    datasets: list
    runs: list
    notes: list
    seconds_per_forward: float

    @property
    def fits(self) -> int:
        return sum(run.fits for run in self.runs if not run.done)

    @property
    def forwards(self) -> dict[tuple[str, int], int]:
        """Forward passes per (input, side) of the runs still to do, each image once."""
        total: dict[tuple[str, str, int], int] = {}
        for run in self.runs:
            if run.done:
                continue
            for (kind, side), n in run.forwards.items():
                key = (run.params.get("dataset", ""), kind, side)
                total[key] = max(total.get(key, 0), n)
        merged: dict[tuple[str, int], int] = {}
        for (_, kind, side), n in total.items():
            merged[kind, side] = merged.get((kind, side), 0) + n
        return dict(sorted(merged.items(), key=lambda item: (item[0][1], item[0][0])))

    @property
    def work(self) -> float:
        """Everything to do, in forward passes at side 224 (cost grows with the pixels)."""
        passes = sum(n * (side / 224) ** 2 for (_, side), n in self.forwards.items())
        return passes + sum(run.training for run in self.runs if not run.done)

    @property
    def estimated_minutes(self) -> float:
        return self.work * self.seconds_per_forward / 60

    def format(self) -> str:
        """The plan as lines of text (what ``--dry-run`` prints)."""
        lines = [f"table {self.table}:"]
        for d in self.datasets:
            lines.append(f"  data {d['name']}: {d['train']} train and {d['test']} test "
                         f"images, {d['classes']} classes")
        done = sum(run.done for run in self.runs)
        lines.append(f"  runs: {len(self.runs)}" + (f" ({done} done before, in the journal)"
                                                    if done else ""))
        for run in self.runs:
            mark = "done" if run.done else f"{run.fits} fit{'s' * (run.fits != 1)}"
            lines.append(f"    {_describe(run.params)}: {mark}")
        lines.append(f"  fits: {self.fits}")
        passes = ", ".join(f"{n} {kind} at {side} px" for (kind, side), n
                           in self.forwards.items()) or "none"
        lines.append(f"  forward passes: {passes}")
        training = sum(run.training for run in self.runs if not run.done)
        if training:
            lines.append(f"  training: at most {training:,.0f} forward passes at 224 px "
                         "(epochs at their cap)")
        lines.append(f"  estimate: {_duration(self.estimated_minutes)} "
                     f"({self.work:,.0f} forward passes at 224 px, "
                     f"{self.seconds_per_forward:.3g} s each on this machine)")
        for note in dict.fromkeys(self.notes):
            lines.append(f"  note: {note}")
        return "\n".join(lines)


def _describe(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _duration(minutes: float) -> str:
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 120:
        return f"{minutes:.1f} min"
    return f"{minutes / 60:.1f} h"


# --------------------------------------------------------------------------- counting


def _parts(model, preprocessing: tuple[str, ...] = (), grid: dict | None = None
           ) -> Iterator[tuple[object, tuple[str, ...], dict]]:
    """Every leaf estimator of ``model``, with what transforms its images before it and
    the parameter grid a search would try on it."""
    from imblearn.pipeline import Pipeline as ImbPipeline
    from sklearn.pipeline import FeatureUnion, Pipeline

    from ..augmentation import ImageAugmenter
    from ..preprocessing import CLAHETransformer

    grid = grid or {}
    if isinstance(model, (Pipeline, ImbPipeline)):
        for _, step in model.steps:
            yield from _parts(step, preprocessing, grid)
            if isinstance(step, CLAHETransformer):
                preprocessing = (*preprocessing, "CLAHE")
            elif isinstance(step, ImageAugmenter):
                preprocessing = (*preprocessing, f"augmented x{step.n_copies}")
    elif isinstance(model, FeatureUnion):
        for _, part in model.transformer_list:
            yield from _parts(part, preprocessing, grid)
    elif isinstance(model, CrossValidatedChoice):
        for _, candidate, candidate_grid in model.candidates:
            yield from _parts(candidate, preprocessing, candidate_grid or {})
    elif isinstance(model, HeldOutValidation):
        yield from _parts(model.estimator, preprocessing, grid)
    else:
        yield model, preprocessing, grid


def _grid_size(grid: dict | None) -> int:
    return int(np.prod([len(values) for values in grid.values()])) if grid else 1


def _fits(model, n_folds: int) -> int:
    if isinstance(model, CrossValidatedChoice):
        # Each candidate: every grid point on every fold; then the best is refit once.
        return sum(_grid_size(grid) * n_folds for _, _, grid in model.candidates) + 1
    return 1


def _extractor_forwards(extractor, preprocessing, grid, n_train: int, n_test: int
                        ) -> dict[tuple[str, int], int]:
    from ..extraction import Scales

    scales = set(Scales.of(extractor.scales))
    for key, values in grid.items():
        if key.endswith("__scales"):
            scales = {n for value in values for n in Scales.of(value, name=key)}
    kind = " + ".join(p for p in preprocessing if not p.startswith("augmented")) or "images"
    copies = sum(int(p.split("x")[1]) for p in preprocessing if p.startswith("augmented"))
    forwards = {}
    for side in Scales.of(sorted(scales)).sides:
        forwards[kind, side] = n_train + n_test
        if copies:
            forwards[f"augmented copies of {kind}", side] = copies * n_train
    return forwards


def _trained_share(model, costs: dict[str, float]) -> float:
    """Share of a forward pass's cost in the layers after the classifier's frozen
    prefix of the base (1.0: all of it trains)."""
    from ..models import FineTunedCNNClassifier

    if isinstance(model, FineTunedCNNClassifier):
        if "blocks" in model.frozen:
            return 0.0
        frozen = set(model.frozen)
        n = 0
        while f"block{n + 1}" in frozen:
            n += 1
    else:  # the hybrid network: blocks 1..frozen_blocks frozen, its own layers train
        n = int(model.frozen_blocks)
    return 1.0 - costs.get(f"block{n}_pool", 0.0) if n else 1.0


def _keras_work(model, n_train: int, n_test: int, costs: dict[str, float]
                ) -> tuple[dict, float]:
    """Forward passes (the frozen prefix once per image) and the training cost, in
    forward passes at side 224, of a Keras classifier."""
    side = int(model.input_side)
    relative = (side / 224) ** 2
    epochs = int(model.max_epochs)
    trained = _trained_share(model, costs)
    on_the_fly = model.augmentation is not None and model.augmentation_views is None
    views = 1 if model.augmentation is None else (model.augmentation_views or 1)
    per_epoch = n_train * trained * TRAINING_STEP_FORWARDS
    if on_the_fly:  # new views every epoch: the frozen prefix runs every epoch too
        return {("images", side): n_test}, epochs * (per_epoch + n_train) * relative
    # The frozen prefix runs once per image and view; the rest trains every epoch.
    return {("images", side): n_test + n_train * views}, epochs * per_epoch * relative


def _count(model, n_train: int, n_test: int, n_folds: int, costs: dict[str, float]
           ) -> RunPlan:
    from ..extraction import CNNFeatureExtractor
    from ..models import KerasImageClassifier

    plan = RunPlan(params={}, fits=_fits(model, n_folds))
    # Inside a cross-validated choice a network trains on every fold, then maybe again.
    repeats = n_folds + 1 if isinstance(model, CrossValidatedChoice) else 1
    for part, preprocessing, grid in _parts(model):
        if isinstance(part, CNNFeatureExtractor):
            found = _extractor_forwards(part, preprocessing, grid, n_train, n_test)
        elif isinstance(part, KerasImageClassifier):
            found, training = _keras_work(part, n_train, n_test, costs)
            plan.training += training * repeats
        else:
            continue
        for key, n in found.items():
            plan.forwards[key] = max(plan.forwards.get(key, 0), n)
    return plan


def layer_costs(model, side: int = 224) -> dict[str, float]:
    """Share of one forward pass's multiply-adds done up to and including each layer
    (for a square input of ``side`` pixels): weights times output positions."""
    import keras

    layers = [layer for layer in model.layers[1:]]
    shapes = keras.Model(model.input, [layer.output for layer in layers]
                         ).compute_output_shape((1, side, side, 3))
    work = []
    for layer, shape in zip(layers, shapes):
        positions = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
        kernels = sum(int(np.prod(w.shape)) for w in layer.weights if len(w.shape) > 1)
        work.append(positions * kernels)
    total = max(sum(work), 1)
    return dict(zip([layer.name for layer in layers], np.cumsum(work) / total))


# --------------------------------------------------------------------------- checks


def _network_checks(exp: Experiment) -> tuple[float, dict[str, float]]:
    """Build the network with its weights (which checks the file), check the tables'
    layers exist; time one image's forward pass at side 224 (seconds) and share its cost
    among the layers (see :func:`layer_costs`)."""
    from ..backbones import get_feature_network
    from ..devices import check_device

    net = get_feature_network(exp.backbone, exp.weights, precision=exp.precision,
                              device=check_device(exp.device))
    layers = list(exp.fixed_layers()[0])
    net.check_layers(layers)
    # Two images after a first call that traces the graph: an estimate within tens of
    # percent (a batch's size changes little per image on a CPU), in about a second.
    batch = net.preprocess(np.full((2, 224, 224, 3), 127.0, np.float32))
    read = net.reader([(net.layer_names[-1], "mean")])
    read(batch[:1])
    start = time.perf_counter()
    read(batch)
    seconds = max((time.perf_counter() - start) / len(batch), 1e-6)
    return seconds, layer_costs(net.model)


def plan_table(table: str, datasets: Sequence[str | os.PathLike[str]],
               experiment: Experiment, *, journal: str | os.PathLike[str] | Journal | None
               = None) -> TablePlan:
    """Check a run of ``table`` and count its work, without running it.

    Parameters
    ----------
    table : {"1-4", "5-7", "8-9", "10", "11", "12"}
    datasets : sequence of paths
        Folders laid out as ``<data>/train/<class>/<image>`` and ``<data>/test/...``.
    experiment : Experiment
    journal : path or Journal, optional
        The journal a real run would use: its finished runs are marked done and not
        counted.

    Returns
    -------
    TablePlan
        Its :meth:`~TablePlan.format` is what ``cnnfeatures reproduce --dry-run`` prints.

    Raises
    ------
    ValueError, OSError
        What the real run would stop on: an unknown table, backbone or layer, a missing
        split, a weights file that does not fit the backbone, a group pattern for no
        dataset.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp()) / "shapes"
    >>> for split in ("train", "test"):
    ...     for label in ("a", "b"):
    ...         (root / split / label).mkdir(parents=True)
    ...         for i in range(3):
    ...             Image.new("RGB", (32, 32)).save(root / split / label / f"{i}.png")
    >>> exp = Experiment(backbone="vgg16", weights=None, budget="quick")
    >>> plan = plan_table("1-4", [root], exp)
    >>> plan.fits, len(plan.runs)  # 2 scales x 2 poolings x block4/fc1/fc2... of vgg16
    (12, 12)
    >>> plan.forwards
    {('images', 224): 12, ('images', 544): 12}
    """
    if table not in TABLES:
        raise ValueError(f"table must be one of {list(TABLES)}, got {table!r}")
    if not datasets:
        raise ValueError("datasets: give at least one dataset folder")
    if journal is not None and not isinstance(journal, Journal):
        journal = Journal(journal)
    check_group_patterns(experiment, datasets)
    spec = TABLES[table]
    notes = list(spec.notes(experiment)) if spec.notes is not None else []
    seconds, costs = _network_checks(experiment)
    described, runs = [], []
    for data in map(os.fspath, datasets):
        train, test, load_notes = experiment.load(data)
        notes += load_notes
        name = dataset_name(data)
        described.append(dict(name=name, train=len(train.y), test=len(test.y),
                              classes=len(train.names)))
        for run in spec.runs(experiment, name, train):
            counted = _count(run.build(), len(train.y), len(test.y), experiment.budget.cv,
                             costs)
            counted.params = dict(run.params)
            if journal is not None:
                counted.done = journal.get(Journal.run_id(table, data, run, experiment)) \
                    is not None
            runs.append(counted)
    return TablePlan(table, described, runs, notes, seconds)
