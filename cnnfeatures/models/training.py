"""The fit loop of the Keras classifiers, as parts: a :class:`Trainer` runs the epochs
with early stopping on the validation loss, an epoch clock and, given a
:class:`~cnnfeatures.models.checkpoint.TrainingCheckpoint`, the state saved after every
epoch; the estimator only says what to train on.

The callbacks whose state a resumed fit needs (early stopping's best weights and counters,
the epoch times) offer it as ``get_state()`` / ``set_state()``: the checkpoint saves and
restores them through those, without knowing their insides.
"""

from __future__ import annotations

import sys
import time

from ..backend import load_keras
from ..messages import is_terminal
from .checkpoint import TrainingCheckpoint

__all__ = ["Trainer", "early_stopping", "epoch_clock"]


def epoch_clock():
    """A Keras callback recording each epoch's wall time in ``seconds``."""
    keras = load_keras()

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

        def get_state(self) -> tuple[dict, list]:
            return {"seconds": [float(s) for s in self.seconds]}, []

        def set_state(self, state: dict, arrays: list) -> None:
            self.seconds[:] = state.get("seconds", [])

    return EpochClock()


def early_stopping(patience: int):
    """Keras' early stopping on the validation loss, the best weights restored at the end,
    with its state (best loss, epochs without improvement, best epoch and weights) offered
    to a checkpoint."""
    keras = load_keras()

    class EarlyStopping(keras.callbacks.EarlyStopping):
        def get_state(self) -> tuple[dict, list]:
            best = None if self.best is None else float(self.best)
            state = {"best": best, "wait": int(self.wait), "best_epoch": int(self.best_epoch)}
            return state, list(self.best_weights or [])

        def set_state(self, state: dict, arrays: list) -> None:
            self.best, self.wait = state["best"], state["wait"]
            self.best_epoch = state["best_epoch"]
            if arrays:
                self.best_weights = list(arrays)

    return EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)


class Trainer:
    """Runs the epochs of one fit.

    Parameters
    ----------
    max_epochs, patience : int
        Epochs at most; epochs without a better validation loss before stopping (only with
        validation data; the best weights are then restored).
    verbose : int
        Keras' display: 0 none, 1 a bar (one line per epoch outside a terminal), 2 a line
        per epoch.
    callbacks : sequence of keras.callbacks.Callback
        The user's, called after early stopping, the clock and the checkpoint.
    checkpoint : TrainingCheckpoint, optional
        Where the state is saved after every epoch, and resumed from.

    Attributes
    ----------
    epoch_seconds : list of float
        Wall time of every epoch, those of a resumed fit's first run included (after
        :meth:`fit`).
    """

    def __init__(self, *, max_epochs: int, patience: int, verbose: int = 0, callbacks=(),
                 checkpoint: TrainingCheckpoint | None = None):
        self.max_epochs, self.patience, self.verbose = max_epochs, patience, verbose
        self.callbacks, self.checkpoint = list(callbacks), checkpoint
        self.epoch_seconds: list[float] = []

    def fit(self, model, data, val_data=None) -> dict:
        """Train ``model`` (compiled) on ``data`` (from
        :func:`~cnnfeatures.models.inputs.epoch_batches`); the history, a list of values
        per metric and epoch."""
        clock = epoch_clock()
        stopping = None if val_data is None else early_stopping(self.patience)
        every = [c for c in (stopping, clock) if c is not None]
        resume, initial_epoch = None, 0
        if self.checkpoint is not None:
            resume = self.checkpoint.callback(early_stopping=stopping, clock=clock)
            initial_epoch = min(resume.initial_epoch(self.max_epochs), self.max_epochs)
            every.append(resume)  # after the two it restores, before callbacks that may raise
            data.start(initial_epoch)  # the batches the uninterrupted fit trains on next
        # shuffle=False: the batches shuffle themselves, from the fit's seed.
        history = model.fit(data, validation_data=val_data, epochs=self.max_epochs,
                            initial_epoch=initial_epoch, shuffle=False,
                            callbacks=every + self.callbacks, verbose=self._keras_verbose())
        self.epoch_seconds = clock.seconds
        if resume is None:
            return history.history
        self.checkpoint.remove()  # trained: what it kept is in the model now
        return resume.history

    def _keras_verbose(self) -> int:
        """Keras' bar rewrites one line with control characters, which a log file keeps
        as garbage; there, one line per epoch instead."""
        if not self.verbose:
            return 0
        return self.verbose if is_terminal(sys.stdout) else 2
