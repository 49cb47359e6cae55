"""Keras-backed classifiers with scikit-learn's API."""

from ._base import KerasImageClassifier
from .finetune import FineTunedCNNClassifier
from .hybrid import HybridSepConvClassifier

__all__ = ["FineTunedCNNClassifier", "HybridSepConvClassifier", "KerasImageClassifier"]
