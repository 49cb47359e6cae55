"""Keras-backed classifiers with scikit-learn's API, and the parts that train them.

* :mod:`~cnnfeatures.models.classifier`: the base estimator (parameters, fit, predict,
  pickling);
* :mod:`~cnnfeatures.models.finetune`, :mod:`~cnnfeatures.models.hybrid`: the two
  networks of the report;
* :mod:`~cnnfeatures.models.inputs`: decoded images, seeded batches, augmented views, the
  validation split, loss weights;
* :mod:`~cnnfeatures.models.prefix`: a frozen prefix run once per image, its activations
  cached;
* :mod:`~cnnfeatures.models.training`: the epochs (early stopping, the epoch clock);
* :mod:`~cnnfeatures.models.checkpoint`: the state saved after every epoch, and resumed.
"""

from .checkpoint import TrainingCheckpoint
from .classifier import SHARED_PARAMETERS, KerasImageClassifier
from .finetune import FineTunedCNNClassifier
from .hybrid import HybridSepConvClassifier
from .inputs import SmallDataWarning

__all__ = [
    "SHARED_PARAMETERS",
    "FineTunedCNNClassifier",
    "HybridSepConvClassifier",
    "KerasImageClassifier",
    "SmallDataWarning",
    "TrainingCheckpoint",
]
