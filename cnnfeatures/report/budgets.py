"""How much of the report's protocol a run of its tables does: :class:`Budget` and the
named budgets of :data:`BUDGETS`.

``BUDGETS["quick"]`` finishes each table on a ../shared/data set within minutes on 2 CPU
cores (stratified subsamples, fewer scales and epochs); ``BUDGETS["full"]`` follows the
report's settings (whole splits, scales 0–2, up to 300 epochs); ``BUDGETS["cpu"]`` runs the
whole splits too, with the trained tables cut to what a CPU affords in hours (only the last
block of the base trains); ``BUDGETS["cpu-augmented"]`` adds the report's augmentation to
the trained networks, with blocks 4–5 training (hours with ``precision="bfloat16"`` on a
CPU with AMX).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..augmentation import AugmentationPolicy
from ..extraction import Scales

__all__ = ["BUDGETS", "Budget", "budget_identity", "quick_budget"]


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

    def __post_init__(self):
        # One shape for scales everywhere (a checked tuple of ints): a budget written by
        # hand with a bad scale fails here, naming the field, not in the middle of a run.
        for name in ("scales", "vlad_scales"):
            object.__setattr__(self, name, Scales.of(getattr(self, name), name=name))


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


# Budget fields added after runs were journaled: at their defaults they change nothing
# those runs measured, so they stay out of the identity and the journals stay valid.
_LATER_BUDGET_FIELDS = ("base_learning_rate", "augmentation", "augmentation_views")


def budget_identity(budget: Budget) -> dict:
    """The budget as a journal identifies it: its fields, less those added later that
    are at their defaults (so that runs journaled before they existed stay valid)."""
    identity = asdict(budget)
    defaults = {f.name: f.default for f in fields(Budget)}
    unaugmented = budget.augmentation is None  # then the number of views means nothing
    for name in _LATER_BUDGET_FIELDS:
        if identity[name] == defaults[name] or (name == "augmentation_views" and unaugmented):
            del identity[name]
    return identity
