"""CNN activations as features: :class:`CNNFeatureExtractor`, the scikit-learn
transformer (``extractor``), the report's scales (``scales``), what a fitted extractor
computes (``settings``) and the engine that fills the activation cache (``forward``)."""

from .extractor import CNNFeatureExtractor
from .forward import NetworkCard
from .scales import MAX_SCALE, Scales, scale_side
from .settings import ExtractionSettings

__all__ = ["MAX_SCALE", "CNNFeatureExtractor", "ExtractionSettings", "NetworkCard", "Scales",
           "scale_side"]
