"""cnnfeatures: pretrained convolutional networks as scikit-learn estimators.

Public names are re-exported here; each lives in a module of its own idea
(images, datasets, backbones, cache, extraction, ...).

The names are imported when first read (PEP 562), not when the package is: ``import
cnnfeatures`` and ``cnnfeatures --help`` do not pay for scikit-learn, imbalanced-learn and
OpenCV (about 2 s on 2 cores) until an estimator is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .version import __version__ as __version__

# Each public name and the module that defines it.
_EXPORTS = {
    "AugmentationPolicy": "augmentation",
    "ImageAugmenter": "augmentation",
    "augmentation_grid": "augmentation",
    "config_context": "config",
    "get_config": "config",
    "set_config": "config",
    "PATIENT_PATTERNS": "datasets",
    "load_image_folder": "datasets",
    "LocalDescriptors": "descriptors",
    "SeedEnsembleClassifier": "ensemble",
    "TestTimeAugmentationClassifier": "ensemble",
    "CNNFeatureExtractor": "extraction",
    "scale_side": "extraction",
    "ImageLoadError": "images",
    "LowBitDepthWarning": "images",
    "load_image": "images",
    "FineTunedCNNClassifier": "models",
    "HybridSepConvClassifier": "models",
    "CLAHETransformer": "preprocessing",
    "RegionCropper": "regions",
    "LabelShiftAdapter": "shift",
    "VLADEncoder": "vlad",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # static analysers and IDEs see the names as plain re-exports
    from .augmentation import (
        AugmentationPolicy as AugmentationPolicy,
        ImageAugmenter as ImageAugmenter,
        augmentation_grid as augmentation_grid,
    )
    from .config import (
        config_context as config_context,
        get_config as get_config,
        set_config as set_config,
    )
    from .datasets import (
        PATIENT_PATTERNS as PATIENT_PATTERNS,
        load_image_folder as load_image_folder,
    )
    from .descriptors import (
        LocalDescriptors as LocalDescriptors,
    )
    from .ensemble import (
        SeedEnsembleClassifier as SeedEnsembleClassifier,
        TestTimeAugmentationClassifier as TestTimeAugmentationClassifier,
    )
    from .extraction import (
        CNNFeatureExtractor as CNNFeatureExtractor,
        scale_side as scale_side,
    )
    from .images import (
        ImageLoadError as ImageLoadError,
        LowBitDepthWarning as LowBitDepthWarning,
        load_image as load_image,
    )
    from .models import (
        FineTunedCNNClassifier as FineTunedCNNClassifier,
        HybridSepConvClassifier as HybridSepConvClassifier,
    )
    from .preprocessing import (
        CLAHETransformer as CLAHETransformer,
    )
    from .regions import (
        RegionCropper as RegionCropper,
    )
    from .shift import (
        LabelShiftAdapter as LabelShiftAdapter,
    )
    from .vlad import (
        VLADEncoder as VLADEncoder,
    )


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnfeatures' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # read once: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
