import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from cnnfeatures import CNNFeatureExtractor, LocalDescriptors, VLADEncoder
from cnnfeatures.descriptors import DescriptorWriter
from cnnfeatures.instrumentation import forward_pass_counts, reset_forward_pass_counts
from tests.conftest import VGG16_WEIGHTS, real_subset

A = np.array([[0, 0], [2, 0], [10, 10]], np.float32)
B = np.array([[1, 3], [10, 14], [10, 12]], np.float32)


def fitted(**params):
    return VLADEncoder(**{"k": 2, "pca_components": None, "random_state": 0, **params}).fit([A, B])


def test_vlad_by_hand():
    vlad = fitted(l2_normalize=False)
    centers = vlad.cluster_centers_
    order = np.argsort(centers[:, 0])  # centre (1, 1) first, then (10, 12)
    np.testing.assert_allclose(centers[order], [[1, 1], [10, 12]], atol=1e-5)
    out = vlad.transform([A, B]).reshape(2, 2, 2)[:, order].reshape(2, 4)
    # A: (0,0)-(1,1) + (2,0)-(1,1) = (0,-2); (10,10)-(10,12) = (0,-2)
    # B: (1,3)-(1,1) = (0,2); (10,14)-(10,12) + (10,12)-(10,12) = (0,2)
    np.testing.assert_allclose(out, [[0, -2, 0, -2], [0, 2, 0, 2]], atol=1e-5)
    normed = fitted().transform([A, B]).reshape(2, 2, 2)[:, order].reshape(2, 4)
    np.testing.assert_allclose(normed, [[0, -0.5**0.5, 0, -0.5**0.5], [0, 0.5**0.5] * 2],
                               atol=1e-6)


def test_power_and_intra_normalisation():
    x = np.array([[0, 0], [2, 0], [0, 1], [10, 10], [10, 16]], np.float32)
    raw = fitted(l2_normalize=False).transform([x])[0].reshape(2, 2)
    power = fitted(power_normalize=True, l2_normalize=False).transform([x])[0].reshape(2, 2)
    np.testing.assert_allclose(power, np.sign(raw) * np.sqrt(np.abs(raw)), atol=1e-6)
    intra = fitted(intra_normalize=True, l2_normalize=False).transform([x])[0].reshape(2, 2)
    np.testing.assert_allclose(np.linalg.norm(intra, axis=1), 1, atol=1e-6)


def test_order_invariance_and_unit_norm(rng):
    images = [rng.normal(size=(n, 6)).astype(np.float32) for n in (30, 45, 12)]
    vlad = VLADEncoder(k=4, pca_components=3, random_state=0).fit(images)
    out = vlad.transform(images)
    shuffled = [img[rng.permutation(len(img))] for img in images]
    np.testing.assert_allclose(vlad.transform(shuffled), out, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    assert out.shape == (3, 12) and out.dtype == np.float32
    assert vlad.get_feature_names_out()[:2].tolist() == ["vlad_c0_0", "vlad_c0_1"]


def test_same_seed_same_output(rng):
    images = [rng.normal(size=(40, 5)) for _ in range(4)]
    a = VLADEncoder(k=3, pca_components=2, max_fit_descriptors=50, random_state=7).fit(images)
    b = VLADEncoder(k=3, pca_components=2, max_fit_descriptors=50, random_state=7).fit(images)
    np.testing.assert_array_equal(a.transform(images), b.transform(images))
    assert a.n_fit_descriptors_ == 50
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.transform(images), a.transform(images))


def test_errors():
    with pytest.raises(ValueError, match=r"image\(s\) \[1\].*no local descriptors"):
        fitted().transform([A, np.zeros((0, 2), np.float32)])
    with pytest.raises(ValueError, match="k=5 centres need at least 5"):
        VLADEncoder(k=5, pca_components=None).fit([A])
    with pytest.raises(ValueError, match="pca_components=3"):
        VLADEncoder(k=2, pca_components=3).fit([A, B])
    with pytest.raises(ValueError, match="X has 3 features, but VLADEncoder is expecting 2"):
        fitted().transform([np.zeros((2, 3))])
    with pytest.raises(ValueError, match="NaN|infinity"):
        fitted().transform([np.full((2, 2), np.nan)])


def test_file_backed_descriptors_match_memory(rng, tmp_path):
    images = [rng.normal(size=(n, 4)).astype(np.float32) for n in (20, 7, 33, 15)]
    writer = DescriptorWriter(4, spill_bytes=200, directory=str(tmp_path))
    for img in images:
        writer.append(img, np.zeros(len(img)))
    on_disk = writer.finish()
    in_memory = LocalDescriptors.from_arrays(images)
    assert not on_disk.in_memory and in_memory.in_memory
    assert len(list(tmp_path.iterdir())) == 1
    for i in range(4):
        np.testing.assert_array_equal(on_disk[i], images[i])
    sub = on_disk[[3, 1]]
    np.testing.assert_array_equal(sub[0], images[3])
    np.testing.assert_array_equal(sub.data, np.concatenate([images[3], images[1]]))
    vlad = VLADEncoder(k=3, pca_components=2, random_state=0)
    np.testing.assert_allclose(vlad.fit(on_disk).transform(on_disk),
                               vlad.fit(in_memory).transform(in_memory), atol=1e-6)
    copy = pickle.loads(pickle.dumps(on_disk))  # carries the rows, not the path
    assert copy.in_memory
    np.testing.assert_array_equal(copy[2], images[2])
    del on_disk, sub, writer
    import gc

    gc.collect()
    assert list(tmp_path.iterdir()) == []  # the temporary file goes with its last user


def test_pipeline_gridsearch_over_k_reuses_activations(tiny_backbone, rng):
    from cnnfeatures.cache import get_cache

    get_cache().clear()
    reset_forward_pass_counts()
    X = rng.integers(0, 256, (12, 40, 40, 3), dtype=np.uint8)
    X[6:, :20] = 255  # class 1: bright top half
    y = np.array([0] * 6 + [1] * 6)
    pipe = make_pipeline(
        CNNFeatureExtractor(backbone="tiny", weights=None, layer="avg8", pooling=None,
                            scales=(0, 1)),
        VLADEncoder(random_state=0),
        LogisticRegression(),
    )
    grid = {"vladencoder__k": [2, 4], "vladencoder__pca_components": [None, 2]}
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert search.best_score_ > 0.6
    sides = {side: n for (_, _, _, side), n in forward_pass_counts().items()}
    assert sides == {224: 12, 544: 12}


@parametrize_with_checks([VLADEncoder(k=2, pca_components=None, random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
def test_vlad_pipeline_on_mini_scene():
    """Real scenes: VLAD of VGG-16's block5 descriptors separates them (chance: 1/3)."""
    from sklearn.svm import LinearSVC

    X_train, y_train = real_subset("mini_scene", "train", per_class=10)
    X_test, y_test = real_subset("mini_scene", "test", per_class=10)
    pipe = make_pipeline(
        CNNFeatureExtractor(backbone="vgg16", weights=VGG16_WEIGHTS, layer="block5_pool",
                            pooling=None, scales=(0,)),
        VLADEncoder(k=16, pca_components=64, random_state=0),
        LinearSVC(),
    ).fit(X_train, y_train)
    assert pipe.score(X_test, y_test) > 0.8
