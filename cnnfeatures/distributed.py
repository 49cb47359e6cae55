"""Extraction on a Dask cluster: the images sharded over the workers, each forwarded once.

:func:`extract_distributed` fills an extractor's cache directory with the features of every
image, the work spread over the workers of a ``distributed`` cluster (an existing
scheduler's address, or a ``LocalCluster`` of worker processes started here). Workers
share the directory — the session directory of this process tree for a local cluster, a
folder on a filesystem every machine mounts for a multi-node one — and claim each image
before forwarding it, so each image goes through the network once per scale. Afterwards
any process reads the features from there: the extractor's own ``transform``, or a grid
search under ``joblib.parallel_config(backend="dask")``, forwards nothing.

Needs the ``[distributed]`` extra (``dask``, ``distributed``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

from sklearn.base import clone

from .cache import default_cache_dir
from .extraction import CNNFeatureExtractor
from .images import check_image_sources
from .instrumentation import forward_pass_counts
from .messages import Progress, announce

__all__ = ["DistributedExtraction", "extract_distributed"]


@dataclass
class DistributedExtraction:
    """What a distributed extraction did.

    Attributes
    ----------
    n_images : int
    forwards : dict of str to int
        Images forwarded (image × scale) by each worker, by address.
    images : dict of str to int
        Images each worker was given.
    seconds : float
    cache_dir : str
        Where the features are.
    """

    n_images: int
    forwards: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    seconds: float = 0.0
    cache_dir: str = ""

    @property
    def total_forwards(self) -> int:
        return sum(self.forwards.values())


def _fill_chunk(extractor: CNNFeatureExtractor, chunk) -> tuple[str, int, int]:
    """On a worker: compute (and so cache) the features of a chunk of images."""
    from distributed import get_worker

    before = sum(forward_pass_counts().values())
    clone(extractor).fit(chunk).transform(chunk)
    forwarded = sum(forward_pass_counts().values()) - before
    return get_worker().address, len(chunk), forwarded


def _client(scheduler: str | None, local_workers: int | None, threads: int | None):
    """A client and, for a local cluster, the cluster (to close)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("distributed extraction needs dask: pip install "
                          "'cnnfeatures[distributed]'") from None
    if scheduler is not None:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(
                f"cannot reach the dask scheduler at {scheduler} ({exc}); start one with "
                "`dask scheduler` (and workers with `dask worker <address>`), or pass "
                "local_workers (--local-cluster N) for worker processes on this machine"
            ) from None
    n = local_workers or 2
    per_worker = threads or max(1, (os.cpu_count() or 1) // n)
    # Each worker keeps TensorFlow to its share of the cores (see backend.worker_threads).
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=None,
                           env={"CNNFEATURES_NUM_THREADS": str(per_worker)})
    return Client(cluster), cluster


def extract_distributed(extractor: CNNFeatureExtractor, X, *, scheduler: str | None = None,
                        local_workers: int | None = None, threads: int | None = None,
                        chunk_size: int = 16, verbose: int = 1) -> DistributedExtraction:
    """Fill ``extractor``'s cache with the features of ``X`` on a Dask cluster.

    Parameters
    ----------
    extractor : CNNFeatureExtractor
        Unfitted or fitted; its ``cache`` must be a directory every worker reaches (or
        True, for this process tree's session directory with a local cluster).
    X : sequence of image sources
        Paths every worker can read (the same path on every machine), or arrays.
    scheduler : str, optional
        A running scheduler's address (``tcp://host:8786``). Without it, a
        ``LocalCluster`` of ``local_workers`` processes (default 2) is started and closed.
    threads : int, optional
        Threads per local worker (default: the cores shared out).
    chunk_size : int, default=16
        Images per task.
    verbose : int, default=1
        Progress lines: the images done in all and per worker.

    Returns
    -------
    DistributedExtraction

    Raises
    ------
    ConnectionError
        When the scheduler cannot be reached (the message says how to start one).
    ValueError
        When the cache is memory only, or a remote cluster is given no cache directory.

    Examples
    --------
    A local cluster of one worker process fills a cache folder; the extractor then reads
    the features from it without a forward pass (a cluster of machines: pass
    ``scheduler="tcp://host:8786"`` and a folder every machine reaches).

    >>> import tempfile
    >>> import numpy as np
    >>> from cnnfeatures import CNNFeatureExtractor
    >>> images = list(np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), np.uint8))
    >>> folder = tempfile.mkdtemp()
    >>> ext = CNNFeatureExtractor(backbone="vgg16", layer="block5_pool", pooling="mean",
    ...                           weights=None, cache=folder)
    >>> done = extract_distributed(ext, images, local_workers=1, verbose=0)
    >>> ext.fit(images).transform(images).shape  # read from the cache
    (3, 512)
    """
    sources = list(check_image_sources(X))
    if extractor.cache is False:
        raise ValueError("extractor.cache=False: the workers' features would be lost; give "
                         "a cache directory every worker can reach")
    directory = default_cache_dir() if extractor.cache is True else os.fspath(extractor.cache)
    if directory is None:
        raise ValueError("the extractor's cache is memory only ($CNNFEATURES_CACHE_DIR=none): "
                         "give cache=<directory> every worker can reach")
    if scheduler is not None and extractor.cache is True:
        raise ValueError("a remote cluster needs cache=<directory on a filesystem every "
                         "worker mounts>: this process's session directory is local")
    extractor = clone(extractor).set_params(cache=directory, verbose=0)
    start = time.perf_counter()
    client, cluster = _client(scheduler, local_workers, threads)
    result = DistributedExtraction(n_images=len(sources), cache_dir=directory)
    try:
        from distributed import as_completed

        workers = len(client.scheduler_info().get("workers", {})) or "?"
        announce(f"dask: {len(sources)} images on {workers} workers "
                 f"({client.scheduler.address})", verbose)
        chunks = [sources[k:k + chunk_size] for k in range(0, len(sources), chunk_size)]
        remote = client.scatter(extractor, broadcast=True)
        futures = client.map(_fill_chunk, [remote] * len(chunks), chunks, pure=False)
        forwards, images = Counter(), Counter()
        with Progress(len(sources), "dask extraction", verbose=verbose) as progress:
            for future in as_completed(futures):
                worker, n, forwarded = future.result()
                images[worker] += n
                forwards[worker] += forwarded
                progress.update(n)
        result.forwards, result.images = dict(forwards), dict(images)
        if verbose:
            for worker in sorted(images):
                announce(f"dask: {worker}: {images[worker]} images, {forwards[worker]} "
                         "forward passes", verbose)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    result.seconds = time.perf_counter() - start
    return result
