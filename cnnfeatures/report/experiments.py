"""The report's comparisons as data, and the one runner that measures them.

A table is a :class:`Table`: for each dataset, the list of :class:`Run` s it measures (each
a set of parameters and a way to build a fresh model) and the layout that turns their
records into the report's table. :func:`run_table` trains each run on a dataset's
``train/`` split, scores it on ``test/`` (see :func:`evaluate_model`), and lays the records
out. With a journal file, every finished run is written down at once and a rerun skips it:
a long run that was killed picks up where it stopped.

A :class:`Budget` bounds the work: ``BUDGETS["quick"]`` finishes each table on a
../shared/data set within minutes on 2 CPU cores (stratified subsamples, fewer scales and
epochs); ``BUDGETS["full"]`` follows the report's settings (whole splits, scales 0–2, up to
300 epochs); ``BUDGETS["cpu"]`` runs the whole splits too, with the trained tables cut to
what a CPU affords in hours (only the last block of the base trains; see :class:`Budget`);
``BUDGETS["cpu-augmented"]`` adds the report's augmentation to the trained networks, with
blocks 4–5 training (hours with ``precision="bfloat16"`` on a CPU with AMX).

Which layers? With weights that hold VGG's classifier top (``"imagenet"``, or a file
saved with ``include_top=True``) the fixed-feature tables read the report's
``block5_pool``, ``fc1`` and ``fc2``; with a no-top file (such as ../shared/weights)
``fc1``/``fc2`` would be random, so the backbone's two last blocks (``block4_pool``,
``block5_pool``) are read instead and the table's note says so. Other backbones read their
registered ``pooled_layers``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.metaestimators import available_if

from ..augmentation import AugmentationPolicy
from .metrics import evaluation_record
from .tables import best_table, dataset_table, frozen_table, scale_table, vlad_table

__all__ = [
    "BUDGETS",
    "Budget",
    "CrossValidatedChoice",
    "Experiment",
    "HeldOutValidation",
    "Journal",
    "centre_of_best",
    "Run",
    "Split",
    "TABLES",
    "Table",
    "TableResult",
    "evaluate_model",
    "folds",
    "keras_description",
    "load_split",
    "quick_budget",
    "run_table",
]


@dataclass(frozen=True)
class Budget:
    """How much of the report's protocol to run.

    Attributes
    ----------
    name : str
    max_train, max_test : int or None
        Stratified subsample sizes of the train and test splits (None: all images).
    scales : tuple of int
        Scales of Tables 1–4 (and of the fixed-feature search of Table 12).
    vlad_scales : tuple of int
        Scales of the local descriptors of Tables 5–7.
    ks : tuple of int
        VLAD vocabulary sizes (Tables 5–7).
    pca_components : int
        PCA dimension before k-means (the report: 128).
    max_epochs : int
        Epoch cap of the Keras classifiers whose convolutional base is frozen.
    base_epochs : int
        Epoch cap when the convolutional base trains (costly on a CPU).
    learning_rate : float
    patience : int
        Early-stopping patience (epochs).
    copies : int
        Augmented copies per training image (Table 11).
    cv : int
        Folds of the cross-validation that picks Table 12's method.
    n_resamples : int
        Bootstrap resamples of every confidence interval.
    class_weight : "balanced" or None
        Loss weighting of the Keras classifiers (Tables 8–10).
    validation_fraction : float or None
        Share of the training images held out (patients kept whole) to decide the Keras
        classifiers' epochs and, with two classes, their decision threshold (see
        :class:`HeldOutValidation`); None: each classifier's own early-stopping split and
        the arg-max class.
    trainable_blocks : int or None
        Where a row of Tables 8–10 trains the convolutional base, only its last
        ``trainable_blocks`` blocks train (the rest is frozen, so its activations are
        computed once per image); None: the whole base, as the report did.
    base_learning_rate : float or None
        Adam's rate for the whole fit (new head included) of the rows of Tables 8–10 that
        train pretrained blocks; None: ``learning_rate``, the rate of the rows where only
        new layers train. A rate that suits a fresh head wrecks ImageNet filters in the
        first epoch.
    augmentation : AugmentationPolicy or None
        Random views of the training images for the Keras classifiers of Tables 8–10
        (the report's §4.6 applied to its trained networks): drawn anew at every epoch
        where the network trains beyond a frozen base, or ``augmentation_views`` views of
        each image drawn once where the whole base is frozen (their prefix computed once).
        None: no augmentation.
    augmentation_views : int
        Views per training image where they are drawn once.
    """

    name: str
    max_train: int | None
    max_test: int | None
    scales: tuple[int, ...]
    vlad_scales: tuple[int, ...]
    ks: tuple[int, ...] = (64, 128)
    pca_components: int | None = 128
    max_epochs: int = 5
    base_epochs: int = 1
    learning_rate: float = 1e-4
    patience: int = 3
    copies: int = 2
    cv: int = 3
    n_resamples: int = 1000
    class_weight: str | None = None
    validation_fraction: float | None = None
    trainable_blocks: int | None = None
    base_learning_rate: float | None = None
    augmentation: AugmentationPolicy | None = None
    augmentation_views: int = 4


BUDGETS: dict[str, Budget] = {
    "quick": Budget("quick", max_train=120, max_test=120, scales=(0, 1), vlad_scales=(0, 1)),
    "full": Budget("full", max_train=None, max_test=None, scales=(0, 1, 2),
                   vlad_scales=(0, 1, 2), max_epochs=300, base_epochs=300,
                   learning_rate=1e-6, patience=10, copies=5, cv=5),
    # The whole data on a CPU: the base trains only in its last block, over a frozen
    # prefix computed once per image; a patient-grouped fifth of train picks the epochs
    # and (binary) the threshold; classes weighted (chest X-rays are 1:2.9 in train).
    "cpu": Budget("cpu", max_train=None, max_test=None, scales=(0, 1, 2),
                  vlad_scales=(0, 1, 2), max_epochs=40, base_epochs=12,
                  learning_rate=1e-4, patience=4, copies=5, cv=5, class_weight="balanced",
                  validation_fraction=0.2, trainable_blocks=1),
    # The cpu budget with the report's augmentation (§4.6) on its trained networks, which
    # bfloat16 training makes affordable (--precision bfloat16 on AMX / AVX-512 BF16):
    # new views at every epoch where blocks 4-5 (at 1e-5, not to wreck their ImageNet
    # filters) or the hybrid's separable blocks train; 4 fixed views, their prefix cached,
    # where the whole base is frozen.
    "cpu-augmented": Budget(
        "cpu-augmented", max_train=None, max_test=None, scales=(0, 1, 2),
        vlad_scales=(0, 1, 2), max_epochs=40, base_epochs=12, learning_rate=1e-4,
        base_learning_rate=1e-5, patience=3, copies=5, cv=5, class_weight="balanced",
        validation_fraction=0.2, trainable_blocks=2, augmentation_views=4,
        augmentation=AugmentationPolicy(rotation=10, zoom=0.15, shift=0.1, brightness=0.15,
                                        contrast=0.2, gamma=0.2)),
}


def quick_budget(**changes) -> Budget:
    """The quick budget with some fields changed (``quick_budget(max_train=40)``)."""
    return replace(BUDGETS["quick"], **changes)


@dataclass
class TableResult:
    """What :func:`run_table` measured.

    Attributes
    ----------
    tables : dict of str to pandas.DataFrame
        Named tables in the report's layout (e.g. ``"table_1-4_mini_scene"``).
    records : list of dict
        One per run: its parameters, every metric of
        :func:`~cnnfeatures.report.evaluation_record`, ``minutes`` (wall) and
        ``cpu_minutes`` (process CPU time).
    notes : list of str
        What the reader must know (subsampling, layers replaced, random fc weights).
    """

    tables: dict = field(default_factory=dict)
    records: list = field(default_factory=list)
    notes: list = field(default_factory=list)


@dataclass
class Split:
    """One split of a dataset: sources, labels, groups (or None) and class names."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None
    names: list


# --------------------------------------------------------------------------- data


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


# --------------------------------------------------------------------------- evaluation


def _accepts_groups(model) -> bool:
    return "groups" in inspect.signature(model.fit).parameters


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
    fit_params = {"groups": train.groups} if _accepts_groups(model) else {}
    model.fit(train.X, train.y, **fit_params)
    predicted, scores = _predict(model, test.X)
    record = dict(params)
    record.update(evaluation_record(test.y, predicted, scores, names=test.names,
                                    n_resamples=n_resamples, random_state=random_state))
    record["recall"] = _headline_recall(record, test.names)
    record["minutes"] = (time.perf_counter() - wall) / 60
    record["cpu_minutes"] = (time.process_time() - cpu) / 60
    return record


# --------------------------------------------------------------------------- experiment


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
                                   precision=self.precision, cache=self.cache,
                                   verbose=self.verbose, **params)

    def pooled_pipeline(self, layer: str, pooling: str, scales=(0,)):
        """Fixed features + linear SVM (Tables 1–4, 5–7's baseline, 11, 12)."""
        from sklearn.pipeline import make_pipeline

        return make_pipeline(self.extractor(layer=layer, pooling=pooling, scales=scales),
                             _linear())

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
                      precision=self.precision, checkpoint_dir=self.checkpoint_dir,
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
                    "budget": _budget_identity(self.budget), "precision": self.precision,
                    "model_params": _plain(self.model_params),
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


# Budget fields added after runs were journaled: at their defaults they change nothing
# those runs measured, so they stay out of the identity and the journals stay valid.
_LATER_BUDGET_FIELDS = ("base_learning_rate", "augmentation", "augmentation_views")


def _budget_identity(budget: Budget) -> dict:
    identity = asdict(budget)
    defaults = {f.name: f.default for f in fields(Budget)}
    unaugmented = budget.augmentation is None  # then the number of views means nothing
    for name in _LATER_BUDGET_FIELDS:
        if identity[name] == defaults[name] or (name == "augmentation_views" and unaugmented):
            del identity[name]
    return identity


def _plain(value):
    """JSON-able form of parameters (tuples as lists, paths and objects as text)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _linear():
    from sklearn.svm import LinearSVC

    return LinearSVC()


# --------------------------------------------------------------------------- model selection


class CrossValidatedChoice(ClassifierMixin, BaseEstimator):
    """Pick, by cross-validation on the training data only, one of several candidates.

    Each candidate is ``(name, estimator, grid)``: with a parameter grid, a
    ``GridSearchCV`` chooses its parameters first (``name`` may then hold ``{param}``
    fields, filled with the chosen values); the best candidate by mean CV score is refit
    on all the training data. Table 12 of the report is this choice, made per dataset.

    Parameters
    ----------
    candidates : list of (str, estimator, dict or None)
    cv : int or cross-validation generator
    name_format : callable, optional
        ``name_format(name, best_params) -> str`` for the chosen method's name.

    Attributes
    ----------
    method_ : str
    cv_score_ : float
    cv_scores_ : dict of str to float
        Every candidate's CV score.
    best_estimator_ : estimator
    classes_ : ndarray
    """

    def __init__(self, candidates, cv=3, name_format=None):
        self.candidates = candidates
        self.cv = cv
        self.name_format = name_format

    def fit(self, X, y, groups=None):
        from sklearn.model_selection import GridSearchCV, cross_val_score

        scored = []
        for name, estimator, grid in self.candidates:
            if grid:
                search = GridSearchCV(estimator, grid, cv=self.cv, refit=False)
                search.fit(X, y, groups=groups)
                params, score = search.best_params_, float(search.best_score_)
                if self.name_format is not None:
                    name = self.name_format(name, params)
            else:
                params = {}
                score = float(np.mean(cross_val_score(estimator, X, y, groups=groups,
                                                      cv=self.cv)))
            scored.append((score, name, estimator, params))
        self.cv_scores_ = {name: score for score, name, _, _ in scored}
        score, name, estimator, params = max(scored, key=lambda item: item[0])
        best = clone(estimator).set_params(**params)
        fit_params = {"groups": groups} if _accepts_groups(best) else {}
        self.best_estimator_ = best.fit(X, y, **fit_params)
        self.method_, self.cv_score_ = name, score
        self.classes_ = self.best_estimator_.classes_
        return self

    def predict(self, X):
        return self.best_estimator_.predict(X)

    @available_if(lambda self: hasattr(self.best_estimator_, "decision_function"))
    def decision_function(self, X):
        return self.best_estimator_.decision_function(X)

    @available_if(lambda self: hasattr(self.best_estimator_, "predict_proba"))
    def predict_proba(self, X):
        return self.best_estimator_.predict_proba(X)


def centre_of_best(thresholds, scores) -> float:
    """The middle one of the thresholds whose score is the best (the lower middle one of
    an even number).

    A network that nearly separates its held-out images scores the same at every threshold
    between the two classes' probabilities; scikit-learn's ``TunedThresholdClassifierCV``
    then takes the lowest of them, right against one class (the chest X-rays' frozen base
    got 0.02: a NORMAL image a little less clear-cut than those held out crosses it). The
    centre leaves the most room on both sides. Thresholds are in ascending order.

    Examples
    --------
    >>> centre_of_best([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.8, 0.9, 0.9, 0.9, 0.9, 0.7])
    0.3
    """
    thresholds, scores = np.asarray(thresholds, float), np.asarray(scores, float)
    best = np.flatnonzero(np.isclose(scores, scores.max(), rtol=0, atol=1e-12))
    return float(thresholds[best[(len(best) - 1) // 2]])


class HeldOutValidation(ClassifierMixin, BaseEstimator):
    """Train a Keras classifier on part of the training data; the held-out rest decides.

    A share of the training images (patients kept whole when ``groups`` are given; up to 10
    draws until both parts hold every class) is set aside as the classifier's
    ``validation_data``: it stops training at the epoch of the
    lowest validation loss and, with two classes, picks the decision threshold that
    maximises ``scoring`` there (scikit-learn's ``TunedThresholdClassifierCV``; where
    several thresholds score best, the centre of them, see :func:`centre_of_best`).
    Nothing is chosen on a test set. The validation scores are kept as the measure of the choice.

    Parameters
    ----------
    estimator : KerasImageClassifier
        A classifier whose ``fit`` takes ``validation_data``.
    validation_fraction : float, default=0.2
    scoring : str, default="balanced_accuracy"
        What the threshold maximises on the validation images.
    random_state : int, default=0

    Attributes
    ----------
    estimator_ : KerasImageClassifier
        The classifier trained on the rest of the training data.
    threshold_ : float or None
        Probability of the second class from which it is predicted (None: arg-max).
    validation_scores_ : dict
        ``accuracy``, ``balanced_accuracy`` and ``roc_auc`` on the validation images,
        with the chosen threshold (empty when no validation part could be held out: too
        few images, and a :class:`~cnnfeatures.models.SmallDataWarning` says so).
    classes_ : ndarray

    Examples
    --------
    >>> from cnnfeatures import FineTunedCNNClassifier
    >>> model = HeldOutValidation(FineTunedCNNClassifier(weights=None, max_epochs=3))
    >>> model.fit(paths, labels, groups=patients).threshold_  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "scoring": [str],
        "random_state": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, estimator, validation_fraction=0.2, scoring="balanced_accuracy",
                 random_state=0):
        self.estimator = estimator
        self.validation_fraction = validation_fraction
        self.scoring = scoring
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, groups=None):
        from sklearn.model_selection import TunedThresholdClassifierCV

        from ..images import check_image_sources

        sources = check_image_sources(X)
        y = np.asarray(y)
        split = self._split(y, groups)
        if split is None:
            from ..models import SmallDataWarning

            warnings.warn(
                f"cannot hold out {self.validation_fraction} of {len(y)} images with every "
                "class on both sides: trained on all of them, arg-max decisions, no "
                "validation scores", SmallDataWarning, stacklevel=2)
            self.estimator_ = clone(self.estimator).fit(sources, y)
            self.classes_ = self.estimator_.classes_
            self.threshold_, self.validation_scores_ = None, {}
            return self
        train, val = split
        X_val, y_val = [sources[i] for i in val], y[val]
        self.estimator_ = clone(self.estimator).fit([sources[i] for i in train], y[train],
                                                    validation_data=(X_val, y_val))
        self.classes_ = self.estimator_.classes_
        self.threshold_ = None
        if len(self.classes_) == 2:
            tuned = TunedThresholdClassifierCV(self.estimator_, scoring=self.scoring,
                                               cv="prefit", refit=False,
                                               store_cv_results=True).fit(X_val, y_val)
            self.threshold_ = centre_of_best(tuned.cv_results_["thresholds"],
                                             tuned.cv_results_["scores"])
        codes = np.searchsorted(self.classes_, y_val)
        scores = self._scores(X_val)
        predicted = np.searchsorted(self.classes_, self._classes_from(scores))
        record = evaluation_record(codes, predicted, scores, n_resamples=0)
        self.validation_scores_ = {k: record[k] for k in ("accuracy", "balanced_accuracy",
                                                          "roc_auc") if k in record}
        return self

    def _split(self, y, groups, attempts: int = 10):
        """Train and validation indices with every class on both sides (patients whole
        when ``groups`` are given), or None when ``attempts`` draws find none."""
        from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit

        classes = set(np.unique(y).tolist())
        for attempt in range(attempts):
            seed = self.random_state + attempt
            if groups is not None:
                splitter = GroupShuffleSplit(1, test_size=self.validation_fraction,
                                             random_state=seed)
            else:
                splitter = StratifiedShuffleSplit(1, test_size=self.validation_fraction,
                                                  random_state=seed)
            try:
                train, val = next(splitter.split(np.zeros(len(y)), y, groups))
            except ValueError:  # too few images of a class to stratify
                return None
            if set(y[train].tolist()) == set(y[val].tolist()) == classes:
                return train, val
        return None

    def _scores(self, X):
        proba = self.estimator_.predict_proba(X)
        return proba if self.threshold_ is None else proba[:, 1] - self.threshold_

    def _classes_from(self, scores):
        if scores.ndim == 1:  # the sign rule of every binary decision_function
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    def predict(self, X):
        return self._classes_from(self._scores(X))

    def predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    @available_if(lambda self: len(getattr(self, "classes_", ())) == 2)
    def decision_function(self, X):
        """Probability of the second class minus the threshold (positive: predicted)."""
        return self._scores(X)


# --------------------------------------------------------------------------- tables as data


@dataclass(frozen=True)
class Run:
    """One measured configuration of a table.

    Attributes
    ----------
    params : dict
        What identifies the run in its table (dataset, layer, pooling, k, method...).
    build : callable
        Returns a fresh, unfitted model.
    inputs : callable, optional
        ``inputs(train, test) -> (train, test)``: a transformation computed once and
        shared by every run with the same ``inputs_key`` (VLAD's local descriptors, shared
        by every k); its cost is added to each of those runs' records.
    inputs_key : str, optional
    describe : callable, optional
        ``describe(fitted model) -> dict``: extra columns read from the fitted model
        (epochs, trainable parameters, the method Table 12 chose).
    """

    params: dict
    build: Callable[[], object]
    inputs: Callable[[Split, Split], tuple[Split, Split]] | None = None
    inputs_key: str | None = None
    describe: Callable[[object], dict] | None = None


@dataclass(frozen=True)
class Table:
    """A table of the report: its runs per dataset and the layout of their records.

    Attributes
    ----------
    key : str
        The name ``cnnfeatures reproduce`` takes ("1-4", "5-7", ...).
    runs : callable
        ``runs(experiment, dataset name, train split) -> list of Run``.
    layout : callable
        ``layout(records, dataset names) -> dict of name to DataFrame``.
    notes : callable, optional
        ``notes(experiment) -> list of str``; may raise when the table cannot be run with
        the experiment's backbone.
    """

    key: str
    runs: Callable[[Experiment, str, Split], list[Run]]
    layout: Callable[[list[dict], list[str]], dict]
    notes: Callable[[Experiment], list[str]] | None = None


def _of(records, name):
    return [r for r in records if r["dataset"] == name]


def _fixed_notes(exp: Experiment) -> list[str]:
    return [note for note in [exp.fixed_layers()[1]] if note]


# Tables 1-4 ------------------------------------------------------------------

def _scale_runs(exp: Experiment, name: str, train: Split) -> list[Run]:
    layers, _ = exp.fixed_layers()
    return [Run(dict(dataset=name, scale=scale, pooling=pooling, layer=layer),
                partial(exp.pooled_pipeline, layer, pooling, (scale,)))
            for scale in exp.budget.scales for pooling in ("mean", "max") for layer in layers]


def _scale_layout(records, names):
    return {f"table_1-4_{name}": scale_table(_of(records, name), value="accuracy")
            for name in names}


# Tables 5-7 ------------------------------------------------------------------

def _local_descriptors(exp: Experiment, layer: str, train: Split, test: Split):
    ext = exp.extractor(layer=layer, pooling=None, scales=exp.budget.vlad_scales)
    return (Split(ext.fit_transform(train.X), train.y, train.groups, train.names),
            Split(ext.transform(test.X), test.y, None, test.names))


def _vlad_pipeline(exp: Experiment, k: int):
    from sklearn.pipeline import make_pipeline

    from ..vlad import VLADEncoder

    return make_pipeline(VLADEncoder(k=k, pca_components=exp.budget.pca_components,
                                     random_state=exp.random_state), _linear())


def _vlad_runs(exp: Experiment, name: str, train: Split) -> list[Run]:
    b = exp.budget
    runs = []
    for layer in exp.fixed_layers()[0]:
        # Local descriptors once per layer; every k reuses them (no new forward pass).
        shared = dict(inputs=partial(_local_descriptors, exp, layer),
                      inputs_key=f"local descriptors {layer} {b.vlad_scales}")
        runs += [Run(dict(dataset=name, layer=layer, k=k, scales=str(b.vlad_scales)),
                     partial(_vlad_pipeline, exp, k), **shared) for k in b.ks]
        # The report's "previous best" baseline: plain mean-pooled features at scale 0.
        runs.append(Run(dict(dataset=name, layer=layer, k="pooled", scales="(0,)"),
                        partial(exp.pooled_pipeline, layer, "mean")))
    return runs


def _vlad_layout(records, names):
    return {f"table_5-7_{name}": vlad_table(_of(records, name)) for name in names}


# Tables 8-9 ------------------------------------------------------------------

def _frozen_rows(exp: Experiment) -> tuple[tuple[str, ...], ...]:
    """Table 8's frozen sets, in the report's order, named by the backbone's spec."""
    from ..backbones import get_backbone

    spec = get_backbone(exp.backbone)
    fc1, fc2 = spec.fc_layers[:2]
    return ((), ("blocks",), ("blocks", fc1), ("blocks", fc2), (fc1,), (fc2,))


def keras_description(model) -> dict:
    """What a fitted Keras classifier (or a :class:`HeldOutValidation` around one) adds
    to its record: epochs (best/run), trainable parameters and the learning curves (loss
    and accuracy per epoch, training and validation); with a held-out validation, its
    scores and the threshold it chose."""
    clf = getattr(model, "estimator_", model)
    out = {"epochs": f"{clf.best_epoch_}/{clf.n_epochs_}",
           "trainable parameters": clf.count_params(trainable_only=True),
           "history": {k: [round(v, 4) for v in values]
                       for k, values in clf.history_.items()}}
    if isinstance(model, HeldOutValidation):
        out.update({f"validation {k}": v for k, v in model.validation_scores_.items()})
        out["threshold"] = model.threshold_
    return out


def _keras_run(exp: Experiment, params: dict, estimator, *args, **kwargs) -> Run:
    """A run of a Keras classifier, validated as the budget says (see ``keras_model``)."""
    return Run(params, lambda: exp.keras_model(estimator(*args, **kwargs)),
               describe=keras_description)


def _frozen_label(frozen: tuple[str, ...]) -> str:
    """``("block1", ..., "block4", "fc1")`` → ``"block1-4, fc1"``."""
    blocks = [part for part in frozen if part.startswith("block") and part[5:].isdigit()]
    rest = [part for part in frozen if part not in blocks]
    if len(blocks) > 1:
        blocks = [f"{blocks[0]}-{blocks[-1][5:]}"]
    return ", ".join(blocks + rest) or "-"


def _finetune_runs(exp: Experiment, name: str, train: Split) -> list[Run]:
    from ..models import FineTunedCNNClassifier

    runs = []
    for row in _frozen_rows(exp):
        frozen = exp.base_frozen(row)
        runs.append(_keras_run(exp, dict(dataset=name, frozen=_frozen_label(frozen)),
                               FineTunedCNNClassifier, head="original", frozen=frozen,
                               **exp.keras_params("blocks" in frozen)))
    return runs


def _finetune_notes(exp: Experiment) -> list[str]:
    from ..backbones import get_backbone

    if len(get_backbone(exp.backbone).fc_layers) < 2:
        raise ValueError(f"Tables 8-9 freeze VGG's fc1/fc2: backbone {exp.backbone!r} has "
                         "no fc layers; use vgg16 or vgg19")
    if exp.fixed_layers()[1]:
        return ["fc1/fc2 start random: the weights file has no classifier top (the report "
                "froze ImageNet-trained fc layers)"]
    return []


def _finetune_layout(records, names):
    tables = {f"table_8_{name}": frozen_table(_of(records, name)) for name in names}
    # Table 9 is the report's chosen row: blocks and fc1 frozen (fc2 and the softmax train).
    chosen = [dict(r, method="fine-tuned VGG (fc2 trainable)") for r in records
              if r["frozen"].endswith("blocks, fc1")]
    tables["table_9"] = dataset_table(chosen)
    return tables


# Table 10 ---------------------------------------------------------------------

def _hybrid_runs(exp: Experiment, name: str, train: Split) -> list[Run]:
    from ..models import FineTunedCNNClassifier, HybridSepConvClassifier

    # Cheapest first, so that a long run has its first figures early.
    runs = [_keras_run(exp, dict(dataset=name, method="fine-tuned VGG (frozen base)"),
                       FineTunedCNNClassifier, frozen=("blocks",), **exp.keras_params(True))]
    if exp.budget.trainable_blocks is not None:  # the fine-tuning a CPU budget affords
        frozen = exp.base_frozen(())
        runs.append(_keras_run(
            exp, dict(dataset=name, method=f"fine-tuned VGG ({_frozen_label(frozen)} "
                                           "frozen)"),
            FineTunedCNNClassifier, frozen=frozen, **exp.keras_params(False)))
    # Augmented on the fly: fixed views would cache a block3_pool prefix per view (4 GB
    # for each view of the chest X-rays).
    runs.append(_keras_run(exp, dict(dataset=name, method="hybrid SepConv CNN"),
                           HybridSepConvClassifier, **exp.keras_params(True, views=False)))
    return runs


def _dataset_layout(key):
    return lambda records, names: {key: dataset_table(records)}


# Table 11 ---------------------------------------------------------------------

def _augmentation_runs(exp: Experiment, name: str, train: Split) -> list[Run]:
    """Fixed features without and with augmentation, and with CLAHE (``block5_pool`` mean
    at scale 0, linear SVM). Augmented copies are drawn inside an imbalanced-learn
    pipeline, so only training images are augmented."""
    from imblearn.pipeline import make_pipeline as make_imb_pipeline
    from sklearn.pipeline import make_pipeline, make_union

    from ..augmentation import ImageAugmenter
    from ..preprocessing import CLAHETransformer

    b = exp.budget
    layer = exp.feature_layer()

    def features():
        return exp.extractor(layer=layer, pooling="mean")

    def augmented():
        augmenter = ImageAugmenter(n_copies=b.copies, rotation=20, zoom=0.1, shift=0.05,
                                   brightness=0.1, contrast=0.1,
                                   random_state=exp.random_state)
        return make_imb_pipeline(augmenter, features(), _linear())

    builds = {
        "without augmentation": lambda: make_pipeline(features(), _linear()),
        f"with augmentation (x{b.copies + 1})": augmented,
        "CLAHE": lambda: make_pipeline(CLAHETransformer(), features(), _linear()),
        "raw + CLAHE": lambda: make_pipeline(
            make_union(features(), make_pipeline(CLAHETransformer(), features())), _linear()),
    }
    return [Run(dict(dataset=name, method=method, layer=layer), build)
            for method, build in builds.items()]


# Table 12 ---------------------------------------------------------------------

def _fixed_feature_name(name: str, params: dict) -> str:
    p = {k.split("__")[1]: v for k, v in params.items()}
    weighting = ", balanced" if p["class_weight"] else ""
    return (f"{p['layer']} {p['pooling']} pooling, N={p['scales'][0]} + linear "
            f"SVM{weighting}")


def _best_choice(exp: Experiment, train: Split) -> CrossValidatedChoice:
    """Candidates: the fixed-feature pipeline a grid over layer × pooling × scale ×
    class weighting picks; with the whole data (``full`` or ``cpu``), also VLAD (k=64 on
    the last block), the fine-tuned VGG (frozen base) and the hybrid network."""
    from sklearn.pipeline import make_pipeline

    from ..models import FineTunedCNNClassifier, HybridSepConvClassifier
    from ..vlad import VLADEncoder

    layers, _ = exp.fixed_layers()
    grid = {"cnnfeatureextractor__layer": list(layers),
            "cnnfeatureextractor__pooling": ["mean", "max"],
            "cnnfeatureextractor__scales": [(n,) for n in exp.budget.scales],
            # Free once features are cached, and it matters on imbalanced sets.
            "linearsvc__class_weight": [None, "balanced"]}
    candidates = [("fixed features", exp.pooled_pipeline(layers[-1], "mean"), grid)]
    if exp.budget.name.rstrip("*") in ("full", "cpu"):
        layer = exp.feature_layer()
        vlad = make_pipeline(
            exp.extractor(layer=layer, pooling=None, scales=exp.budget.vlad_scales),
            VLADEncoder(k=64, random_state=exp.random_state), _linear())
        candidates += [
            (f"VLAD k=64 {layer} + linear SVM", vlad, None),
            ("fine-tuned VGG (frozen base)", exp.keras_model(
                FineTunedCNNClassifier(frozen=("blocks",), **exp.keras_params(True))), None),
            ("hybrid SepConv CNN", exp.keras_model(HybridSepConvClassifier(
                **exp.keras_params(True, views=False))), None),
        ]
    return CrossValidatedChoice(candidates, cv=exp.folds(train),
                                name_format=_fixed_feature_name)


def _best_runs(exp: Experiment, name: str, train: Split) -> list[Run]:
    return [Run(dict(dataset=name), partial(_best_choice, exp, train),
                describe=lambda m: {"method": m.method_, "cv_score": m.cv_score_})]


#: Every table of the report, by the name ``cnnfeatures reproduce`` takes.
TABLES: dict[str, Table] = {t.key: t for t in (
    Table("1-4", _scale_runs, _scale_layout, _fixed_notes),
    Table("5-7", _vlad_runs, _vlad_layout, _fixed_notes),
    Table("8-9", _finetune_runs, _finetune_layout, _finetune_notes),
    Table("10", _hybrid_runs, _dataset_layout("table_10")),
    Table("11", _augmentation_runs, _dataset_layout("table_11")),
    Table("12", _best_runs, lambda records, names: {"table_12": best_table(records)}),
)}


# --------------------------------------------------------------------------- the runner


class Journal:
    """The records of finished runs in a JSON-lines file, so that a rerun skips them.

    Each run is written (and flushed to disk) as soon as it is measured, under an identity
    that covers the table, the dataset, the run's parameters and the experiment's settings:
    change any of them and the run is measured anew.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._records: dict[str, dict] = {}
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a kill: that run is measured again
                    self._records[entry["id"]] = entry["record"]

    @staticmethod
    def run_id(table: str, data: str, run: Run, exp: Experiment) -> str:
        text = json.dumps({"table": table, "data": os.path.abspath(data),
                           "params": _plain(run.params), "experiment": exp.identity()},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def get(self, run_id: str) -> dict | None:
        return self._records.get(run_id)

    def add(self, run_id: str, record: dict) -> None:
        self._records[run_id] = record
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"id": run_id, "record": _plain(record)}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def __len__(self) -> int:
        return len(self._records)


def _measure(exp: Experiment, run: Run, train: Split, test: Split, shared: dict) -> dict:
    cost = {"minutes": 0.0, "cpu_minutes": 0.0}
    if run.inputs is not None:
        if run.inputs_key not in shared:
            wall, cpu = time.perf_counter(), time.process_time()
            inputs = run.inputs(train, test)
            shared[run.inputs_key] = (inputs, {"minutes": (time.perf_counter() - wall) / 60,
                                               "cpu_minutes": (time.process_time() - cpu) / 60})
        (train, test), cost = shared[run.inputs_key]
    model = run.build()
    record = exp.evaluate(model, train, test, **run.params)
    for key, value in cost.items():  # each run's cost includes its shared inputs
        record[key] += value
    if run.describe is not None:
        record.update(run.describe(model))
    return record


def run_table(table: str, datasets: Sequence[str | os.PathLike[str]],
              experiment: Experiment | None = None, *,
              journal: str | os.PathLike[str] | Journal | None = None,
              progress: Callable[[str], None] | None = None, **settings) -> TableResult:
    """Run one of the report's comparisons on one or more dataset folders.

    Parameters
    ----------
    table : {"1-4", "5-7", "8-9", "10", "11", "12"}
    datasets : sequence of paths
        Folders laid out as ``<data>/train/<class>/<image>`` and ``<data>/test/...``.
    experiment : Experiment, optional
        Shared settings; otherwise built from ``settings`` (``backbone``, ``weights``,
        ``budget``, ...).
    journal : path or Journal, optional
        A JSON-lines file of finished runs: each run is written there when measured, and
        runs already there (same table, data, parameters and settings) are not run again.
    progress : callable, optional
        Called with a line of text as each run starts and ends.

    Returns
    -------
    TableResult

    Examples
    --------
    >>> result = run_table("1-4", ["../shared/data/mini_scene"], backbone="vgg16",
    ...                    weights="../shared/weights/vgg16_notop_imagenet.weights.h5",
    ...                    budget="quick")  # doctest: +SKIP
    >>> result.tables["table_1-4_mini_scene"]  # doctest: +SKIP
    """
    if table not in TABLES:
        raise ValueError(f"table must be one of {list(TABLES)}, got {table!r}")
    if not datasets:
        raise ValueError("datasets: give at least one dataset folder")
    if experiment is None:
        experiment = Experiment(**settings)
    elif settings:
        raise TypeError(f"give either experiment or settings, not both (got {sorted(settings)})")
    if journal is not None and not isinstance(journal, Journal):
        journal = Journal(journal)
    spec = TABLES[table]
    result = TableResult()
    if spec.notes is not None:
        result.notes += spec.notes(experiment)
    names = []
    for data in map(os.fspath, datasets):
        name = dataset_name(data)
        names.append(name)
        train, test, notes = experiment.load(data)
        result.notes += notes
        shared: dict = {}
        for run in spec.runs(experiment, name, train):
            journaled = journal is not None
            run_id = Journal.run_id(table, data, run, experiment) if journaled else None
            record = journal.get(run_id) if journaled else None
            if record is None:
                if progress:
                    progress(f"table {table} {_plain(run.params)}: running")
                record = _measure(experiment, run, train, test, shared)
                if journaled:
                    journal.add(run_id, record)
            elif progress:
                progress(f"table {table} {_plain(run.params)}: done before (journal)")
            result.records.append(record)
    result.tables = spec.layout(result.records, names)
    return result
