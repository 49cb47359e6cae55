"""Explanations: Grad-CAM and integrated gradients, for Keras classifiers and for
``[image steps] → CNNFeatureExtractor → [scaler] → linear classifier`` pipelines.

For a pipeline, the class score is linear in the pooled, L2-normalised features, so its
gradient reaches any convolutional layer of the backbone through pooling and L2: the whole
chain is rebuilt in Keras operations from the fitted steps (scaler statistics, ``coef_``,
``intercept_``) and differentiated there. Steps that are not differentiable this way (an RBF
SVM, trees, VLAD) raise an error that names them.

Integrated gradients (Sundararajan et al. 2017) are implemented natively rather than with
SHAP: SHAP's DeepExplainer fails on TensorFlow ≥ 2.16 (shap #3672), and integrated
gradients satisfy the same completeness axiom with a black-image baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..backend import gradients
from ..images import check_image_sources, image_name, load_image, resize_square
from .scorers import scorer_for

__all__ = ["grad_cam", "integrated_gradients", "layer_panel", "overlay"]


def _targets(scorer, target, n: int, predicted) -> np.ndarray:
    """Column index of the class to explain for each image."""
    classes = list(scorer.classes_)
    if target is None:
        return np.asarray(predicted)
    values = [target] * n if np.ndim(target) == 0 else list(target)
    if len(values) != n:
        raise ValueError(f"target has {len(values)} labels for {n} images")
    out = []
    for value in values:
        if value not in classes:
            raise ValueError(f"target {value!r} is not a class; classes are {classes}")
        out.append(classes.index(value))
    return np.asarray(out)


# --------------------------------------------------------------------------- Grad-CAM


def grad_cam(estimator, X, layer: str | None = None, target=None) -> list[np.ndarray]:
    """Grad-CAM heatmaps (Selvaraju et al. 2017) of each image for one class.

    The gradient of the class score with respect to the layer's activations, averaged over
    positions, weighs the activation maps; their positive sum, resized to the input image's
    size and scaled to [0, 1], is the heatmap. With several scales, the per-scale maps are
    averaged.

    Parameters
    ----------
    estimator : fitted FineTunedCNNClassifier, HybridSepConvClassifier, or Pipeline
        A pipeline is ``[image steps] → CNNFeatureExtractor → [StandardScaler, Normalizer,
        MaxAbsScaler, MinMaxScaler] → linear classifier``.
    X : sequence of image sources
    layer : str, optional
        A convolutional layer; defaults to the last 4-D layer before the head
        (``block5_pool`` for VGG).
    target : label, sequence of labels, or None
        The class to explain: the predicted one (default), one label for all images, or
        one per image.

    Returns
    -------
    heatmaps : list of ndarray of shape (H, W), float32 in [0, 1]
        One per image, at that image's size (after image steps such as CLAHE).

    Examples
    --------
    >>> import numpy as np
    >>> from cnnfeatures import FineTunedCNNClassifier
    >>> images = np.random.default_rng(0).integers(0, 255, (4, 64, 48, 3), dtype=np.uint8)
    >>> model = FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32,
    ...                                max_epochs=1, random_state=0)
    >>> model = model.fit(images, [0, 1, 0, 1])
    >>> heatmaps = grad_cam(model, images[:2], layer="block5_conv3")
    >>> [h.shape for h in heatmaps]
    [(64, 48), (64, 48)]
    """
    scorer = scorer_for(estimator)
    sources = check_image_sources(X)
    layer = layer or scorer.default_layer()
    if layer not in scorer.layer_names():
        raise ValueError(f"unknown layer {layer!r}; valid names: {scorer.layer_names()}")
    images = _images(scorer, sources)
    predicted = np.argmax(scorer.decision(sources), axis=1) if target is None else None
    columns = _targets(scorer, target, len(images), predicted)
    activations, scores = scorer.split(layer)
    heatmaps = []
    for image, column in zip(images, columns):
        maps, context = activations(scorer.inputs(image))
        if any(m.ndim != 4 for m in maps):
            raise ValueError(f"layer {layer!r} has no spatial map; choose a convolutional "
                             "or pooling layer before the head")

        def score(*maps, column=int(column), context=context):
            return scores(list(maps), context)[:, column]

        grads = gradients(score, maps)
        total = np.zeros(image.shape[:2], np.float32)
        for m, grad in zip(maps, grads):  # one per scale, summed
            if grad is None:
                raise ValueError(f"layer {layer!r}: the class score does not depend on it")
            weights = grad.mean(axis=(1, 2), keepdims=True)
            cam = np.maximum((weights * m).sum(axis=-1), 0)[0]
            total += cv2.resize(cam.astype(np.float32), image.shape[1::-1],
                                interpolation=cv2.INTER_LINEAR)
        heatmaps.append(_unit(total))
    return heatmaps


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.maximum(a, 0)
    top = float(a.max())
    return (a / top if top > 0 else a).astype(np.float32)


def _images(scorer, sources) -> list[np.ndarray]:
    images = sources
    for step in getattr(scorer, "image_steps", []):
        images = step.transform(images)
    return [load_image(s, name=image_name(s, i)) for i, s in enumerate(images)]


# --------------------------------------------------------------------------- IG


def integrated_gradients(estimator, X, target=None, steps: int = 32) -> list[np.ndarray]:
    """Integrated gradients of the class score with respect to the pixels (a black baseline).

    Returns one (H, W) map per image at the network's input side: the absolute attribution
    summed over colour channels, scaled to [0, 1]. Works for the same estimators as
    :func:`grad_cam`. With several scales, the path runs through every scale's input at
    once (the score is that of all scales combined, as the pipeline computes it) and the
    scales' attributions are summed at the first scale's side.
    """
    scorer = scorer_for(estimator)
    sources = check_image_sources(X)
    images = _images(scorer, sources)
    predicted = np.argmax(scorer.decision(sources), axis=1) if target is None else None
    columns = _targets(scorer, target, len(images), predicted)
    alphas = np.linspace(0, 1, steps + 1, dtype=np.float32)[1:, None, None, None]
    side = scorer.sides[0]
    out = []
    for image, column in zip(images, columns):
        xs = scorer.inputs(image)
        baselines = scorer.inputs(np.zeros_like(image))
        # One straight path from the black image to the image, at every scale at once: the
        # score is that of all scales together, as the fitted model computes it.
        paths = [b + alphas * (x - b) for x, b in zip(xs, baselines)]

        def score(*paths, column=int(column)):
            return scorer.forward(list(paths))[:, column]

        grads = gradients(score, paths)
        attribution = np.zeros((side, side), np.float32)
        for x, b, grad in zip(xs, baselines, grads):
            per_scale = np.abs((x[0] - b[0]) * grad.mean(axis=0)).sum(axis=-1)
            attribution += cv2.resize(per_scale.astype(np.float32), (side, side),
                                      interpolation=cv2.INTER_AREA)
        out.append(_unit(attribution))
    return out


# --------------------------------------------------------------------------- pictures


def overlay(image, heatmap: np.ndarray, alpha: float = 0.4,
            colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Blend a [0, 1] heatmap, coloured with an OpenCV colormap, over an image.

    Returns
    -------
    picture : ndarray of uint8, shape (H, W, 3), RGB
    """
    rgb = load_image(image)
    heat = cv2.resize(np.clip(heatmap, 0, 1).astype(np.float32), rgb.shape[1::-1])
    colored = cv2.applyColorMap(np.uint8(np.rint(heat * 255)), colormap)[:, :, ::-1]
    return np.uint8(np.clip((1 - alpha) * rgb + alpha * colored, 0, 255).round())


def layer_panel(estimator, image, layers: Sequence[str] | None = None, target=None,
                side: int = 224, alpha: float = 0.4) -> np.ndarray:
    """Grad-CAM overlays of one image for several layers side by side (Figures 24–28).

    ``layers`` defaults to the backbone's pooled block outputs (``block1_pool`` …
    ``block5_pool`` for VGG) that the model has. The first tile is the image as the
    network sees it: after the pipeline's image steps (a :class:`~cnnfeatures.RegionCropper`'s
    cut, CLAHE), the picture the heatmaps are computed on.
    """
    scorer = scorer_for(estimator)
    if layers is None:
        layers = scorer.panel_layers()
    (picture,) = _images(scorer, check_image_sources([image]))
    tiles = [np.uint8(np.rint(resize_square(picture, side)))]
    for layer in layers:
        (heat,) = grad_cam(estimator, [image], layer=layer, target=target)
        tiles.append(cv2.resize(overlay(picture, heat, alpha), (side, side)))
    return np.concatenate(tiles, axis=1)
