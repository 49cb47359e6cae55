"""Which cache an estimator's ``cache`` parameter means: one :class:`ActivationCache` per
directory per process (:func:`get_cache`), and the session directory that ``cache=True``
shares between a process and the workers it starts."""

from __future__ import annotations

import atexit
import os
import tempfile
import threading

from ..config import get_config
from ..memo import Memo
from .activations import ActivationCache
from .directory import MARKER_NAME, SHARD
from .memory import memory_cache

__all__ = ["SESSION_VARIABLE", "SessionCacheOnClone", "cache_for", "default_cache_dir", "get_cache",
           "session_cache_dir"]

#: Directory caches kept per process (each holds only its settings and counters: the
#: arrays are in the one memory cache and on disk).
CACHES = Memo("activation caches", 64)


#: Largest entry the session directory takes (a pooled vector of 64k floats); larger
#: local maps stay in memory, so that no temporary folder fills with VLAD's maps.
SESSION_ENTRY_BYTES = 256 << 10

#: The environment variable naming this process tree's shared cache directory.
SESSION_VARIABLE = "CNNFEATURES_SESSION_CACHE"
_SESSION_LOCK = threading.Lock()


def session_cache_dir() -> str:
    """This process tree's session directory: a temporary folder shared by the process
    that first needs it and the worker processes it starts afterwards (joblib's, for
    ``GridSearchCV(n_jobs=k)``), which inherit its name in ``$CNNFEATURES_SESSION_CACHE``.
    The process that names it removes the cache's files when it exits.

    Nothing is named before it is needed: the estimators ask for it when they are fitted,
    used or cloned (``GridSearchCV`` clones them before it starts its workers).
    """
    with _SESSION_LOCK:
        directory = os.environ.get(SESSION_VARIABLE)
        if directory is None:
            directory = os.path.join(tempfile.gettempdir(), f"cnnfeatures-session-"
                                     f"{os.getpid()}-{os.urandom(4).hex()}")
            os.environ[SESSION_VARIABLE] = directory
            atexit.register(_remove_session_cache, directory)
        return directory


def _remove_session_cache(directory: str) -> None:
    if not os.path.isdir(directory):
        return
    try:
        ActivationCache(directory, max_memory_bytes=1).clear()
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if name == MARKER_NAME:
                os.unlink(path)
            elif SHARD.match(name) and os.path.isdir(path) and not os.listdir(path):
                os.rmdir(path)
        os.rmdir(directory)
    except (OSError, ValueError):
        pass  # something not ours is there, or another process still writes: leave it


def default_cache_dir() -> str | None:
    """The disk part of ``cache=True``: the ``cache_dir`` setting (see
    :func:`~cnnfeatures.set_config`; default ``$CNNFEATURES_CACHE_DIR``): a directory,
    None (memory only), or ``"session"`` (the default): this process tree's
    :func:`session_cache_dir`, so that ``GridSearchCV(n_jobs=k)`` forwards each image
    once across processes.
    """
    setting = get_config()["cache_dir"]
    return session_cache_dir() if setting == "session" else setting


def get_cache(directory: str | os.PathLike[str] | None = None) -> ActivationCache:
    """The process-wide cache for a directory (None: memory only), created on first use.

    Every such cache shares the process's memory LRU (:func:`memory_cache`).

    Examples
    --------
    >>> get_cache() is get_cache()
    True
    """
    key = os.path.abspath(os.fspath(directory)) if directory is not None else None

    def create() -> ActivationCache:
        session = key is not None and key == os.environ.get(SESSION_VARIABLE)
        return ActivationCache(key, max_entry_bytes=SESSION_ENTRY_BYTES if session else None)

    memory_cache()  # sized by the setting now in effect
    return CACHES.get_or_compute(key, create)


def cache_for(cache: bool | str | os.PathLike[str]) -> ActivationCache | None:
    """The cache an estimator's ``cache`` parameter names: True, the process's cache with
    :func:`default_cache_dir` on disk; a path, that directory's; False, none.

    Examples
    --------
    >>> cache_for(False) is None, cache_for("/tmp/features") is get_cache("/tmp/features")
    (True, True)
    """
    if cache is False:
        return None
    return get_cache(default_cache_dir() if cache is True else cache)


class SessionCacheOnClone:
    """Mixin of estimators with a cache parameter (``_cache_parameter``, default
    ``"cache"``) where True means the session directory.

    A grid search's clones may run in worker processes, which inherit this process's
    environment when they start: cloning names the session directory first, so that
    they all share it.
    """

    _cache_parameter = "cache"

    def __sklearn_clone__(self):
        if getattr(self, self._cache_parameter) is True:
            default_cache_dir()
        return super().__sklearn_clone__()
