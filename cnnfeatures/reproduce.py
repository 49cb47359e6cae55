"""Rerun the report's comparisons on any image folder: one function per table.

Each ``table_*`` function trains on a dataset's ``train/`` split, scores on its ``test/``
split, and returns a :class:`TableResult`: the table in the report's layout (see
:mod:`cnnfeatures.reporting`) and one record per measured configuration, holding every
metric with its bootstrap interval and the CPU minutes it cost. ``cnnfeatures reproduce``
runs them from the command line and writes Markdown, CSV and heatmaps.

A :class:`Budget` bounds the work: ``BUDGETS["quick"]`` finishes each table on a
../shared/data set within minutes on 2 CPU cores (stratified subsamples, fewer scales and
epochs); ``BUDGETS["full"]`` follows the report's settings (whole splits, scales 0–2, up to
300 epochs).

Which layers? With weights that hold VGG's classifier top (``"imagenet"``, or a file
saved with ``include_top=True``) the fixed-feature tables read the report's
``block5_pool``, ``fc1`` and ``fc2``; with a no-top file (such as ../shared/weights)
``fc1``/``fc2`` would be random, so ``block4_pool`` and ``block5_pool`` are read instead
and the table's note says so. Other backbones read their registered ``pooled_layers``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .reporting import (
    best_table,
    dataset_table,
    evaluation_record,
    frozen_table,
    scale_table,
    vlad_table,
)

__all__ = ["Budget", "BUDGETS", "Experiment", "TableResult", "TABLES", "run_table",
           "quick_budget"]


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


BUDGETS: dict[str, Budget] = {
    "quick": Budget("quick", max_train=120, max_test=120, scales=(0, 1), vlad_scales=(0, 1)),
    "full": Budget("full", max_train=None, max_test=None, scales=(0, 1, 2),
                   vlad_scales=(0, 1, 2), max_epochs=300, base_epochs=300,
                   learning_rate=1e-6, patience=10, copies=5, cv=5),
}


@dataclass
class TableResult:
    """What a ``table_*`` function measured.

    Attributes
    ----------
    tables : dict of str to pandas.DataFrame
        Named tables in the report's layout (e.g. ``"table_1-4_mini_scene"``).
    records : list of dict
        One per configuration: its parameters, every metric of
        :func:`~cnnfeatures.reporting.evaluation_record`, ``minutes`` (wall) and
        ``cpu_minutes`` (process CPU time).
    notes : list of str
        What the reader must know (subsampling, layers replaced, random fc weights).
    """

    tables: dict = field(default_factory=dict)
    records: list = field(default_factory=list)
    notes: list = field(default_factory=list)


@dataclass
class _Split:
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None
    names: list


@dataclass
class Experiment:
    """The settings shared by every table: backbone, weights, budget, and speed knobs.

    Parameters
    ----------
    backbone : str, default="vgg19"
        The report used VGG-19 (pass ``"vgg16"`` with ../shared/weights offline).
    weights : "imagenet", path or None, default="imagenet"
    budget : Budget or {"quick", "full"}, default="quick"
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Precision of the fixed-feature extraction (see :class:`CNNFeatureExtractor`).
    cache : bool or path, default=True
        The extractor's activation cache (a directory reuses activations across runs).
    model_params : dict, optional
        Extra parameters of the Keras classifiers (``input_side``, ``batch_size``...).
    random_state : int, default=0
    verbose : int, default=0
    """

    backbone: str = "vgg19"
    weights: object = "imagenet"
    budget: Budget | str = "quick"
    precision: str = "float32"
    cache: object = True
    model_params: dict = field(default_factory=dict)
    random_state: int = 0
    verbose: int = 0

    def __post_init__(self):
        if isinstance(self.budget, str):
            if self.budget not in BUDGETS:
                raise ValueError(f"budget must be one of {sorted(BUDGETS)} or a Budget, got "
                                 f"{self.budget!r}")
            self.budget = BUDGETS[self.budget]

    # -- data
    def load(self, data: str | os.PathLike[str]) -> tuple[_Split, _Split, list[str]]:
        """Train and test splits of ``data`` (subsampled per the budget), and notes."""
        from .datasets import PATIENT_PATTERNS, load_image_folder

        root = os.fspath(data)
        # Known sets with several images per patient: folds keep each patient whole.
        pattern = PATIENT_PATTERNS.get(_name(root))
        for split in ("train", "test"):
            if not os.path.isdir(os.path.join(root, split)):
                raise FileNotFoundError(
                    f"{root!r} has no {split}/ folder: reproduce needs the layout "
                    f"<data>/train/<class>/<image> and <data>/test/<class>/<image>")
        notes = []
        parts = []
        for split, limit in (("train", self.budget.max_train), ("test", self.budget.max_test)):
            folder = load_image_folder(root, split=split, group_pattern=pattern)
            idx = _stratified_subset(folder.target, limit, self.random_state)
            if len(idx) < len(folder.target):
                notes.append(f"{_name(root)}: {len(idx)} of {len(folder.target)} {split} "
                             f"images (stratified subsample, budget {self.budget.name})")
            groups = None if folder.groups is None else np.asarray(folder.groups)[idx]
            parts.append(_Split(np.asarray(folder.filenames)[idx],
                                np.asarray(folder.target)[idx], groups,
                                list(folder.target_names)))
        return parts[0], parts[1], notes

    def splits(self, datasets: Sequence[str], result: TableResult):
        """Yield ``(name, train, test)`` per dataset, recording subsampling notes."""
        for data in datasets:
            train, test, notes = self.load(data)
            result.notes += notes
            yield _name(data), train, test

    # -- parts
    def fixed_layers(self) -> tuple[tuple[str, ...], str | None]:
        """Layers of the fixed-feature tables, and a note when they differ from the report."""
        from .backbones import get_backbone, weights_have_top

        spec = get_backbone(self.backbone)
        if not spec.fc_layers:
            return tuple(spec.pooled_layers), None
        # A random network's fc layers are as random as the rest: read them.
        has_top = self.weights is None or weights_have_top(self.backbone, self.weights)
        if has_top:
            return ("block5_pool", "fc1", "fc2"), None
        return ("block4_pool", "block5_pool"), (
            "fc1/fc2 not read: the weights file has no classifier top, so they would be "
            "random; block4_pool and block5_pool are read instead")

    def extractor(self, **params):
        from .extraction import CNNFeatureExtractor

        return CNNFeatureExtractor(backbone=self.backbone, weights=self.weights,
                                   precision=self.precision, cache=self.cache,
                                   verbose=self.verbose, **params)

    def keras_params(self, frozen_base: bool) -> dict:
        b = self.budget
        params = dict(backbone=self.backbone, weights=self.weights,
                      learning_rate=b.learning_rate, patience=b.patience,
                      max_epochs=b.max_epochs if frozen_base else b.base_epochs,
                      random_state=self.random_state)
        return {**params, **self.model_params}

    def evaluate(self, model, train: _Split, test: _Split, **params) -> dict:
        """Fit on train, score on test; one record with every metric and the cost."""
        wall, cpu = time.perf_counter(), time.process_time()
        fit_params = {"groups": train.groups} if _accepts_groups(model) else {}
        model.fit(train.X, train.y, **fit_params)
        predicted, scores = _predict(model, test.X)
        record = dict(params)
        record.update(evaluation_record(test.y, predicted, scores, names=test.names,
                                        n_resamples=self.budget.n_resamples,
                                        random_state=self.random_state))
        record["recall"] = _headline_recall(record, test)
        record["minutes"] = (time.perf_counter() - wall) / 60
        record["cpu_minutes"] = (time.process_time() - cpu) / 60
        return record


def _fixed_layers(exp: Experiment, result: TableResult) -> tuple[str, ...]:
    """The fixed-feature layers, with the note saying when they are not the report's."""
    layers, note = exp.fixed_layers()
    if note:
        result.notes.append(note)
    return layers


def _name(root: str) -> str:
    return os.path.basename(os.path.normpath(root))


def _stratified_subset(y, limit: int | None, random_state: int) -> np.ndarray:
    idx = np.arange(len(y))
    if limit is None or limit >= len(y):
        return idx
    from sklearn.model_selection import train_test_split

    chosen, _ = train_test_split(idx, train_size=limit, stratify=y,
                                 random_state=random_state)
    return np.sort(chosen)


def _accepts_groups(model) -> bool:
    from .models._base import KerasImageClassifier

    return isinstance(model, KerasImageClassifier)


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


def _headline_recall(record: dict, test: _Split) -> float:
    """The report's "recall": of the positive (second) class when binary, else macro."""
    if len(test.names) == 2:
        return record[f"recall {test.names[1]}"]
    return record["balanced_accuracy"]


def _linear():
    from sklearn.svm import LinearSVC

    return LinearSVC()


# --------------------------------------------------------------------------- tables


def table_scales(exp: Experiment, datasets: Sequence[str]) -> TableResult:
    """Tables 1–4: fixed features, rows N, columns pooling × layer, linear SVM."""
    from sklearn.pipeline import make_pipeline

    result = TableResult()
    layers = _fixed_layers(exp, result)
    for name, train, test in exp.splits(datasets, result):
        records = []
        for scale in exp.budget.scales:
            for pooling in ("mean", "max"):
                for layer in layers:
                    model = make_pipeline(
                        exp.extractor(layer=layer, pooling=pooling, scales=(scale,)),
                        _linear())
                    records.append(exp.evaluate(model, train, test, dataset=name,
                                                scale=scale, pooling=pooling, layer=layer))
        result.records += records
        result.tables[f"table_1-4_{name}"] = scale_table(records, value="accuracy")
    return result


def table_vlad(exp: Experiment, datasets: Sequence[str]) -> TableResult:
    """Tables 5–7: VLAD of local descriptors, rows k, columns layer, linear SVM.

    A row ``pooled`` gives the plain mean-pooled feature at scale 0 (the report's
    "previous best" baseline).
    """
    from sklearn.pipeline import make_pipeline

    from .vlad import VLADEncoder

    b = exp.budget
    result = TableResult()
    layers = _fixed_layers(exp, result)
    for name, train, test in exp.splits(datasets, result):
        records = []
        for layer in layers:
            # Local descriptors once per layer; every k reuses them (no new forward pass).
            ext = exp.extractor(layer=layer, pooling=None, scales=b.vlad_scales)
            wall, cpu = time.perf_counter(), time.process_time()
            local = _Split(ext.fit_transform(train.X), train.y, train.groups, train.names)
            local_test = _Split(ext.transform(test.X), test.y, None, test.names)
            extract = {"minutes": (time.perf_counter() - wall) / 60,
                       "cpu_minutes": (time.process_time() - cpu) / 60}
            for k in b.ks:
                vlad = VLADEncoder(k=k, pca_components=b.pca_components,
                                   random_state=exp.random_state)
                record = exp.evaluate(make_pipeline(vlad, _linear()), local, local_test,
                                      dataset=name, layer=layer, k=k,
                                      scales=str(b.vlad_scales))
                for key, value in extract.items():  # each k's cost includes extraction
                    record[key] += value
                records.append(record)
            pooled = make_pipeline(exp.extractor(layer=layer, pooling="mean"), _linear())
            records.append(exp.evaluate(pooled, train, test, dataset=name,
                                        layer=layer, k="pooled", scales="(0,)"))
        result.records += records
        result.tables[f"table_5-7_{name}"] = vlad_table(records)
    return result


#: Table 8's frozen sets, in the report's order.
FROZEN_ROWS = ((), ("blocks",), ("blocks", "fc1"), ("blocks", "fc2"), ("fc1",), ("fc2",))


def table_finetune(exp: Experiment, datasets: Sequence[str]) -> TableResult:
    """Table 8 (per dataset: frozen sets) and Table 9 (one row per dataset).

    VGG with its original top (fc1, fc2 of 4096 units, a new softmax); Table 9 is the
    report's chosen row, ``blocks, fc1`` frozen (only fc2 and the softmax train).
    """
    from .backbones import get_backbone
    from .models import FineTunedCNNClassifier

    if not get_backbone(exp.backbone).fc_layers:
        raise ValueError(f"Tables 8-9 freeze VGG's fc1/fc2: backbone {exp.backbone!r} has "
                         "no fc layers; use vgg16 or vgg19")
    result = TableResult()
    _, note = exp.fixed_layers()
    if note:
        result.notes.append("fc1/fc2 start random: the weights file has no classifier top "
                            "(the report froze ImageNet-trained fc layers)")
    for name, train, test in exp.splits(datasets, result):
        records = []
        for frozen in FROZEN_ROWS:
            clf = FineTunedCNNClassifier(head="original", frozen=frozen,
                                         **exp.keras_params("blocks" in frozen))
            record = exp.evaluate(clf, train, test, dataset=name,
                                  frozen=", ".join(frozen) or "-")
            record["epochs"] = f"{clf.best_epoch_}/{clf.n_epochs_}"
            record["trainable parameters"] = clf.count_params(trainable_only=True)
            records.append(record)
        result.records += records
        result.tables[f"table_8_{name}"] = frozen_table(records)
    chosen = [dict(r, method="fine-tuned VGG (fc2 trainable)") for r in result.records
              if r["frozen"] == "blocks, fc1"]
    result.tables["table_9"] = dataset_table(chosen)
    return result


def table_hybrid(exp: Experiment, datasets: Sequence[str]) -> TableResult:
    """Table 10: the hybrid SeparableConv network against fine-tuned VGG (frozen base)."""
    from .models import FineTunedCNNClassifier, HybridSepConvClassifier

    result = TableResult()
    for name, train, test in exp.splits(datasets, result):
        models = {
            "hybrid SepConv CNN": HybridSepConvClassifier(**exp.keras_params(True)),
            "fine-tuned VGG (frozen base)": FineTunedCNNClassifier(
                frozen=("blocks",), **exp.keras_params(True)),
        }
        for method, clf in models.items():
            record = exp.evaluate(clf, train, test, dataset=name, method=method)
            record["epochs"] = f"{clf.best_epoch_}/{clf.n_epochs_}"
            result.records.append(record)
    result.tables["table_10"] = dataset_table(result.records)
    return result


def table_augmentation(exp: Experiment, datasets: Sequence[str]) -> TableResult:
    """Table 11: fixed features without and with augmentation, and with CLAHE.

    ``block5_pool`` mean at scale 0, linear SVM. Augmented copies are drawn inside an
    imbalanced-learn pipeline, so only training images are augmented.
    """
    from imblearn.pipeline import make_pipeline as make_imb_pipeline
    from sklearn.pipeline import make_pipeline, make_union

    from .augmentation import ImageAugmenter
    from .preprocessing import CLAHETransformer

    b = exp.budget
    layers, _ = exp.fixed_layers()
    layer = "block5_pool" if "block5_pool" in layers else layers[-1]

    def features():
        return exp.extractor(layer=layer, pooling="mean")

    result = TableResult()
    for name, train, test in exp.splits(datasets, result):
        augmenter = ImageAugmenter(n_copies=b.copies, rotation=20, zoom=0.1, shift=0.05,
                                   brightness=0.1, contrast=0.1,
                                   random_state=exp.random_state)
        methods = {
            "without augmentation": make_pipeline(features(), _linear()),
            f"with augmentation (x{b.copies + 1})": make_imb_pipeline(
                augmenter, features(), _linear()),
            "CLAHE": make_pipeline(CLAHETransformer(), features(), _linear()),
            "raw + CLAHE": make_pipeline(
                make_union(features(), make_pipeline(CLAHETransformer(), features())),
                _linear()),
        }
        for method, model in methods.items():
            result.records.append(exp.evaluate(model, train, test, dataset=name,
                                               method=method, layer=layer))
    result.tables["table_11"] = dataset_table(result.records)
    return result


def _folds(exp: Experiment, train: _Split):
    """Patient-grouped folds where groups are known, else stratified shuffled folds."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    if train.groups is not None:
        return GroupKFold(exp.budget.cv)
    return StratifiedKFold(exp.budget.cv, shuffle=True, random_state=exp.random_state)


def _fixed_feature_search(exp: Experiment, train: _Split):
    """GridSearchCV over layer × pooling × scale on the training split only."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    layers, _ = exp.fixed_layers()
    pipe = make_pipeline(exp.extractor(layer=layers[-1], pooling="mean"), _linear())
    grid = {"cnnfeatureextractor__layer": list(layers),
            "cnnfeatureextractor__pooling": ["mean", "max"],
            "cnnfeatureextractor__scales": [(n,) for n in exp.budget.scales],
            # Free once features are cached, and it matters on imbalanced sets.
            "linearsvc__class_weight": [None, "balanced"]}
    search = GridSearchCV(pipe, grid, cv=_folds(exp, train), refit=False)
    search.fit(train.X, train.y, groups=train.groups)
    return pipe.set_params(**search.best_params_), search.best_params_, search.best_score_


def _cv_score(exp: Experiment, model, train: _Split) -> float:
    from sklearn.model_selection import cross_val_score

    return float(np.mean(cross_val_score(model, train.X, train.y, groups=train.groups,
                                         cv=_folds(exp, train))))


def table_best(exp: Experiment, datasets: Sequence[str]) -> TableResult:
    """Table 12: per dataset, the method that cross-validation on train/ prefers.

    Candidates: the fixed-feature pipeline that a grid search over layer × pooling × scale
    picks; with ``budget="full"``, also VLAD (k=64 on ``block5_pool``), fine-tuned VGG
    (frozen base, dropout head) and the hybrid network. Each is cross-validated on the
    training split only; the table shows the chosen method's test metrics and what the
    whole search cost in CPU minutes.
    """
    from sklearn.pipeline import make_pipeline

    from .models import FineTunedCNNClassifier, HybridSepConvClassifier
    from .vlad import VLADEncoder

    full = exp.budget.name == "full"
    result = TableResult()
    for name, train, test in exp.splits(datasets, result):
        cpu = time.process_time()
        model, params, cv_score = _fixed_feature_search(exp, train)
        p = {k.split("__")[1]: v for k, v in params.items()}
        weighting = ", balanced" if p["class_weight"] else ""
        candidates = [(f"{p['layer']} {p['pooling']} pooling, N={p['scales'][0]} + linear "
                       f"SVM{weighting}", model, cv_score)]
        if full:
            vlad = make_pipeline(
                exp.extractor(layer="block5_pool", pooling=None,
                              scales=exp.budget.vlad_scales),
                VLADEncoder(k=64, random_state=exp.random_state), _linear())
            tuned = FineTunedCNNClassifier(frozen=("blocks",), **exp.keras_params(True))
            hybrid = HybridSepConvClassifier(**exp.keras_params(True))
            for method, candidate in (("VLAD k=64 block5_pool + linear SVM", vlad),
                                      ("fine-tuned VGG (frozen base)", tuned),
                                      ("hybrid SepConv CNN", hybrid)):
                candidates.append((method, candidate, _cv_score(exp, candidate, train)))
        search_minutes = (time.process_time() - cpu) / 60
        method, best, score = max(candidates, key=lambda c: c[2])
        record = exp.evaluate(best, train, test, dataset=name, method=method,
                              cv_score=score)
        record["cpu_minutes"] += search_minutes
        result.records.append(record)
    result.tables["table_12"] = best_table(result.records)
    return result


#: Table name (as given to ``cnnfeatures reproduce``) -> function.
TABLES: dict[str, Callable[[Experiment, Sequence[str]], TableResult]] = {
    "1-4": table_scales,
    "5-7": table_vlad,
    "8-9": table_finetune,
    "10": table_hybrid,
    "11": table_augmentation,
    "12": table_best,
}


def run_table(table: str, datasets: Sequence[str | os.PathLike[str]],
              experiment: Experiment | None = None, **settings) -> TableResult:
    """Run one of the report's comparisons on one or more dataset folders.

    Parameters
    ----------
    table : {"1-4", "5-7", "8-9", "10", "11", "12"}
    datasets : sequence of paths
        Folders laid out as ``<data>/train/<class>/<image>`` and ``<data>/test/...``.
    experiment : Experiment, optional
        Shared settings; otherwise built from ``settings`` (``backbone``, ``weights``,
        ``budget``, ...).

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
    return TABLES[table](experiment, [os.fspath(d) for d in datasets])


def quick_budget(**changes) -> Budget:
    """The quick budget with some fields changed (``quick_budget(max_train=40)``)."""
    return replace(BUDGETS["quick"], **changes)
