"""The one door to Keras and to the backend it runs on (TensorFlow, JAX or PyTorch).

Keras 3 runs one model on any of the three backends, chosen by ``KERAS_BACKEND``. The few
operations Keras does not offer backend-neutrally live here, one function each:
:func:`gradients` (of a score with respect to tensors), :func:`shape_free_function` (a
model compiled once for every batch size and side) and the sizing of the backend's thread
pools. Nothing else in the package imports a backend.

Keras is imported once, quietly.

TensorFlow's C++ runtime writes its start-up lines (oneDNN, CUDA drivers, CPU features)
straight to the process's standard error, before its own log settings apply, so
``TF_CPP_MIN_LOG_LEVEL`` cannot hide them all. Keras is therefore imported — and its
devices initialised — with file descriptor 2 sent to a buffer; what was written there is
kept in :data:`STARTUP_LOG` and shown again only when the import fails. Set
the ``backend_logs`` setting (:func:`~cnnfeatures.set_config`, or
``CNNFEATURES_BACKEND_LOGS=1``) to let those lines through.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .config import get_config

__all__ = ["STARTUP_LOG", "available_devices", "backend_name", "concrete_function",
           "gradients", "keras_seeded", "load_keras",
           "load_tensorflow", "quiet_retracing", "shape_free_function", "worker_threads"]

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
            if get_config()["backend_logs"] or "keras" in sys.modules:
                import keras

                _size_thread_pools(keras)
            else:
                keras = _quiet_import()
            _KERAS = keras
    return _KERAS


def worker_threads() -> int | None:
    """Threads a network may use in this process, when it is one worker among several.

    The ``num_threads`` setting (default ``$CNNFEATURES_NUM_THREADS``), else
    ``$OMP_NUM_THREADS``, which joblib sets in its worker processes to their share of the
    cores (``GridSearchCV(n_jobs=k)``); None when neither is set (the backend then uses
    every core). Read when the backend starts: its thread pools are sized once.
    """
    threads = get_config()["num_threads"]
    if threads is not None:
        return threads
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _size_thread_pools(keras) -> None:
    """Keep a worker to its share of the cores: without this each of k joblib workers
    starts thread pools as large as the machine, and k x cores threads fight."""
    threads = worker_threads()
    if threads is None:
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # the runtime had started already (the user ran TensorFlow first)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
    # JAX: XLA fixes its CPU thread pool when it starts, and offers no call to resize
    # it; workers under JAX use the machine's cores (docs/backends.md).


def backend_name() -> str:
    """The Keras backend in use: ``"tensorflow"``, ``"jax"`` or ``"torch"``."""
    return load_keras().backend.backend()


def available_devices() -> list[str]:
    """The devices Keras' backend sees, as ``"cpu:0"``, ``"gpu:0"``, ...

    Examples
    --------
    >>> "cpu:0" in available_devices()
    True
    """
    backend = backend_name()
    if backend == "tensorflow":
        # "/device:CPU:0" -> "cpu:0"
        return [d.name.split("device:")[-1].lower()
                for d in load_tensorflow().config.list_logical_devices()]
    if backend == "jax":
        import jax

        found = []
        for platform in ("cpu", "gpu"):
            try:
                found += [f"{platform}:{i}" for i in range(len(jax.devices(platform)))]
            except RuntimeError:  # no such platform
                pass
        return found
    if backend == "torch":
        import torch

        return ["cpu:0"] + [f"gpu:{i}" for i in range(torch.cuda.device_count())]
    raise NotImplementedError(f"devices: the Keras backend {backend!r} is not supported")


def gradients(function, arguments):
    """Gradients of ``sum(function(*arguments))`` with respect to each argument.

    Parameters
    ----------
    function : callable
        Keras operations (``keras.ops``, Keras layers and models) on backend tensors.
    arguments : sequence of ndarray
        Where the gradient is taken (float32 arrays).

    Returns
    -------
    list of ndarray or None
        One per argument, with its shape; None where the value does not depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> keras = load_keras()
    >>> gradients(lambda x, y: keras.ops.square(x) * y, [np.float32([3.0]), np.float32([2.0])])
    [array([12.], dtype=float32), array([9.], dtype=float32)]
    """
    keras = load_keras()
    backend = keras.backend.backend()
    arguments = [np.asarray(a, dtype=np.float32) for a in arguments]
    if backend == "tensorflow":
        tf = load_tensorflow()
        tensors = [tf.constant(a) for a in arguments]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)  # every op is recorded, frozen layers' included
            value = keras.ops.sum(function(*tensors))
        return [None if g is None else np.asarray(g) for g in tape.gradient(value, tensors)]
    if backend == "torch":
        import torch

        tensors = [keras.ops.convert_to_tensor(a).detach().requires_grad_(True)
                   for a in arguments]
        value = torch.sum(function(*tensors))
        grads = torch.autograd.grad(value, tensors, allow_unused=True)
        return [None if g is None else g.detach().cpu().numpy() for g in grads]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def total(*tensors):
            return jnp.sum(function(*tensors))

        grads = jax.grad(total, argnums=tuple(range(len(arguments))))(
            *[jnp.asarray(a) for a in arguments])
        return [np.asarray(g) for g in grads]
    raise NotImplementedError(f"gradients: the Keras backend {backend!r} is not supported; "
                              "use tensorflow, jax or torch")


def shape_free_function(model):
    """``model`` in inference mode as a function of a float32 NHWC batch of any batch size
    and side, returning a list of ndarrays.

    TensorFlow traces it once for every shape (no retracing per scale); JAX and PyTorch
    run Keras' own ``predict_on_batch``, which compiles per input shape itself.
    """
    keras = load_keras()

    def as_list(out):
        return [np.asarray(keras.ops.convert_to_numpy(o))
                for o in (out if isinstance(out, (list, tuple)) else [out])]

    if keras.backend.backend() != "tensorflow":
        return lambda batch: as_list(model.predict_on_batch(np.asarray(batch, np.float32)))
    tf = load_tensorflow()
    fn = _inference_function(model)

    def read(batch):
        with quiet_retracing():  # each function traces once; TensorFlow counts them all
            return as_list(fn(tf.convert_to_tensor(batch, tf.float32)))

    return read


def concrete_function(model):
    """``model`` in inference mode as a TensorFlow concrete function of a float32 NHWC
    batch of any batch size and side: what graph converters (OpenVINO) read. TensorFlow
    backend only."""
    keras = load_keras()
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"converting a model for another runtime needs Keras' tensorflow "
                         f"backend; this process runs {keras.backend.backend()!r} "
                         "(set KERAS_BACKEND=tensorflow)")
    return _inference_function(model).get_concrete_function()


def _inference_function(model):
    """``model`` in inference mode, traced once for a float32 NHWC batch of any batch size
    and side (TensorFlow backend)."""
    tf = load_tensorflow()
    return tf.function(lambda x: model(x, training=False),
                       input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
                       reduce_retracing=True)


def load_tensorflow():
    """The ``tensorflow`` module, imported (quietly) through :func:`load_keras` first."""
    load_keras()
    import tensorflow

    return tensorflow


def _run_a_generator_dataset() -> None:
    """TensorFlow logs a line on standard error ("generator_dataset_op.cc ... Memory patch
    applied") the first time a dataset drawn from Python runs, which is a Keras fit's
    first epoch: run a one-element one while the start-up lines are muted."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_generator(
        lambda: iter((0,)), output_signature=tf.TensorSpec((), tf.int32))
    for _ in dataset:
        pass


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
            if keras.backend.backend() == "tensorflow":
                _run_a_generator_dataset()
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


@contextmanager
def keras_seeded(seed: int | None) -> Iterator[None]:
    """Layers built in the block draw their initial weights and their own random
    generators' seeds (dropout's) from ``seed``; every global generator is left as it was.

    Keras 3 takes an unseeded initialiser's or layer's seed from Python's ``random``
    module: it is seeded for the block and given its state back afterwards, so the user's
    ``random.random()`` sequence goes on unchanged (``keras.utils.set_random_seed`` would
    reseed Python's, NumPy's and the backend's global generators for good). None: nothing
    is seeded.

    Examples
    --------
    >>> import random
    >>> random.seed(1); expected = [random.random(), random.random()]
    >>> random.seed(1); first = random.random()
    >>> with keras_seeded(7):
    ...     a = load_keras().layers.Dense(2)
    ...     a.build((None, 3))
    >>> with keras_seeded(7):
    ...     b = load_keras().layers.Dense(2)
    ...     b.build((None, 3))
    >>> bool((a.get_weights()[0] == b.get_weights()[0]).all()), [first, random.random()] == expected
    (True, True)
    """
    if seed is None:
        yield
        return
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


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
