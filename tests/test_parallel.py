"""Each image through the network once per scale, across processes (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnfeatures.instrumentation import forward_log_total

ROOT = Path(__file__).resolve().parents[1]

EXTRACT = """
import sys, numpy as np
from cnnfeatures import CNNFeatureExtractor
X = np.random.default_rng(3).integers(0, 255, (40, 48, 48, 3), dtype=np.uint8)
ext = CNNFeatureExtractor(backbone="vgg16", weights=None, layer="block3_pool",
                          pooling="mean", scales=(0,), batch_size=4, cache=sys.argv[1])
np.save(sys.argv[2], ext.fit_transform(X))
"""


def _env(log, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNFEATURES")}
    return {**env, "CNNFEATURES_FORWARD_LOG": str(log), "OMP_NUM_THREADS": "1", **extra}


def test_two_processes_on_one_cache_forward_each_image_once(tmp_path):
    log = tmp_path / "forwards.log"
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", EXTRACT, str(cache),
                               str(tmp_path / f"f{k}.npy")], cwd=ROOT, env=_env(log),
                              stderr=subprocess.PIPE) for k in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:]
    per_process = {}
    for line in log.read_text().splitlines():
        pid, _, _, n = line.split()
        per_process[pid] = per_process.get(pid, 0) + int(n)
    assert sum(per_process.values()) == 40  # each image once, in one process or the other
    a, b = (np.load(tmp_path / f"f{k}.npy") for k in range(2))
    np.testing.assert_allclose(a, b, rtol=1e-5)
    assert not list(cache.glob("*/*.claim"))  # every claim released


def test_a_dead_processs_claims_are_taken_over(tmp_path):
    from cnnfeatures.cache import ActivationCache, make_key

    cache = ActivationCache(tmp_path / "c", max_memory_bytes=10_000)
    key = make_key("image", 224)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    assert cache.claim(key)
    path = next((tmp_path / "c").glob("*/*.claim"))
    host = path.read_text().split()[0]
    path.write_text(f"{host} {dead}\n")  # a claim left by a process that is gone
    other = ActivationCache(tmp_path / "c", max_memory_bytes=10_000)
    assert not other.is_claimed(key) and other.claim(key)
    assert not cache.claim(key)  # held by a live process (this one) now


@pytest.mark.slow
def test_gridsearch_with_two_jobs_forwards_each_image_once(tmp_path):
    code = """
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from cnnfeatures import CNNFeatureExtractor
rng = np.random.default_rng(0)
X = rng.integers(0, 255, (24, 48, 48, 3), dtype=np.uint8)
y = np.arange(24) % 2
pipe = make_pipeline(CNNFeatureExtractor(backbone="vgg16", weights=None, layer="block4_pool"),
                     LogisticRegression())
grid = {"cnnfeatureextractor__layer": ["block4_pool", "block5_pool"],
        "cnnfeatureextractor__pooling": ["mean", "max"]}
search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
print(search.best_score_)
"""
    log = tmp_path / "forwards.log"
    env = {k: v for k, v in _env(log).items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    pids = {line.split()[0] for line in log.read_text().splitlines()}
    assert forward_log_total(log) == 24  # parent and workers together: each image once
    assert len(pids) >= 1


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    pytest.importorskip("distributed")
    from cnnfeatures import CNNFeatureExtractor
    from cnnfeatures.distributed import extract_distributed

    ext = CNNFeatureExtractor(backbone="vgg16", weights=None, cache=str(tmp_path / "c"))
    with pytest.raises(ConnectionError, match=r"cannot reach the dask scheduler at "
                                              r"tcp://127\.0\.0\.1:9 .*dask scheduler"):
        extract_distributed(ext, [np.zeros((8, 8, 3), np.uint8)],
                            scheduler="tcp://127.0.0.1:9", verbose=0)
    with pytest.raises(ValueError, match="remote cluster needs cache=<directory"):
        extract_distributed(CNNFeatureExtractor(weights=None), [np.zeros((8, 8, 3), np.uint8)],
                            scheduler="tcp://127.0.0.1:9", verbose=0)


@pytest.mark.slow
def test_local_cluster_extraction_forwards_each_image_once(tmp_path, monkeypatch, capsys):
    pytest.importorskip("distributed")
    from cnnfeatures import CNNFeatureExtractor
    from cnnfeatures.distributed import extract_distributed
    from cnnfeatures.instrumentation import forward_pass_counts, reset_forward_pass_counts

    log = tmp_path / "forwards.log"
    monkeypatch.setenv("CNNFEATURES_FORWARD_LOG", str(log))  # inherited by the workers
    X = list(np.random.default_rng(7).integers(0, 255, (8, 48, 48, 3), dtype=np.uint8))
    ext = CNNFeatureExtractor(backbone="vgg16", weights=None, layer="block3_pool",
                              pooling="mean", scales=(0, 1), cache=str(tmp_path / "c"))
    done = extract_distributed(ext, X, local_workers=2, chunk_size=2)
    assert done.n_images == 8 and done.total_forwards == 16  # 8 images x 2 scales
    assert len(done.images) == 2 and sum(done.images.values()) == 8  # both workers worked
    assert forward_log_total(log) == 16
    err = capsys.readouterr().err
    assert "dask: 8 images on 2 workers" in err and "forward passes" in err
    reset_forward_pass_counts()
    features = ext.fit(X).transform(X)
    assert features.shape == (8, 256) and sum(forward_pass_counts().values()) == 0
