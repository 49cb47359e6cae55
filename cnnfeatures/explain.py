"""Explanations: Grad-CAM and integrated gradients, for Keras classifiers and for
``[image steps] → CNNFeatureExtractor → [scaler] → linear classifier`` pipelines.

For a pipeline, the class score is linear in the pooled, L2-normalised features, so its
gradient reaches any convolutional layer of the backbone through pooling and L2: the whole
chain is rebuilt in TensorFlow from the fitted steps (scaler statistics, ``coef_``,
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

from .images import check_image_sources, image_name, load_image, resize_square

__all__ = ["grad_cam", "integrated_gradients", "layer_panel", "overlay"]

_LINEAR = ("LinearSVC", "LogisticRegression", "SGDClassifier", "RidgeClassifier",
           "RidgeClassifierCV", "LogisticRegressionCV", "Perceptron",
           "PassiveAggressiveClassifier", "LinearDiscriminantAnalysis")


# --------------------------------------------------------------------------- scorers


class _KerasScorer:
    """Class scores of a fitted FineTunedCNNClassifier / HybridSepConvClassifier."""

    def __init__(self, estimator):
        self.estimator = estimator
        self.classes_ = estimator.classes_
        self.model = estimator.model_
        self.sides = (estimator.input_side,)

    def layer_names(self):
        return [layer.name for layer in self.model.layers]

    def prepare(self, image: np.ndarray, side: int) -> np.ndarray:
        return self.estimator._preprocess(resize_square(image, side)[None])

    def sub_model(self, layer: str):
        import keras

        # The class score is taken before the softmax (as in Selvaraju et al.): a saturated
        # probability has vanishing gradients.
        self.head = self.model.layers[-1]
        return keras.Model(self.model.inputs,
                           [self.model.get_layer(layer).output, self.head.input])

    def scores(self, outputs):
        import tensorflow as tf

        kernel, bias = self.head.kernel, self.head.bias
        return tf.matmul(outputs[0], tf.convert_to_tensor(kernel)) + tf.convert_to_tensor(bias)


class _PipelineScorer:
    """Class scores of a fitted pipeline ending in a linear classifier, in TensorFlow."""

    def __init__(self, pipeline):
        from .extraction import CNNFeatureExtractor

        steps = [step for _, step in pipeline.steps if step not in (None, "passthrough")]
        index = next((i for i, s in enumerate(steps) if isinstance(s, CNNFeatureExtractor)),
                     None)
        if index is None:
            raise ValueError("the pipeline has no CNNFeatureExtractor step to explain")
        self.image_steps = steps[:index]
        self.extractor = steps[index]
        tail = steps[index + 1 :]
        if not tail or type(tail[-1]).__name__ not in _LINEAR:
            last = type(tail[-1]).__name__ if tail else "nothing"
            raise ValueError(
                f"Grad-CAM needs the pipeline to end in a linear classifier "
                f"({', '.join(_LINEAR[:4])}, ...); it ends in {last}, whose score is not "
                "linear in the features"
            )
        self.between = tail[:-1]
        for step in self.between:
            if type(step).__name__ not in ("StandardScaler", "Normalizer", "MaxAbsScaler",
                                           "MinMaxScaler"):
                raise ValueError(
                    f"step {type(step).__name__} between the extractor and the classifier "
                    "cannot be differentiated here; use StandardScaler, Normalizer, "
                    "MaxAbsScaler or MinMaxScaler"
                )
        if self.extractor.pooling is None:
            raise ValueError("the extractor returns local descriptors (pooling=None): its "
                             "VLAD/encoding tail cannot be differentiated; explain a pooled "
                             "pipeline")
        self.clf = tail[-1]
        self.classes_ = self.clf.classes_
        # Gradients in bfloat16 are too coarse for heatmaps: explain in float32 whatever
        # precision extracted the features (they differ by under 1%).
        self.net = self.extractor.feature_network(precision="float32")
        self.sides = self.extractor.input_sides_

    def layer_names(self):
        return list(self.net.layer_names)

    def prepare(self, image, side):
        return self.net.preprocess(resize_square(image, side)[None])

    def sub_model(self, layer: str):
        import keras

        model = self.net.model
        return keras.Model(model.inputs, [model.get_layer(layer).output] +
                           [model.get_layer(n).output for n in self.extractor.layers_])

    def scores(self, outputs):
        """Linear class scores from the feature layers' maps (one scale)."""
        import tensorflow as tf

        blocks = []
        for maps in outputs:
            if self.extractor.pooling == "mean":
                v = tf.reduce_mean(maps, axis=[1, 2])
            else:
                v = tf.reduce_max(maps, axis=[1, 2])
            if self.extractor.l2_normalize:
                v = tf.math.l2_normalize(v, axis=1)
            blocks.append(v)
        f = tf.concat(blocks, axis=1)
        for step in self.between:
            name = type(step).__name__
            if name == "StandardScaler":
                mean = 0.0 if step.mean_ is None else step.mean_
                scale = 1.0 if step.scale_ is None else step.scale_
                f = (f - tf.constant(mean, f.dtype)) / tf.constant(scale, f.dtype)
            elif name == "Normalizer":
                f = tf.math.l2_normalize(f, axis=1)
            elif name == "MaxAbsScaler":
                f = f / tf.constant(step.scale_, f.dtype)
            else:  # MinMaxScaler
                f = f * tf.constant(step.scale_, f.dtype) + tf.constant(step.min_, f.dtype)
        coef = np.atleast_2d(self.clf.coef_).astype(np.float32)
        bias = np.atleast_1d(self.clf.intercept_).astype(np.float32)
        s = tf.matmul(f, tf.constant(coef.T)) + tf.constant(bias)
        if coef.shape[0] == 1:  # binary: the decision function scores class 1
            s = tf.concat([-s, s], axis=1)
        return s


def _scorer(estimator):
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        return _PipelineScorer(estimator)
    if hasattr(estimator, "model_") and hasattr(estimator, "_preprocess"):
        return _KerasScorer(estimator)
    raise TypeError(
        f"cannot explain a {type(estimator).__name__}: pass a fitted FineTunedCNNClassifier, "
        "HybridSepConvClassifier, or a Pipeline with a CNNFeatureExtractor and a linear "
        "classifier"
    )


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
    >>> heatmaps = grad_cam(model, ["scan.png"], layer="block5_pool")  # doctest: +SKIP
    """
    import tensorflow as tf

    scorer = _scorer(estimator)
    sources = check_image_sources(X)
    layer = layer or _default_layer(scorer)
    if layer not in scorer.layer_names():
        raise ValueError(f"unknown layer {layer!r}; valid names: {scorer.layer_names()}")
    images = _images(scorer, sources)
    sub = scorer.sub_model(layer)
    predicted = np.argmax(_decision(scorer, sources), axis=1) if target is None else None
    columns = _targets(scorer, target, len(images), predicted)
    heatmaps = []
    for image, column in zip(images, columns):
        total = np.zeros(image.shape[:2], np.float32)
        for side in scorer.sides:
            x = tf.constant(scorer.prepare(image, side))
            with tf.GradientTape() as tape:
                # Watch the input: every op is then recorded, frozen layers' included
                # (their weights are not trainable variables, so nothing else would be).
                tape.watch(x)
                outputs = sub(x, training=False)
                activations, rest = outputs[0], outputs[1:]
                score = scorer.scores(list(rest))[:, int(column)]
            grads = tape.gradient(score, activations)
            if grads is None or activations.shape.rank != 4:
                raise ValueError(f"layer {layer!r} has no spatial map the class score depends "
                                 "on; choose a convolutional or pooling layer before the head")
            weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))[0].numpy()
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


def _decision(scorer, sources) -> np.ndarray:
    """Per-class scores of each image, to find the predicted class."""
    if isinstance(scorer, _KerasScorer):
        return scorer.estimator.predict_proba(sources)
    images = sources
    for step in scorer.image_steps:
        images = step.transform(images)
    f = scorer.extractor.transform(images)
    for step in scorer.between:
        f = step.transform(f)
    d = scorer.clf.decision_function(f)
    return np.column_stack([-d, d]) if d.ndim == 1 else d


def _default_layer(scorer) -> str:
    names = scorer.layer_names()
    for preferred in ("block5_pool", "sep_block5_pool", "block14_sepconv2_act"):
        if preferred in names:
            return preferred
    raise ValueError(f"give layer=...; valid names: {names}")


# --------------------------------------------------------------------------- IG


def integrated_gradients(estimator, X, target=None, steps: int = 32) -> list[np.ndarray]:
    """Integrated gradients of the class score with respect to the pixels (a black baseline).

    Returns one (H, W) map per image at the network's input side: the absolute attribution
    summed over colour channels, scaled to [0, 1]. Works for the same estimators as
    :func:`grad_cam` (first scale only for pipelines).
    """
    import tensorflow as tf

    scorer = _scorer(estimator)
    sources = check_image_sources(X)
    images = _images(scorer, sources)
    predicted = np.argmax(_decision(scorer, sources), axis=1) if target is None else None
    columns = _targets(scorer, target, len(images), predicted)
    name = _default_layer(scorer)
    sub = scorer.sub_model(name)
    side = scorer.sides[0]
    out = []
    for image, column in zip(images, columns):
        x = scorer.prepare(image, side)
        baseline = scorer.prepare(np.zeros_like(image), side)
        alphas = np.linspace(0, 1, steps + 1, dtype=np.float32)[1:, None, None, None]
        path = tf.constant(baseline + alphas * (x - baseline))
        with tf.GradientTape() as tape:
            tape.watch(path)
            outputs = sub(path, training=False)
            rest = outputs[1:]
            score = scorer.scores(list(rest))[:, int(column)]
        grads = tape.gradient(score, path).numpy().mean(axis=0)
        attribution = np.abs((x[0] - baseline[0]) * grads).sum(axis=-1)
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

    ``layers`` defaults to ``block1_pool`` … ``block5_pool`` where the model has them.
    The first tile is the image itself.
    """
    scorer = _scorer(estimator)
    if layers is None:
        layers = [f"block{i}_pool" for i in range(1, 6) if f"block{i}_pool" in
                  scorer.layer_names()]
    picture = load_image(image)
    tiles = [np.uint8(np.rint(resize_square(picture, side)))]
    for layer in layers:
        (heat,) = grad_cam(estimator, [image], layer=layer, target=target)
        tiles.append(cv2.resize(overlay(picture, heat, alpha), (side, side)))
    return np.concatenate(tiles, axis=1)
