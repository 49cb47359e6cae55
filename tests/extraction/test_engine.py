"""engine="openvino": the same features as Keras in float32, int8 calibrated and keyed
apart, every layer kind and scale, grids that forward each image once, pickles."""

import importlib

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from cnnfeatures import CNNFeatureExtractor
from cnnfeatures.cache import get_cache
from cnnfeatures.extraction.calibration import calibration_sources
from cnnfeatures.instrumentation import forward_pass_counts, reset_forward_pass_counts
from tests.conftest import REGISTER_TINY_VGG, proba_in_fresh_process

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def extractor(**params):
    defaults = dict(backbone="tiny_vgg", weights=None, random_state=0, cache=False,
                    layer=["block3_pool", "block5_pool"])
    return CNNFeatureExtractor(**{**defaults, **params})


def images(rng, n=6, side=48):
    return rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("pooling, scales, combination", [
    ("mean", (0,), "pool"), ("max", (0, 1), "pool"), ("mean", (0, 1), "concat")])
def test_float32_engine_gives_keras_features(tiny_vgg_backbone, rng, pooling, scales,
                                             combination):
    X = images(rng)
    params = dict(pooling=pooling, scales=scales, scale_combination=combination)
    keras = extractor(**params).fit_transform(X)
    openvino = extractor(**params, engine="openvino").fit_transform(X)
    np.testing.assert_allclose(openvino, keras, rtol=1e-4, atol=1e-6)


def test_local_descriptors_on_the_engine(tiny_vgg_backbone, rng):
    X = images(rng, n=2, side=64)
    keras = extractor(layer="block3_pool", pooling=None).fit_transform(X)
    openvino = extractor(layer="block3_pool", pooling=None, engine="openvino").fit_transform(X)
    np.testing.assert_allclose(openvino.data, keras.data, rtol=1e-4, atol=1e-6)


def test_vgg16_fc_layers_as_convolutions_convert(rng):
    X = images(rng, n=2, side=64)
    params = dict(backbone="vgg16", layer=["block5_pool", "fc1", "fc2"])
    keras = extractor(**params).fit_transform(X)
    openvino = extractor(**params, engine="openvino").fit_transform(X)
    np.testing.assert_allclose(openvino, keras, rtol=1e-4, atol=1e-5)


def test_int8_is_close_deterministic_and_keyed_by_its_calibration(tiny_vgg_backbone, rng):
    X = images(rng, n=8)
    keras = extractor().fit_transform(X)
    first = extractor(engine="openvino", precision="int8", calibration=4).fit(X)
    again = extractor(engine="openvino", precision="int8", calibration=4).fit(X)
    assert cosines(first.transform(X), keras).min() > 0.99
    assert first.settings_.label == again.settings_.label
    assert first.settings_.label.startswith("openvino-int8-")
    np.testing.assert_array_equal(first.transform(X), again.transform(X))
    other = extractor(engine="openvino", precision="int8", calibration=3).fit(X)
    assert other.settings_.label != first.settings_.label  # other images, other key


def test_features_of_one_engine_are_never_served_to_another(tiny_vgg_backbone, rng):
    get_cache().clear()
    X = images(rng, n=4)
    reset_forward_pass_counts()
    for params in ({}, {"engine": "openvino"},
                   {"engine": "openvino", "precision": "int8", "calibration": 2}):
        extractor(cache=True, **params).fit_transform(X)
        extractor(cache=True, **params).fit_transform(X)  # the second one: from the cache
    labels = sorted(precision for (_, _, precision, _) in forward_pass_counts())
    assert len(labels) == 3 and labels[:2] == ["float32", "openvino-float32"]
    assert sum(forward_pass_counts().values()) == 3 * len(X)


def test_a_grid_with_a_fixed_calibration_forwards_each_image_once_per_scale(
        tiny_vgg_backbone, rng):
    get_cache().clear()
    X, y = images(rng, n=12), np.array([0, 1] * 6)
    calibration = images(np.random.default_rng(7), n=3)
    pipe = make_pipeline(extractor(cache=True, engine="openvino", precision="int8",
                                   calibration=calibration, layer="block5_pool"),
                         LogisticRegression())
    grid = {"cnnfeatureextractor__layer": ["block4_pool", "block5_pool"],
            "cnnfeatureextractor__pooling": ["mean", "max"],
            "cnnfeatureextractor__scales": [(0,), (1,)]}
    reset_forward_pass_counts()
    GridSearchCV(pipe, grid, cv=3).fit(X, y)
    counts = {side: n for (_, _, _, side), n in forward_pass_counts().items()}
    assert counts == {224: 12, 544: 12}


def test_calibration_images_are_evenly_spaced_or_given():
    assert calibration_sources(list(range(10)), 4) == [0, 2, 5, 7]
    assert calibration_sources(list(range(3)), 300) == [0, 1, 2]
    with pytest.raises(ValueError, match="calibration is empty"):
        calibration_sources([1], [])


def test_int8_pickle_compiles_again_in_a_fresh_process(tiny_vgg_backbone, rng, tmp_path):
    X, y = images(rng, n=8), np.array([0, 1] * 4)
    pipe = make_pipeline(extractor(engine="openvino", precision="int8", calibration=4),
                         LogisticRegression()).fit(X, y)
    fresh = proba_in_fresh_process(pipe, X, tmp_path, setup=REGISTER_TINY_VGG)
    np.testing.assert_allclose(fresh, pipe.predict_proba(X), rtol=1e-6)


def test_precisions_each_engine_has(tiny_vgg_backbone, rng):
    X = images(rng, n=2)
    with pytest.raises(ValueError, match=r"precision='int8' is not one of engine='keras''s"):
        extractor(precision="int8").fit(X)
    with pytest.raises(ValueError, match=r"precision='float16' is not one of "
                                         r"engine='openvino''s"):
        extractor(engine="openvino", precision="float16").fit(X)


def test_a_missing_runtime_says_what_to_install(tiny_vgg_backbone, rng, monkeypatch):
    real = importlib.import_module

    def without_openvino(name, *args):
        if name in ("openvino", "nncf"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr("cnnfeatures.backbones.openvino.importlib.import_module",
                        without_openvino)
    with pytest.raises(ImportError, match=r"engine='openvino' needs the openvino package, "
                                          r"which is not installed: pip install "
                                          r"\"cnnfeatures\[openvino\]\""):
        extractor(engine="openvino").fit(images(rng, n=2))


@pytest.mark.slow
def test_parallel_workers_convert_and_compile_their_own_engine(rng):
    from sklearn.model_selection import cross_val_score

    X, y = images(rng, n=12, side=32), np.array([0, 1] * 6)
    # A registry backbone (workers are fresh processes: no test registration there).
    pipe = make_pipeline(extractor(backbone="mobilenet_v2", layer=None, engine="openvino"),
                         LogisticRegression())
    parallel = cross_val_score(pipe, X, y, cv=2, n_jobs=2)
    np.testing.assert_allclose(parallel, cross_val_score(pipe, X, y, cv=2, n_jobs=1))


def test_candidates_reading_the_same_layers_share_one_quantized_model(tiny_vgg_backbone, rng):
    from cnnfeatures.extraction.calibration import QUANTIZED
    from cnnfeatures.memo import memo_info

    X = images(rng, n=6)
    calibration = images(np.random.default_rng(3), n=3)
    QUANTIZED.clear()
    one = extractor(layer=["block4_pool", "block5_pool"], engine="openvino", precision="int8",
                    calibration=calibration).fit(X)
    other = extractor(layer=["block5_pool", "block4_pool"], engine="openvino",
                      precision="int8", calibration=calibration).fit(X)
    assert memo_info()["int8 quantized models"][0] == 1
    assert one.quantized_ is other.quantized_
    # Each reads its layers in its own order from the one model (32 and 40 channels).
    a, b = one.transform(X), other.transform(X)
    np.testing.assert_array_equal(a[:, :32], b[:, 40:])
    np.testing.assert_array_equal(a[:, 32:], b[:, :40])
