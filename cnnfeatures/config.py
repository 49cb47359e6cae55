"""The library's settings, in scikit-learn's shape: :func:`get_config`, :func:`set_config`,
:func:`config_context`.

Each setting's default comes from an environment variable, read once, when a setting is
first asked for (importing cnnfeatures reads nothing and writes nothing). Worker
processes (joblib's, dask's) start from those variables: to reach them, set the variable
before they start, or pass the setting to the estimator where it has a parameter
(``CNNFeatureExtractor(cache=<directory>)``).

========================  ===============================  ===================================
setting                   environment variable             default
========================  ===============================  ===================================
``cache_dir``             ``CNNFEATURES_CACHE_DIR``        ``"session"``: a temporary folder
                                                           this process and its children
                                                           share, removed at exit; a path; or
                                                           None (``none``): memory only
``cache_memory_bytes``    ``CNNFEATURES_CACHE_MEMORY_      2 GiB: the process's memory cache
                          BYTES``
``weights_dirs``          ``CNNFEATURES_WEIGHTS_DIR``      none: folders searched for ImageNet
                          (``os.pathsep``-separated)       weights files before Keras' download
``max_image_bytes``       ``CNNFEATURES_MAX_IMAGE_BYTES``  1 GiB: the largest image file read
``num_threads``           ``CNNFEATURES_NUM_THREADS``      None: every core (a joblib worker:
                                                           ``$OMP_NUM_THREADS``, its share)
``tmp_dir``               ``CNNFEATURES_TMPDIR``           None: the system's temporary folder,
                                                           for descriptors spilled to disk
``backend_logs``          ``CNNFEATURES_BACKEND_LOGS``     False: the backend's start-up lines
                                                           on standard error are hidden
``forward_log``           ``CNNFEATURES_FORWARD_LOG``      None: a file where every process
                                                           appends the images it forwards
========================  ===============================  ===================================

Settings are per thread, on top of the process-wide ones :func:`set_config` changes (as
scikit-learn's are): the threads cnnfeatures starts itself (image loading) run with the
settings of the thread that started them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["carry_config", "config_context", "get_config", "set_config"]

DEFAULT_CACHE_MEMORY_BYTES = 2 << 30
#: 1 GiB holds any single radiograph or whole-slide thumbnail.
DEFAULT_MAX_IMAGE_BYTES = 1 << 30

#: Setting -> the environment variable its default is read from.
ENVIRONMENT = {
    "cache_dir": "CNNFEATURES_CACHE_DIR",
    "cache_memory_bytes": "CNNFEATURES_CACHE_MEMORY_BYTES",
    "weights_dirs": "CNNFEATURES_WEIGHTS_DIR",
    "max_image_bytes": "CNNFEATURES_MAX_IMAGE_BYTES",
    "num_threads": "CNNFEATURES_NUM_THREADS",
    "tmp_dir": "CNNFEATURES_TMPDIR",
    "backend_logs": "CNNFEATURES_BACKEND_LOGS",
    "forward_log": "CNNFEATURES_FORWARD_LOG",
}

_global: dict | None = None
_global_lock = threading.Lock()
_local = threading.local()


def _positive_int(name: str, value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{name} must be positive, got {number}")
    return number


def _optional_path(name: str, value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path or None, got {type(value).__name__}")
    return os.fspath(value) or None


def _check(name: str, value):
    """The setting's value, normalised; a ValueError or TypeError naming it otherwise."""
    if name == "cache_dir":
        return value if value == "session" else _optional_path(name, value)
    if name in ("cache_memory_bytes", "max_image_bytes"):
        return _positive_int(name, value)
    if name == "num_threads":
        return None if value is None else _positive_int(name, value)
    if name == "weights_dirs":
        if isinstance(value, (str, os.PathLike)):
            raise TypeError(f"weights_dirs must be a sequence of folders, got {value!r}")
        return tuple(os.fspath(v) for v in value)
    if name in ("tmp_dir", "forward_log"):
        return _optional_path(name, value)
    if name == "backend_logs":
        return bool(value)
    raise TypeError(f"unknown setting {name!r}; settings: {sorted(ENVIRONMENT)}")


def _from_environment(environ=os.environ) -> dict:
    """Every setting's default, from its environment variable where it is set."""
    read = {name: environ.get(variable, "") for name, variable in ENVIRONMENT.items()}

    def where(name: str, convert):
        try:
            return convert()
        except (TypeError, ValueError) as error:
            raise ValueError(f"${ENVIRONMENT[name]}: {error}") from None

    cache_dir = read["cache_dir"].strip()
    return {
        "cache_dir": ("session" if cache_dir == "" and "CNNFEATURES_CACHE_DIR" not in environ
                      else None if cache_dir.lower() in ("", "none") else cache_dir),
        "cache_memory_bytes": where("cache_memory_bytes", lambda: _check(
            "cache_memory_bytes", read["cache_memory_bytes"] or DEFAULT_CACHE_MEMORY_BYTES)),
        "weights_dirs": tuple(d for d in read["weights_dirs"].split(os.pathsep) if d),
        "max_image_bytes": where("max_image_bytes", lambda: _check(
            "max_image_bytes", read["max_image_bytes"] or DEFAULT_MAX_IMAGE_BYTES)),
        "num_threads": where("num_threads", lambda: _check(
            "num_threads", read["num_threads"] or None)),
        "tmp_dir": read["tmp_dir"] or None,
        "backend_logs": bool(read["backend_logs"]),
        "forward_log": read["forward_log"] or None,
    }


def _process_config() -> dict:
    global _global
    if _global is None:
        with _global_lock:
            if _global is None:
                _global = _from_environment()
    return _global


def _thread_config() -> dict:
    if not hasattr(_local, "config"):
        _local.config = {}
    return _local.config


def get_config() -> dict:
    """The settings in effect in this thread (a copy).

    Examples
    --------
    >>> from cnnfeatures import config_context, get_config
    >>> with config_context(max_image_bytes=1000):
    ...     get_config()["max_image_bytes"]
    1000
    """
    return {**_process_config(), **_thread_config()}


def set_config(**settings) -> None:
    """Change settings for the whole process (every thread without a context of its own).

    Parameters
    ----------
    **settings
        Any of the settings of the module's table, by name.

    Raises
    ------
    TypeError, ValueError
        Naming an unknown setting or a value it cannot take; nothing is changed then.
    """
    checked = {name: _check(name, value) for name, value in settings.items()}
    with _global_lock:
        global _global
        _global = {**(_global if _global is not None else _from_environment()), **checked}


@contextmanager
def config_context(**settings) -> Iterator[None]:
    """Settings for the ``with`` block, in this thread (and the threads cnnfeatures starts
    from it); the previous ones come back afterwards, even after an error.

    Examples
    --------
    >>> from cnnfeatures import config_context, get_config
    >>> with config_context(cache_dir=None):
    ...     get_config()["cache_dir"] is None
    True
    """
    checked = {name: _check(name, value) for name, value in settings.items()}
    local = _thread_config()
    before = dict(local)
    local.update(checked)
    try:
        yield
    finally:
        local.clear()
        local.update(before)


def carry_config(function: Callable) -> Callable:
    """``function`` to run in another thread with this thread's settings.

    The threads cnnfeatures starts (image loading) wrap their work with it, so that a
    ``config_context`` around ``transform`` reaches them.

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> from cnnfeatures import config_context, get_config
    >>> from cnnfeatures.config import carry_config
    >>> def read():
    ...     return get_config()["max_image_bytes"]
    >>> with config_context(max_image_bytes=1000), ThreadPoolExecutor(1) as pool:
    ...     pool.submit(carry_config(read)).result()
    1000
    """
    settings = dict(_thread_config())

    def with_settings(*args, **kwargs):
        with config_context(**settings):
            return function(*args, **kwargs)

    return with_settings
