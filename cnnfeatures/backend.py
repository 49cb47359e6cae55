"""The one door to Keras (and to the backend it runs on): imported once, quietly.

TensorFlow's C++ runtime writes its start-up lines (oneDNN, CUDA drivers, CPU features)
straight to the process's standard error, before its own log settings apply, so
``TF_CPP_MIN_LOG_LEVEL`` cannot hide them all. Keras is therefore imported — and its
devices initialised — with file descriptor 2 sent to a buffer; what was written there is
kept in :data:`STARTUP_LOG` and shown again only when the import fails. Set
``CNNFEATURES_BACKEND_LOGS=1`` to let those lines through.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["STARTUP_LOG", "load_keras", "load_tensorflow", "quiet_retracing", "worker_threads"]

#: What the backend wrote on standard error while it started (bytes decoded as text).
STARTUP_LOG: list[str] = []

_LOCK = threading.Lock()
_KERAS = None


def load_keras():
    """The ``keras`` module, imported on first use with the backend's start-up lines muted.

    Examples
    --------
    >>> load_keras().__name__
    'keras'
    """
    global _KERAS
    if _KERAS is not None:
        return _KERAS
    with _LOCK:
        if _KERAS is None:
            if os.environ.get("CNNFEATURES_BACKEND_LOGS") or "keras" in sys.modules:
                import keras

                _size_thread_pools(keras)
            else:
                keras = _quiet_import()
            _KERAS = keras
    return _KERAS


def worker_threads() -> int | None:
    """Threads a network may use in this process, when it is one worker among several.

    ``$CNNFEATURES_NUM_THREADS``, else ``$OMP_NUM_THREADS``, which joblib sets in its
    worker processes to their share of the cores (``GridSearchCV(n_jobs=k)``); None when
    neither is set (the backend then uses every core).
    """
    for name in ("CNNFEATURES_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _size_thread_pools(keras) -> None:
    """Keep a worker to its share of the cores: without this each of k joblib workers
    starts TensorFlow pools as large as the machine, and k x cores threads fight."""
    threads = worker_threads()
    if threads is None or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # the runtime had started already (the user ran TensorFlow first)


def load_tensorflow():
    """The ``tensorflow`` module, imported (quietly) through :func:`load_keras` first."""
    load_keras()
    import tensorflow

    return tensorflow


def _quiet_import():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real file descriptor 2 (some embedded consoles)
        import keras

        return keras
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import keras

            _size_thread_pools(keras)
            # Device discovery logs too (the CUDA driver probe): do it now, muted.
            keras.ops.convert_to_tensor([0.0])
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        STARTUP_LOG.append(sink.read().decode(errors="replace"))
    return keras


class _NoRetracingNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACING_FILTER = _NoRetracingNotes()


@contextmanager
def quiet_retracing() -> Iterator[None]:
    """Mute TensorFlow's "tf.function retracing" notes while the block runs.

    Every fit builds a new Keras model, so Keras traces new training and prediction
    functions each time, and TensorFlow's counter of recent traces then warns on every
    grid search. The note is about our loop, not the user's code: it is filtered from
    the ``tensorflow`` logger, for the duration of the block only.
    """
    logger = logging.getLogger("tensorflow")
    logger.addFilter(_RETRACING_FILTER)
    try:
        yield
    finally:
        logger.removeFilter(_RETRACING_FILTER)
