"""Explanations: Grad-CAM and integrated gradients (:mod:`~cnnfeatures.explain.maps`), for
Keras classifiers and for feature + linear pipelines, whose scores the
:mod:`~cnnfeatures.explain.scorers` rebuild in Keras operations."""

from .maps import grad_cam, integrated_gradients, layer_panel, overlay
from .scorers import KerasScorer, PipelineScorer, scorer_for

__all__ = ["KerasScorer", "PipelineScorer", "grad_cam", "integrated_gradients", "layer_panel",
           "overlay", "scorer_for"]
