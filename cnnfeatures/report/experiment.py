"""The settings shared by every table (:class:`Experiment`), the data they run on (a
:class:`Split` of a dataset folder) and the one evaluation of a model (:func:`evaluate_model`:
fit on train, score on test, every metric with its interval).

Which layers? With weights that hold VGG's classifier top (``"imagenet"``, or a file
saved with ``include_top=True``) the fixed-feature tables read the report's
``block5_pool``, ``fc1`` and ``fc2``; with a no-top file (such as ../shared/weights)
``fc1``/``fc2`` would be random, so the backbone's two last blocks (``block4_pool``,
``block5_pool``) are read instead and the table's note says so. Other backbones read their
registered ``pooled_layers``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .budgets import BUDGETS, Budget, budget_identity
from .metrics import evaluation_record
from .selection import HeldOutValidation, accepts_groups

__all__ = ["Experiment", "Split", "check_group_patterns", "dataset_name", "evaluate_model",
           "folds", "linear_svm", "load_split", "plain"]


@dataclass
class Split:
    """One split of a dataset: sources, labels, groups (or None) and class names."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None
    names: list


def dataset_name(root: str | os.PathLike[str]) -> str:
    """A dataset's name: its folder's name."""
    return os.path.basename(os.path.normpath(os.fspath(root)))


def _stratified_subset(y, limit: int | None, random_state: int) -> np.ndarray:
    idx = np.arange(len(y))
    if limit is None or limit >= len(y):
        return idx
    from sklearn.model_selection import train_test_split

    chosen, _ = train_test_split(idx, train_size=limit, stratify=y,
                                 random_state=random_state)
    return np.sort(chosen)


def load_split(root: str | os.PathLike[str], split: str | None, *,
               group_pattern: str | None = None, limit: int | None = None,
               random_state: int = 0) -> tuple[Split, str | None]:
    """A split of an image folder, stratified-subsampled to ``limit`` images.

    Returns the split and a note when it was subsampled.
    """
    from ..datasets import load_image_folder

    folder = load_image_folder(root, split=split, group_pattern=group_pattern)
    idx = _stratified_subset(folder.target, limit, random_state)
    note = None
    if len(idx) < len(folder.target):
        note = (f"{dataset_name(root)}: {len(idx)} of {len(folder.target)} {split} images "
                "(stratified subsample)")
    groups = None if folder.groups is None else np.asarray(folder.groups)[idx]
    return Split(np.asarray(folder.filenames)[idx], np.asarray(folder.target)[idx], groups,
                 list(folder.target_names)), note


def folds(train: Split, n_splits: int, random_state: int = 0):
    """Patient-grouped folds where groups are known, else stratified shuffled folds."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    if train.groups is not None:
        return GroupKFold(n_splits)
    return StratifiedKFold(n_splits, shuffle=True, random_state=random_state)


def _predict(model, X) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted classes and scores from one pass over X.

    The classes follow from the scores as the classifiers' own ``predict`` derives them
    (sign of a binary decision function, else the arg-max column), so the test images —
    a VLAD encoding or a Keras forward pass each — are not run twice.
    """
    classes = getattr(model, "classes_", None)
    if classes is not None:
        for method in ("decision_function", "predict_proba"):
            if hasattr(model, method):
                scores = np.asarray(getattr(model, method)(X))
                if scores.ndim == 1:
                    return classes[(scores > 0).astype(int)], scores
                return classes[np.argmax(scores, axis=1)], scores
    return model.predict(X), None


def _headline_recall(record: dict, names: Sequence[str]) -> float:
    """The report's "recall": of the positive (second) class when binary, else macro."""
    if len(names) == 2:
        return record[f"recall {names[1]}"]
    return record["balanced_accuracy"]


def evaluate_model(model, train: Split, test: Split, *, n_resamples: int = 1000,
                   random_state: int = 0, **params) -> dict:
    """Fit on train, score on test: one record with every metric and what it cost.

    ``groups`` go to ``fit`` when the model takes them (the Keras classifiers' validation
    split keeps patients whole). ``params`` are copied into the record first.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    fit_params = {"groups": train.groups} if accepts_groups(model) else {}
    model.fit(train.X, train.y, **fit_params)
    predicted, scores = _predict(model, test.X)
    record = dict(params)
    record.update(evaluation_record(test.y, predicted, scores, names=test.names,
                                    n_resamples=n_resamples, random_state=random_state))
    record["recall"] = _headline_recall(record, test.names)
    record["minutes"] = (time.perf_counter() - wall) / 60
    record["cpu_minutes"] = (time.process_time() - cpu) / 60
    return record


@dataclass
class Experiment:
    """The settings shared by every table: backbone, weights, budget, and speed knobs.

    Parameters
    ----------
    backbone : str, default="vgg19"
        The report used VGG-19 (pass ``"vgg16"`` with ../shared/weights offline).
    weights : "imagenet", path or None, default="imagenet"
    budget : Budget or {"quick", "full", "cpu"}, default="quick"
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Precision of the networks: the fixed-feature extraction (see
        :class:`CNNFeatureExtractor`) and the Keras classifiers' training.
    device : {"auto", "cpu", "gpu", "gpu:N"}, default="auto"
        Where every network runs (see :mod:`cnnfeatures.devices`); no part of a result's
        identity: a run resumed on another device goes on.
    cache : bool or path, default=True
        The extractor's activation cache (a directory reuses activations across runs).
    checkpoint_dir : path or None, default=None
        Where the Keras classifiers save their training state after every epoch, so that
        a killed run resumes in the middle of a fit (see ``checkpoint_dir`` of
        :class:`~cnnfeatures.FineTunedCNNClassifier`). It changes no result.
    model_params : dict, optional
        Extra parameters of the Keras classifiers (``input_side``, ``batch_size``...).
    group_patterns : mapping of str to str, optional
        Dataset name (its folder's name) → ``group_pattern`` of
        :func:`~cnnfeatures.load_image_folder` (a regular expression, a key of
        ``PATIENT_PATTERNS``, or ``"dicom:<Keyword>"``), so that folds and validation
        splits keep each patient's images together; ``"*"`` applies to every dataset.
        Without one, a dataset's images are taken as independent.
    random_state : int, default=0
    verbose : int, default=0
    """

    backbone: str = "vgg19"
    weights: object = "imagenet"
    budget: Budget | str = "quick"
    precision: str = "float32"
    device: str = "auto"
    cache: object = True
    checkpoint_dir: object = None
    model_params: dict = field(default_factory=dict)
    group_patterns: Mapping[str, str] = field(default_factory=dict)
    random_state: int = 0
    verbose: int = 0

    def __post_init__(self):
        if isinstance(self.budget, str):
            if self.budget not in BUDGETS:
                raise ValueError(f"budget must be one of {sorted(BUDGETS)} or a Budget, got "
                                 f"{self.budget!r}")
            self.budget = BUDGETS[self.budget]

    # -- data
    def group_pattern(self, data: str) -> str | None:
        name = dataset_name(data)
        return self.group_patterns.get(name, self.group_patterns.get("*"))

    def load(self, data: str | os.PathLike[str]) -> tuple[Split, Split, list[str]]:
        """Train and test splits of ``data`` (subsampled per the budget), and notes."""
        root = os.fspath(data)
        for split in ("train", "test"):
            if not os.path.isdir(os.path.join(root, split)):
                raise FileNotFoundError(
                    f"{root!r} has no {split}/ folder: reproduce needs the layout "
                    f"<data>/train/<class>/<image> and <data>/test/<class>/<image>")
        pattern = self.group_pattern(root)
        notes = []
        splits = []
        for split, limit in (("train", self.budget.max_train), ("test", self.budget.max_test)):
            part, note = load_split(root, split, group_pattern=pattern, limit=limit,
                                    random_state=self.random_state)
            if note:
                notes.append(f"{note}, budget {self.budget.name}")
            splits.append(part)
        return splits[0], splits[1], notes

    def folds(self, train: Split):
        return folds(train, self.budget.cv, self.random_state)

    # -- parts
    def fixed_layers(self) -> tuple[tuple[str, ...], str | None]:
        """Layers of the fixed-feature tables, and a note when they differ from the report."""
        from ..backbones import get_backbone, weights_have_top

        spec = get_backbone(self.backbone)
        if not spec.fc_layers:
            return tuple(spec.pooled_layers), None
        # A random network's fc layers are as random as the rest: read them.
        if self.weights is None or weights_have_top(self.backbone, self.weights):
            return (spec.last_block_pool, *spec.fc_layers[:2]), None
        blocks = spec.block_pools[-2:]
        return blocks, (
            "fc1/fc2 not read: the weights file has no classifier top, so they would be "
            f"random; {' and '.join(blocks)} are read instead")

    def feature_layer(self) -> str:
        """The one fixed-feature layer of Table 11 and of the VLAD/pooled baselines."""
        from ..backbones import get_backbone

        layers, _ = self.fixed_layers()
        last = get_backbone(self.backbone).last_block_pool
        return last if last in layers else layers[-1]

    def extractor(self, **params):
        from ..extraction import CNNFeatureExtractor

        return CNNFeatureExtractor(backbone=self.backbone, weights=self.weights,
                                   precision=self.precision, device=self.device,
                                   cache=self.cache, verbose=self.verbose, **params)

    def pooled_pipeline(self, layer: str, pooling: str, scales=(0,)):
        """Fixed features + linear SVM (Tables 1–4, 5–7's baseline, 11, 12)."""
        from sklearn.pipeline import make_pipeline

        return make_pipeline(self.extractor(layer=layer, pooling=pooling, scales=scales),
                             linear_svm())

    def keras_params(self, frozen_base: bool, *, views: bool | None = None) -> dict:
        """The Keras classifiers' parameters under this budget. ``frozen_base``: the
        pretrained part is frozen (the epoch cap and learning rate of new layers);
        ``views``: with the budget's augmentation, fixed views whose frozen prefix is
        cached (default: where the base is frozen) rather than new views every epoch."""
        b = self.budget
        rate = b.learning_rate if frozen_base else (b.base_learning_rate or b.learning_rate)
        augmentation = {}
        if b.augmentation is not None:
            fixed = frozen_base if views is None else views
            augmentation = dict(augmentation=b.augmentation,
                                augmentation_views=b.augmentation_views if fixed else None)
        params = dict(backbone=self.backbone, weights=self.weights, **augmentation,
                      learning_rate=rate, patience=b.patience,
                      max_epochs=b.max_epochs if frozen_base else b.base_epochs,
                      class_weight=b.class_weight, random_state=self.random_state,
                      precision=self.precision, device=self.device,
                      checkpoint_dir=self.checkpoint_dir,
                      # A cache directory holds the frozen prefixes' activations too.
                      cache_frozen=(self.cache if isinstance(self.cache, (str, os.PathLike))
                                    else True))
        return {**params, **self.model_params}

    def keras_model(self, estimator):
        """A Keras classifier as the budget validates it: held out per
        ``validation_fraction`` (see :class:`HeldOutValidation`), else as it is."""
        if self.budget.validation_fraction is None:
            return estimator
        return HeldOutValidation(estimator, self.budget.validation_fraction,
                                 random_state=self.random_state)

    def base_frozen(self, frozen: tuple[str, ...]) -> tuple[str, ...]:
        """``frozen`` plus the blocks ``trainable_blocks`` keeps fixed when ``frozen``
        leaves the base trainable (all blocks but the last ``trainable_blocks``)."""
        from ..backbones import get_backbone

        keep = self.budget.trainable_blocks
        if keep is None or "blocks" in frozen:
            return tuple(frozen)
        blocks = [pool.split("_")[0] for pool in get_backbone(self.backbone).block_pools]
        return (*blocks[: max(len(blocks) - keep, 0)], *frozen)

    def identity(self) -> dict:
        """What makes two runs of one table the same measurement (for the journal)."""
        from ..backbones import weights_fingerprint

        weights = None if self.weights is None else weights_fingerprint(self.weights)
        identity = {"backbone": self.backbone, "weights": weights,
                    "budget": budget_identity(self.budget), "precision": self.precision,
                    "model_params": plain(self.model_params),
                    "group_patterns": dict(self.group_patterns),
                    "random_state": self.random_state}
        if self.budget.validation_fraction is not None:
            # How HeldOutValidation picks a threshold among equal best ones: runs journaled
            # when it took the lowest of them (before 2026-12) are measured again.
            identity["held-out threshold"] = "centre of the best"
        return identity

    def evaluate(self, model, train: Split, test: Split, **params) -> dict:
        """Fit on train, score on test; one record with every metric and the cost."""
        return evaluate_model(model, train, test, n_resamples=self.budget.n_resamples,
                              random_state=self.random_state, **params)


def plain(value):
    """JSON-able form of parameters (tuples as lists, paths and objects as text)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def linear_svm():
    """The linear SVM every fixed-feature pipeline of the tables ends in."""
    from sklearn.svm import LinearSVC

    return LinearSVC()


def check_group_patterns(exp: Experiment, datasets: Sequence[str | os.PathLike[str]]
                         ) -> None:
    """A pattern named for a dataset that is not among ``datasets`` would apply to none:
    a ValueError naming it and the datasets given."""
    names = [dataset_name(d) for d in datasets]
    unknown = sorted(set(exp.group_patterns) - set(names) - {"*"})
    if unknown:
        raise ValueError(f"group pattern for {', '.join(map(repr, unknown))}: no such dataset "
                         f"among the data folders {names} (NAME=PATTERN names a folder)")
