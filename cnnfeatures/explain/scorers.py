"""Scorers: a fitted estimator's class scores as Keras operations, for the explanations.

A scorer turns one image into the network inputs of each scale (``inputs``) and, given
those inputs as tensors, returns the class scores (``forward``); ``split(layer)`` gives
two functions, inputs → the layer's activations at each scale (and what the scores need
besides), and activations → class scores. Everything is Keras operations, so Grad-CAM
and integrated gradients differentiate the very maths the fitted estimator applies, on
any Keras backend (see :func:`cnnfeatures.backend.gradients`).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..backend import load_keras
from ..images import resize_square

__all__ = ["KerasScorer", "PipelineScorer", "scorer_for"]


def _as_list(out) -> list:
    """A Keras model's outputs as a list (a one-output model returns its tensor)."""
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _model_after(model, layer: str, outputs):
    """``model`` from ``layer``'s output to ``outputs``, or an error naming the layer when
    the outputs depend on more than that layer's output (a residual connection)."""
    keras = load_keras()

    try:
        return keras.Model(model.get_layer(layer).output, outputs)
    except ValueError as exc:
        raise ValueError(
            f"layer {layer!r}: the class score depends on more than this layer's output "
            "(a residual connection bypasses it, or the layer is not before the score); "
            "explain a layer between blocks, such as the default") from exc


class KerasScorer:
    """Class scores of a fitted FineTunedCNNClassifier / HybridSepConvClassifier."""

    def __init__(self, estimator):
        self.estimator = estimator
        self.classes_ = estimator.classes_
        self.model = estimator.model_
        self.sides = (estimator.input_side_,)
        self._subs: dict = {}

    def layer_names(self):
        return [layer.name for layer in self.model.layers]

    def default_layer(self) -> str:
        # The last layer with a spatial map before the head (e.g. block5_pool).
        for layer in reversed(self.model.layers):
            if len(layer.output.shape) == 4:
                return layer.name
        raise ValueError(f"give layer=...; valid names: {self.layer_names()}")

    def inputs(self, image: np.ndarray) -> list[np.ndarray]:
        return [self.estimator.preprocess(resize_square(image, self.sides[0])[None])]

    def _logits(self, hidden):
        # The class score is taken before the softmax (as in Selvaraju et al.): a saturated
        # probability has vanishing gradients.
        ops = load_keras().ops
        head = self.model.layers[-1]
        return ops.matmul(hidden, head.kernel) + head.bias

    def forward(self, inputs):
        if None not in self._subs:
            keras = load_keras()
            self._subs[None] = keras.Model(self.model.input, self.model.layers[-1].input)
        return self._logits(self._subs[None](inputs[0], training=False))

    def split(self, layer: str):
        if layer not in self._subs:
            keras = load_keras()
            upto = keras.Model(self.model.input, self.model.get_layer(layer).output)
            after = _model_after(self.model, layer, self.model.layers[-1].input)
            self._subs[layer] = (upto, after)
        upto, after = self._subs[layer]

        def activations(inputs):
            return [np.asarray(load_keras().ops.convert_to_numpy(
                upto(inputs[0], training=False)))], None

        def scores(maps, context):
            return self._logits(after(maps[0], training=False))

        return activations, scores

    def decision(self, sources) -> np.ndarray:
        return self.estimator.predict_proba(sources)

    def panel_layers(self) -> list[str]:
        from ..backbones import get_backbone

        names = set(self.layer_names())
        return [n for n in get_backbone(self.estimator.backbone_).block_pools if n in names]


def _is_linear(estimator) -> bool:
    """A fitted classifier whose decision function is ``X @ coef_.T + intercept_``."""
    try:
        return (hasattr(estimator, "decision_function")
                and np.ndim(estimator.coef_) in (1, 2) and estimator.intercept_ is not None)
    except AttributeError:  # e.g. SVC(kernel="rbf").coef_
        return False


def _constant(value):
    """A float32 backend tensor (PyTorch will not mix its tensors with NumPy arrays)."""
    return load_keras().ops.convert_to_tensor(np.asarray(value, dtype=np.float32))


def _l2_normalize(f):
    """Rows scaled to unit L2 norm (as ``sklearn.preprocessing.normalize``; a zero row
    stays zero)."""
    ops = load_keras().ops
    return f / ops.sqrt(ops.maximum(ops.sum(ops.square(f), axis=1, keepdims=True), 1e-24))


def _differentiable_step(step):
    """The Keras-operations form of a scaler between the extractor and the classifier."""
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, Normalizer, StandardScaler

    if isinstance(step, StandardScaler):
        mean = 0.0 if step.mean_ is None else step.mean_
        scale = 1.0 if step.scale_ is None else step.scale_
        return lambda f: (f - _constant(mean)) / _constant(scale)
    if isinstance(step, Normalizer):
        if step.norm != "l2":
            raise ValueError(f"Normalizer(norm={step.norm!r}) cannot be differentiated here; "
                             "use norm='l2'")
        return _l2_normalize
    if isinstance(step, MaxAbsScaler):
        return lambda f: f / _constant(step.scale_)
    if isinstance(step, MinMaxScaler):
        return lambda f: f * _constant(step.scale_) + _constant(step.min_)
    raise ValueError(
        f"step {type(step).__name__} between the extractor and the classifier cannot be "
        "differentiated here; use StandardScaler, Normalizer, MaxAbsScaler or MinMaxScaler"
    )


class PipelineScorer:
    """Class scores of a fitted pipeline ending in a linear classifier, in Keras ops."""

    def __init__(self, pipeline):
        from ..extraction import CNNFeatureExtractor

        steps = [step for _, step in pipeline.steps if step not in (None, "passthrough")]
        index = next((i for i, s in enumerate(steps) if isinstance(s, CNNFeatureExtractor)),
                     None)
        if index is None:
            raise ValueError("the pipeline has no CNNFeatureExtractor step to explain")
        self.image_steps = steps[:index]
        self.extractor = steps[index]
        tail = steps[index + 1 :]
        if not tail or not _is_linear(tail[-1]):
            last = type(tail[-1]).__name__ if tail else "nothing"
            raise ValueError(
                "Grad-CAM needs the pipeline to end in a linear classifier (one with coef_ "
                f"and intercept_: LinearSVC, LogisticRegression, ...); it ends in {last}, "
                "whose score is not linear in the features"
            )
        self.between_steps = tail[:-1]
        self.between = [_differentiable_step(step) for step in self.between_steps]
        self.settings = self.extractor.settings_
        if self.settings.pooling is None:
            raise ValueError("the extractor returns local descriptors (pooling=None): its "
                             "VLAD/encoding tail cannot be differentiated; explain a pooled "
                             "pipeline")
        self.clf = tail[-1]
        self.classes_ = self.clf.classes_
        # Gradients in bfloat16 are too coarse for heatmaps: explain in float32 whatever
        # precision extracted the features (they differ by under 1%).
        self.net = self.extractor.feature_network(precision="float32")
        self.sides = self.extractor.input_sides_
        self._subs: dict = {}

    def layer_names(self):
        return list(self.net.layer_names)

    def default_layer(self) -> str:
        return self.net.spec.default_explain_layer

    def inputs(self, image: np.ndarray) -> list[np.ndarray]:
        return [self.net.preprocess(resize_square(image, side)[None]) for side in self.sides]

    def _pooled_scores(self, outputs_per_scale):
        """Class scores from the extractor layers' maps at each scale: the extractor's
        pooling, scale combination and L2, the scalers and the linear classifier."""
        ops = load_keras().ops
        settings = self.settings
        reduce = ops.mean if settings.pooling == "mean" else ops.max
        pooled = [[reduce(maps, axis=(1, 2)) for maps in outputs]
                  for outputs in outputs_per_scale]  # pooled[scale][layer]
        blocks = []
        for j in range(len(self.extractor.layers_)):
            per_scale = [vectors[j] for vectors in pooled]
            if settings.scale_combination == "concat":
                blocks.extend(per_scale)
            elif settings.pooling == "max":
                blocks.append(ops.max(ops.stack(per_scale), axis=0))
            else:
                blocks.append(ops.mean(ops.stack(per_scale), axis=0))
        if settings.l2_normalize:
            blocks = [_l2_normalize(b) for b in blocks]
        f = ops.concatenate(blocks, axis=1)
        for step in self.between:
            f = step(f)
        coef = np.atleast_2d(self.clf.coef_)
        scores = ops.matmul(f, _constant(coef.T)) + _constant(
            np.atleast_1d(self.clf.intercept_))
        if coef.shape[0] == 1:  # binary: the decision function scores class 1
            scores = ops.concatenate([-scores, scores], axis=1)
        return scores

    def _extractor_outputs(self):
        model = self.net.model
        return [model.get_layer(name).output for name in self.extractor.layers_]

    def forward(self, inputs):
        if None not in self._subs:
            keras = load_keras()
            self._subs[None] = keras.Model(self.net.model.input, self._extractor_outputs())
        return self._pooled_scores([_as_list(self._subs[None](x, training=False))
                                    for x in inputs])

    def split(self, layer: str):
        """Activations of ``layer`` at every scale, and the scores as a function of them;
        extractor layers before ``layer`` do not depend on it: they enter as constants."""
        keras = load_keras()
        model = self.net.model
        names = [lay.name for lay in model.layers]
        position = names.index(layer)
        later = [n for n in self.extractor.layers_ if names.index(n) > position]
        if layer not in self._subs:
            upto = keras.Model(model.input, [model.get_layer(layer).output] +
                               self._extractor_outputs())
            after = (_model_after(model, layer, [model.get_layer(n).output for n in later])
                     if later else None)
            self._subs[layer] = (upto, after)
        upto, after = self._subs[layer]

        def activations(inputs):
            maps, constants = [], []
            for x in inputs:
                outputs = [np.asarray(keras.ops.convert_to_numpy(o))
                           for o in upto(x, training=False)]
                maps.append(outputs[0])
                constants.append(outputs[1:])
            return maps, constants

        def scores(maps, constants):
            per_scale = []
            for x, fixed in zip(maps, constants):
                downstream = iter([] if after is None else _as_list(after(x, training=False)))
                per_scale.append([x if n == layer else next(downstream) if n in later
                                  else fixed[j] for j, n in enumerate(self.extractor.layers_)])
            return self._pooled_scores(per_scale)

        return activations, scores

    def decision(self, sources) -> np.ndarray:
        images = sources
        for step in self.image_steps:
            images = step.transform(images)
        f = self.extractor.transform(images)
        for step in self.between_steps:
            f = step.transform(f)
        d = self.clf.decision_function(f)
        return np.column_stack([-d, d]) if d.ndim == 1 else d

    def panel_layers(self) -> list[str]:
        return list(self.net.spec.block_pools)


def scorer_for(estimator):
    """The scorer of a fitted Keras classifier or feature + linear pipeline; a TypeError
    naming any other estimator."""
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, Pipeline):
        return PipelineScorer(estimator)
    from ..models import KerasImageClassifier

    if isinstance(estimator, KerasImageClassifier):
        check_is_fitted(estimator, "model_")
        return KerasScorer(estimator)
    raise TypeError(
        f"cannot explain a {type(estimator).__name__}: pass a fitted FineTunedCNNClassifier, "
        "HybridSepConvClassifier, or a Pipeline with a CNNFeatureExtractor and a linear "
        "classifier"
    )


