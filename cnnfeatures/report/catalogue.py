"""The report's tables as data: for each table, the :class:`Run` s it measures on a
dataset (each a set of parameters and a way to build a fresh model) and the layout that
turns their records into the report's table. :data:`TABLES` holds them by the name
``cnnfeatures reproduce`` takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .experiment import Experiment, Split, linear_svm
from .selection import CrossValidatedChoice, HeldOutValidation
from .tables import best_table, dataset_table, frozen_table, scale_table, vlad_table

__all__ = ["Run", "TABLES", "Table", "keras_description"]


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
                                     random_state=exp.random_state), linear_svm())


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
        return make_imb_pipeline(augmenter, features(), linear_svm())

    builds = {
        "without augmentation": lambda: make_pipeline(features(), linear_svm()),
        f"with augmentation (x{b.copies + 1})": augmented,
        "CLAHE": lambda: make_pipeline(CLAHETransformer(), features(), linear_svm()),
        "raw + CLAHE": lambda: make_pipeline(
            make_union(features(), make_pipeline(CLAHETransformer(), features())), linear_svm()),
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
            VLADEncoder(k=64, random_state=exp.random_state), linear_svm())
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
