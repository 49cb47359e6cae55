"""Keras-backed classifiers with scikit-learn's API."""

from ._base import SHARED_PARAMETERS, KerasImageClassifier, SmallDataWarning
from .checkpoint import TrainingCheckpoint
from .finetune import FineTunedCNNClassifier
from .hybrid import HybridSepConvClassifier

__all__ = [
    "SHARED_PARAMETERS",
    "FineTunedCNNClassifier",
    "HybridSepConvClassifier",
    "KerasImageClassifier",
    "SmallDataWarning",
    "TrainingCheckpoint",
]
