"""Training state saved after every epoch, so that an interrupted fit resumes.

A full-budget fit on a CPU runs for hours; a killed process, a lost machine or the kernel's
out-of-memory killer would otherwise throw every finished epoch away. A
:class:`TrainingCheckpoint` keeps, in a folder named by what the fit is, the network's
weights and the optimizer's state (Keras' ``save_weights`` holds both), the state of its
random generators (dropout's: so that the resumed epochs draw the masks the uninterrupted
fit would have), the early-stopping state (best loss, best weights, epochs without
improvement), the history and the epoch times. The same fit started again finds the
folder and goes on after its last finished epoch; a finished fit removes its folder.

Keras' own ``BackupAndRestore`` keeps the weights, the optimizer and the epoch only: a fit
resumed with it would draw other dropout masks than the uninterrupted fit, forget the best
weights and the patience early stopping had counted, and lose the history. Its files are
not written atomically either.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np

from ..backbones import weights_fingerprint
from ..backend import load_keras
from ..cache import make_key
from .inputs import pixels_digest

__all__ = ["TrainingCheckpoint", "checkpoint_for", "fit_key"]

STATE_FILE = "state.json"


class TrainingCheckpoint:
    """The saved state of one fit, in ``directory/fit-<key>``.

    Parameters
    ----------
    directory : str or Path
        Shared by any number of fits (a grid search's): each has its own sub-folder.
    key : str
        What makes two fits the same (:func:`fit_key` of the estimator's parameters, its
        seed, its weights and the arrays it trains on). A fit never resumes another's
        state.

    Examples
    --------
    >>> import tempfile
    >>> checkpoint = TrainingCheckpoint(tempfile.mkdtemp(), "0123abcd")
    >>> checkpoint.path.name, checkpoint.load()
    ('fit-0123abcd', None)
    """

    def __init__(self, directory: str | os.PathLike[str], key: str):
        self.path = Path(directory) / f"fit-{key}"

    def load(self) -> dict | None:
        """The last saved state (epochs done, history, ...), or None: nothing to resume.

        A state that cannot be read back whole (a file the disk lost with the machine)
        is set aside with a warning: the fit starts from the beginning."""
        path = self.path / STATE_FILE
        try:
            with open(path) as f:
                state = json.load(f)
            int(state["epochs"]), bool(state["stopped"])  # the fields the fit goes on from
            missing = [state[name] for name in ("weights", "seeds", "best_weights")
                       if state.get(name) and not (self.path / state[name]).is_file()]
            if missing:
                raise FileNotFoundError(f"{', '.join(missing)} named by it are missing")
        except FileNotFoundError as error:
            if not path.exists():
                return None
            problem = error
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            problem = error
        else:
            return state
        warnings.warn(f"The training state in {path} cannot be resumed ({problem}); the fit "
                      "starts from the beginning.", UserWarning, stacklevel=3)
        return None

    def remove(self) -> None:
        """Forget the state (the fit finished). Only this fit's folder goes."""
        shutil.rmtree(self.path, ignore_errors=True)

    def callback(self, *, early_stopping=None, clock=None):
        """The Keras callback of this fit: it loads the saved state now (its
        ``initial_epoch(max_epochs)`` says where training goes on), restores it when
        training begins and saves the state after every epoch.

        ``early_stopping`` and ``clock`` are callbacks whose state belongs to the fit
        (``get_state()`` / ``set_state()``, see :mod:`cnnfeatures.models.training`); they
        reset themselves when training begins, so the returned callback goes after them.
        """
        keras = load_keras()
        checkpoint, state = self, self.load()

        class Resume(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.history = {k: list(v) for k, v in (state or {}).get("history",
                                                                         {}).items()}

            def initial_epoch(self, max_epochs: int) -> int:
                """The first epoch left to train: 0 for a fresh start, ``max_epochs`` for a
                fit that had stopped (early stopping, or a callback) before it returned."""
                if state is None:
                    return 0
                return max_epochs if state["stopped"] else int(state["epochs"])

            def on_train_begin(self, logs=None):
                if state is not None:
                    checkpoint._restore(self.model, state, early_stopping, clock)
                else:  # a fresh start: files of an attempt killed before its first state
                    checkpoint.remove()

            def on_epoch_end(self, epoch, logs=None):
                for name, value in (logs or {}).items():
                    self.history.setdefault(name, []).append(float(value))
                checkpoint._save(self.model, epoch + 1, self.history, early_stopping,
                                 clock, stopped=bool(self.model.stop_training))

            def on_train_end(self, logs=None):
                # A callback after this one may have stopped training at the last epoch.
                if self.model.stop_training:
                    checkpoint._mark_stopped()

        return Resume()

    # -- files: every file is written under a temporary name and renamed, the state file
    # last; it names the weight files it goes with, so a crash at any point leaves the
    # previous epoch's complete state.
    def _save(self, model, epochs: int, history: dict, early_stopping, clock, *,
              stopped: bool) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        weights = f"epoch-{epochs:04d}.weights.h5"
        _atomic(self.path / weights, lambda tmp: model.save_weights(tmp),
                suffix=".weights.h5")
        seeds = f"seeds-{epochs:04d}.npz"
        _atomic(self.path / seeds,
                lambda tmp: np.savez(tmp, *[v.numpy() for v in _seed_states(model)]),
                suffix=".npz")
        stopping, best = None, None
        if early_stopping is not None:
            stopping, best_weights = early_stopping.get_state()
            if best_weights:
                # Named by the epoch they come from: written again only when a better
                # epoch replaces them (hundreds of MB for VGG's head).
                best = f"best-{stopping['best_epoch'] + 1:04d}.npz"
                if not (self.path / best).exists():
                    _atomic(self.path / best, lambda tmp: np.savez(tmp, *best_weights),
                            suffix=".npz")
        state = {
            "epochs": epochs, "stopped": stopped, "history": history, "weights": weights,
            "seeds": seeds, "best_weights": best, "early_stopping": stopping,
            "epoch_seconds": [] if clock is None else clock.get_state()[0]["seconds"],
        }
        _atomic(self.path / STATE_FILE, lambda tmp: Path(tmp).write_text(json.dumps(state)))
        for old in self.path.iterdir():  # the previous epoch's files
            if old.name not in (STATE_FILE, weights, seeds, best):
                old.unlink(missing_ok=True)

    def _mark_stopped(self) -> None:
        state = self.load()
        if state is not None and not state["stopped"]:
            state["stopped"] = True
            _atomic(self.path / STATE_FILE,
                    lambda tmp: Path(tmp).write_text(json.dumps(state)))

    def _restore(self, model, state: dict, early_stopping, clock) -> None:
        for stray in self.path.iterdir():  # an attempt killed between its files and state
            if stray.name not in (STATE_FILE, state["weights"], state.get("seeds"),
                                  state.get("best_weights")):
                stray.unlink(missing_ok=True)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not optimizer.built:  # so its state has a place
            optimizer.build(model.trainable_variables)
        model.load_weights(self.path / state["weights"])
        if state.get("seeds"):  # states saved before 2026-12-03 have none
            with np.load(self.path / state["seeds"]) as f:
                for i, variable in enumerate(_seed_states(model)):
                    variable.assign(f[f"arr_{i}"])
        saved = state.get("early_stopping")
        if early_stopping is not None and saved is not None:
            arrays = []
            if state.get("best_weights"):
                with np.load(self.path / state["best_weights"]) as f:
                    arrays = [f[f"arr_{i}"] for i in range(len(f))]
            early_stopping.set_state(saved, arrays)
        if clock is not None:
            clock.set_state({"seconds": state.get("epoch_seconds", [])}, [])


def checkpoint_for(estimator, seed: int, arrays) -> TrainingCheckpoint | None:
    """The checkpoint of a Keras classifier's fit in its ``checkpoint_dir``, keyed by
    everything that makes the fit what it is (so a fit resumes only its own state), or
    None (no ``checkpoint_dir``, or a ``random_state`` that is not an int)."""
    if estimator.checkpoint_dir is None:
        return None
    if not isinstance(estimator.random_state, Integral):
        warnings.warn(
            f"checkpoint_dir={str(estimator.checkpoint_dir)!r} needs an int random_state: "
            f"with random_state={estimator.random_state!r} every fit draws another seed, so "
            "no fit could resume this one's state; none is saved.", UserWarning,
            stacklevel=5)
        return None
    params = {k: v for k, v in estimator.get_params(deep=False).items()
              if k not in ("verbose", "checkpoint_dir", "cache_frozen", "weights")}
    weights = "random" if estimator.weights is None else weights_fingerprint(estimator.weights)
    # Whether a prefix may be cached decides which network trains (the head alone, or
    # the whole): cache_frozen is part of the key, as the weights are by content.
    return TrainingCheckpoint(estimator.checkpoint_dir, fit_key(
        type(estimator).__name__, params, seed, weights=weights,
        cached=bool(estimator.cache_frozen), arrays=arrays))


def fit_key(estimator: str, params: dict, seed: int, *, weights: str, cached: bool,
            arrays) -> str:
    """What makes a fit the one it is, digested: the estimator's class and parameters,
    its seed, the weights it starts from (by content), whether its frozen prefix is
    cached (which decides the network that trains: the head alone, or the whole), and the
    arrays it trains on (images, labels, loss weights, validation images and labels). A
    fit resumes only a state saved under its own key."""
    # (The key of the states saved before this function existed: they still resume.)
    parts = [estimator, repr(dict(sorted(params.items()))), str(seed), str(bool(cached)),
             weights, *(pixels_digest(np.asarray(a)) for a in arrays)]
    return make_key("fit", *parts)


def _seed_states(model) -> list:
    """The model's random generators' states: its variables that are not weights
    (``save_weights`` leaves them out)."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _atomic(path: Path, write, suffix: str = "") -> None:
    """``write`` to a temporary name, flushed to the disk, then renamed over ``path``:
    after a crash, even of the machine, ``path`` holds the old content or the new."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    write(str(tmp))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):  # the rename itself (POSIX; Windows has no such sync)
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
