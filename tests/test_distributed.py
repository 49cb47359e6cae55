"""GridSearchCV under joblib's dask backend shares the disk cache and matches serial runs."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from cnnfeatures import CNNFeatureExtractor


@pytest.mark.slow
def test_gridsearch_under_dask_matches_serial(tmp_path, rng):
    distributed = pytest.importorskip("distributed")
    import joblib
    import keras

    # Weights in a file, so that every worker process builds the same network.
    keras.utils.set_random_seed(0)
    weights = tmp_path / "vgg16_random_notop.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None).save_weights(weights)

    X = rng.integers(0, 256, (12, 48, 48, 3), dtype=np.uint8)
    y = np.array([0, 1] * 6)
    pipe = make_pipeline(
        CNNFeatureExtractor(backbone="vgg16", weights=str(weights), cache=str(tmp_path / "c")),
        LogisticRegression(),
    )
    grid = {
        "cnnfeatureextractor__layer": ["block4_pool", "block5_pool"],
        "cnnfeatureextractor__pooling": ["mean", "max"],
    }
    serial = GridSearchCV(pipe, grid, cv=3).fit(X, y)

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            with joblib.parallel_config(backend="dask"):
                parallel = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)

            def forwarded():
                from cnnfeatures.instrumentation import forward_pass_counts

                return sum(forward_pass_counts().values())

            per_worker = client.run(forwarded)

    assert len(per_worker) == 2
    # The serial run filled the disk cache: the workers read it and forward nothing.
    assert sum(per_worker.values()) == 0
    for key in ("params", "mean_test_score", "split0_test_score", "rank_test_score"):
        assert list(map(str, serial.cv_results_[key])) == list(map(str, parallel.cv_results_[key]))
