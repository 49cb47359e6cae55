"""The classification heads the Keras classifiers put on a backbone."""

from __future__ import annotations

from collections.abc import Sequence

from ..backend import load_keras

__all__ = ["dropout_head"]


def dropout_head(x, n_classes: int, units: Sequence[int], dropout: float, *,
                 dense_top: bool = True):
    """Figure 21's head on ``x``: Dense → Dropout → Dense → Dropout → softmax.

    With ``dense_top=False`` only the softmax is added (a head already built).
    """
    layers = load_keras().layers
    if dense_top:
        x = layers.Dense(units[0], activation="relu", name="fc1")(x)
        x = layers.Dropout(dropout, name="dropout1")(x)
        x = layers.Dense(units[1], activation="relu", name="fc2")(x)
        x = layers.Dropout(dropout, name="dropout2")(x)
    # float32 whatever the precision: a softmax in bfloat16 (8 bits of mantissa) rounds
    # probabilities near 1 to 1, and the cross-entropy and thresholds read them.
    return layers.Dense(n_classes, activation="softmax", dtype="float32",
                        name="predictions")(x)
