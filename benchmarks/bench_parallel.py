"""Each image through the network once, wherever the work runs: figures side by side.

Three measurements, each from a cold start in fresh processes (no cache), with the forward
passes of every process added up (``$CNNFEATURES_FORWARD_LOG``):

1. ``GridSearchCV`` over 2 layers x 2 poolings, cv=3, on ``--images`` images (VGG-16 offline
   weights): ``n_jobs=1`` against ``n_jobs=2``.
2. Extraction of ``--images`` images on a Dask ``LocalCluster`` of 2 worker processes
   against one process, then a grid search under ``joblib.parallel_config(backend="dask")``
   on the same cluster (it should forward nothing).
3. A grid like docs/models.md's (``FineTunedCNNClassifier``, frozen base, 2 learning rates
   x 2 dropouts, cv=3, at most 5 epochs, ``--model-images`` images) with this checkout's
   code and, given ``--old PATH`` (a checkout of an earlier commit), with that code.
4. The docs/models.md grid as written (frozen base or blocks 1-4, 2 learning rates, cv=3,
   up to 20 epochs), the same way: its cost is the training steps themselves.

Usage: python benchmarks/bench_parallel.py [--images 240] [--model-images 24] [--old PATH]
       [--data DIR] [--skip grid dask models docs]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
WEIGHTS = SHARED / "weights" / "vgg16_notop_imagenet.weights.h5"

PRELUDE = f"""
import os, sys, numpy as np
from pathlib import Path
data = Path(os.environ["BENCH_DATA"])
every = sorted(str(p) for p in data.glob("*/*/*") if p.suffix.lower() in (".jpg", ".jpeg",
                                                                          ".png"))
# Evenly spread over splits and classes.
paths = [every[i] for i in np.linspace(0, len(every) - 1, int(sys.argv[1])).astype(int)]
labels = np.array([Path(p).parent.name for p in paths])
W = {str(WEIGHTS)!r}
"""

GRID = PRELUDE + """
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC
from cnnfeatures import CNNFeatureExtractor
pipe = make_pipeline(CNNFeatureExtractor(backbone="vgg16", weights=W, layer="block5_pool"),
                     LinearSVC())
grid = {"cnnfeatureextractor__layer": ["block4_pool", "block5_pool"],
        "cnnfeatureextractor__pooling": ["mean", "max"]}
cv = StratifiedKFold(3, shuffle=True, random_state=0)
search = GridSearchCV(pipe, grid, cv=cv, n_jobs=int(sys.argv[2])).fit(paths, labels)
print(f"best {search.best_score_:.3f}")
"""

DOCS_GRID = PRELUDE + """
from sklearn.model_selection import GridSearchCV
from cnnfeatures import FineTunedCNNClassifier
search = GridSearchCV(
    FineTunedCNNClassifier(backbone="vgg16", weights=W, max_epochs=20, patience=5,
                           random_state=0),
    {"frozen": [("blocks",), ("block1", "block2", "block3", "block4")],
     "learning_rate": [1e-4, 1e-5]}, cv=3).fit(paths, labels)
print(f"best {search.best_score_:.3f}")
"""

SINGLE = PRELUDE + """
from cnnfeatures import CNNFeatureExtractor
CNNFeatureExtractor(backbone="vgg16", weights=W, layer="block5_pool", pooling="mean",
                    cache=sys.argv[2]).fit_transform(paths)
"""

DASK = PRELUDE + """
import time, joblib
from distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC
from cnnfeatures import CNNFeatureExtractor
from cnnfeatures.distributed import extract_distributed
from cnnfeatures.instrumentation import forward_log_total
ext = CNNFeatureExtractor(backbone="vgg16", weights=W, layer="block5_pool", pooling="mean",
                          cache=sys.argv[2])
start = time.perf_counter()
with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                  env={"CNNFEATURES_NUM_THREADS": "1"}) as cluster:
    extract_distributed(ext, paths, scheduler=cluster.scheduler_address, verbose=0)
    print(f"extraction {time.perf_counter() - start:.1f}")
    before = forward_log_total(sys.argv[3])
    with Client(cluster) as client, joblib.parallel_config(backend="dask"):
        pipe = make_pipeline(ext, LinearSVC())
        grid = {"cnnfeatureextractor__pooling": ["mean", "max"]}
        GridSearchCV(pipe, grid, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                     n_jobs=2).fit(paths, labels)
    print(f"grid forwards {forward_log_total(sys.argv[3]) - before}")
"""

MODELS = PRELUDE + """
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from cnnfeatures import FineTunedCNNClassifier
search = GridSearchCV(
    FineTunedCNNClassifier(backbone="vgg16", weights=W, frozen=("blocks",), max_epochs=5,
                           patience=5, validation_fraction=0.25, random_state=0),
    {"learning_rate": [1e-4, 1e-5], "dropout": [0.5, 0.3]},
    cv=StratifiedKFold(3, shuffle=True, random_state=0)).fit(paths, labels)
print(f"best {search.best_score_:.3f}")
"""


def run(code: str, *args: str, log: Path, pythonpath: str | None = None) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNFEATURES")}
    env["CNNFEATURES_FORWARD_LOG"] = str(log)
    env["BENCH_DATA"] = DATA_DIR
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args, str(log)], env=env,
                          cwd=pythonpath or ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return time.perf_counter() - start, done.stdout


DATA_DIR = str(SHARED / "data" / "mini_scene")


def forwards(log: Path) -> int:
    if not log.exists():
        return 0
    return sum(int(line.split()[-1]) for line in log.read_text().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--model-images", type=int, default=24)
    parser.add_argument("--old", help="a checkout of an earlier commit, for the models grid")
    parser.add_argument("--skip", nargs="*", default=[], choices=["grid", "dask", "models", "docs"])
    parser.add_argument("--data", default=str(SHARED / "data" / "mini_scene"),
                        help="images: <data>/<split>/<class>/*")
    args = parser.parse_args()
    global DATA_DIR
    DATA_DIR = args.data
    n = str(args.images)
    tmp = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    print(f"{os.cpu_count()} cores; {args.images} images of {Path(args.data).name}; "
          "VGG-16 offline weights")

    if "grid" not in args.skip:
        print("\n1. GridSearchCV 2 layers x 2 poolings, cv=3, cold start")
        results = {}
        for jobs in (1, 2):
            log = tmp / f"grid{jobs}.log"
            seconds, out = run(GRID, n, str(jobs), log=log)
            results[jobs] = seconds
            print(f"   n_jobs={jobs}: {seconds:6.1f} s, forward passes in all processes "
                  f"{forwards(log)} (images x scales = {args.images}), {out.strip()}")
        print(f"   n_jobs=2 / n_jobs=1 wall: {results[2] / results[1]:.2f} (target <= 1.2)")

    if "dask" not in args.skip:
        print("\n2. extraction: one process against a LocalCluster of 2 worker processes")
        log = tmp / "single.log"
        single, _ = run(SINGLE, n, str(tmp / "single-cache"), log=log)
        print(f"   one process: {single:6.1f} s, forward passes {forwards(log)}")
        log = tmp / "dask.log"
        total, out = run(DASK, n, str(tmp / "dask-cache"), log=log)
        lines = dict(line.rsplit(" ", 1) for line in out.strip().splitlines())
        extraction = float(lines["extraction"])
        print(f"   LocalCluster(2): {extraction:6.1f} s for the extraction (cluster start "
              f"included), forward passes {forwards(log)}; {total:.1f} s with the grid")
        print(f"   cluster / one process wall: {extraction / single:.2f} (target <= 1.15)")
        print(f"   grid search on the cluster (joblib dask backend): forward passes "
              f"{lines['grid forwards']}")

    if "models" not in args.skip:
        print(f"\n3. docs/models.md grid: FineTunedCNNClassifier, frozen base, 2 x 2, cv=3, "
              f"{args.model_images} images")
        now, out = run(MODELS, str(args.model_images), log=tmp / "models.log")
        print(f"   this checkout: {now:6.1f} s ({out.strip()}), forward passes "
              f"{forwards(tmp / 'models.log')}")
        if args.old:
            old, out = run(MODELS, str(args.model_images), log=tmp / "old.log",
                           pythonpath=args.old)
            print(f"   {args.old}: {old:6.1f} s ({out.strip()})")
            print(f"   speed-up: {old / now:.1f}x (target >= 5)")

    if "docs" not in args.skip:
        print(f"\n4. docs/models.md grid as written: frozen base or blocks 1-4 x 2 learning "
              f"rates, cv=3, up to 20 epochs, {args.model_images} images")
        now, out = run(DOCS_GRID, str(args.model_images), log=tmp / "docs.log")
        print(f"   this checkout: {now:6.1f} s ({out.strip()})")
        if args.old:
            old, out = run(DOCS_GRID, str(args.model_images), log=tmp / "docs-old.log",
                           pythonpath=args.old)
            print(f"   {args.old}: {old:6.1f} s ({out.strip()}); speed-up {old / now:.1f}x")


if __name__ == "__main__":
    main()
