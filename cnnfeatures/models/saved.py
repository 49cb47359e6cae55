"""A fitted Keras model as part of a scikit-learn estimator: pickled as a ``.keras``
archive (no Python code, loaded with ``safe_mode``), summarised, its parameters counted."""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..backend import load_keras

__all__ = ["SavedKerasModel"]


class SavedKerasModel:
    """Mixin for estimators whose fitted network is ``model_``: pickles carry the model
    as a ``.keras`` archive (Keras objects themselves do not pickle), and drop
    ``_cached_prefix``, an object of this process."""

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_cached_prefix", None)  # Keras objects of this process: not pickled
        model = state.pop("model_", None)
        if model is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.keras")
                model.save(path)
                with open(path, "rb") as f:
                    state["_model_bytes"] = f.read()
        return state

    def __setstate__(self, state):
        data = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        if data is not None:
            keras = load_keras()

            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.keras")
                with open(path, "wb") as f:
                    f.write(data)
                # safe_mode: the archive holds no Python code (no Lambda layers) to run.
                self.model_ = keras.models.load_model(path, safe_mode=True, compile=False)

    def summary(self) -> str:
        """The Keras summary of the fitted model, as text."""
        check_is_fitted(self, "model_")
        buffer = io.StringIO()
        self.model_.summary(print_fn=lambda line, **kw: buffer.write(line + "\n"))
        return buffer.getvalue()

    def count_params(self, trainable_only: bool = False) -> int:
        """Number of (trainable) parameters of the fitted model."""
        check_is_fitted(self, "model_")
        weights = self.model_.trainable_weights if trainable_only else self.model_.weights
        return int(sum(np.prod(w.shape) for w in weights))
