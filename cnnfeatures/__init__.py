"""cnnfeatures: pretrained convolutional networks as scikit-learn estimators.

Public names are re-exported here; each lives in a module of its own idea
(images, datasets, backbones, cache, extraction, ...).
"""

from .augmentation import AugmentationPolicy, ImageAugmenter, augmentation_grid
from .config import config_context, get_config, set_config
from .datasets import PATIENT_PATTERNS, load_image_folder
from .descriptors import LocalDescriptors
from .extraction import CNNFeatureExtractor, scale_side
from .images import ImageLoadError, LowBitDepthWarning, load_image
from .models import FineTunedCNNClassifier, HybridSepConvClassifier
from .preprocessing import CLAHETransformer
from .version import __version__ as __version__
from .vlad import VLADEncoder

__all__ = [
    "PATIENT_PATTERNS",
    "AugmentationPolicy",
    "CLAHETransformer",
    "ImageAugmenter",
    "augmentation_grid",
    "config_context",
    "get_config",
    "set_config",
    "CNNFeatureExtractor",
    "FineTunedCNNClassifier",
    "HybridSepConvClassifier",
    "ImageLoadError",
    "LocalDescriptors",
    "LowBitDepthWarning",
    "load_image",
    "load_image_folder",
    "scale_side",
    "VLADEncoder",
]
