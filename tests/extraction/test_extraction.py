import pickle

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils import estimator_checks as checks

from cnnfeatures import CNNFeatureExtractor, LocalDescriptors
from cnnfeatures.cache import get_cache
from cnnfeatures.instrumentation import forward_pass_counts, reset_forward_pass_counts
from tests.conftest import VGG16_WEIGHTS, proba_in_fresh_process, real_subset


def tiny(**params):
    defaults = dict(backbone="tiny", weights=None, layer="avg8", pooling="mean", cache=False)
    return CNNFeatureExtractor(**{**defaults, **params})


def images(rng, n=3, side=224):
    return rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def block_means(img, block):
    h, w, c = img.shape
    return img.reshape(h // block, block, w // block, block, c).mean(axis=(1, 3))


def count(side=224):
    return sum(v for (name, _, _, s), v in forward_pass_counts().items() if s == side)


# ---------------------------------------------------------------- values by hand


def test_mean_and_max_pooling_by_hand(tiny_backbone, rng):
    X = images(rng)
    x = X.astype(np.float64)
    mean = tiny(l2_normalize=False).fit_transform(X)
    np.testing.assert_allclose(mean, x.mean(axis=(1, 2)), rtol=1e-5)
    mx = tiny(pooling="max", l2_normalize=False).fit_transform(X)
    np.testing.assert_allclose(mx, [block_means(i, 8).max(axis=(0, 1)) for i in x], rtol=1e-5)
    m2 = tiny(layer="max2", pooling="mean", l2_normalize=False).fit_transform(X)
    expected = [block_means(block_means(i, 8), 1).reshape(14, 2, 14, 2, 3).max(axis=(1, 3))
                .mean(axis=(0, 1)) for i in x]
    np.testing.assert_allclose(m2, expected, rtol=1e-5)


def test_l2_and_layer_order(tiny_backbone, rng):
    X = images(rng)
    a = tiny(layer="avg8", l2_normalize=False).fit_transform(X)
    b = tiny(layer="max2", l2_normalize=False).fit_transform(X)
    both = tiny(layer=["max2", "avg8"]).fit_transform(X)
    assert both.shape == (3, 6) and both.dtype == np.float32
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(both, np.hstack([unit(b), unit(a)]), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(both[:, :3], axis=1), 1, rtol=1e-6)
    names = tiny(layer=["max2", "avg8"]).fit(X).get_feature_names_out()
    assert names.tolist() == ["max2_mean_0", "max2_mean_1", "max2_mean_2",
                              "avg8_mean_0", "avg8_mean_1", "avg8_mean_2"]


def test_scales_pool_and_concat(tiny_backbone, rng):
    X = images(rng, side=64)
    per_scale = [tiny(pooling="max", scales=(n,), l2_normalize=False).fit_transform(X)
                 for n in (0, 1)]
    pooled = tiny(pooling="max", scales=(0, 1), l2_normalize=False).fit_transform(X)
    np.testing.assert_allclose(pooled, np.maximum(*per_scale))
    mean_scales = [tiny(scales=(n,), l2_normalize=False).fit_transform(X) for n in (0, 1)]
    mean_pooled = tiny(scales=(0, 1), l2_normalize=False).fit_transform(X)
    np.testing.assert_allclose(mean_pooled, (mean_scales[0] + mean_scales[1]) / 2, rtol=1e-6)
    concat = tiny(scales=(0, 1), scale_combination="concat", l2_normalize=False)
    np.testing.assert_allclose(concat.fit_transform(X), np.hstack(mean_scales))
    assert concat.get_feature_names_out()[3] == "avg8_n1_mean_0"


def test_local_descriptors(tiny_backbone, rng):
    X = images(rng, n=2, side=50)
    local = tiny(pooling=None, scales=(0, 1), l2_normalize=False).fit_transform(X)
    assert isinstance(local, LocalDescriptors) and len(local) == 2
    assert local.counts.tolist() == [28 * 28 + 68 * 68] * 2
    assert local.n_features == 3 and local.data.dtype == np.float32
    assert np.bincount(local.scales[: local.counts[0]]).tolist() == [28 * 28, 68 * 68]
    # The mean of an image's descriptors at one scale is the mean-pooled feature.
    pooled = tiny(scales=(0,), l2_normalize=False).fit_transform(X)
    np.testing.assert_allclose(local[1][: 28 * 28].mean(axis=0), pooled[1], rtol=1e-5)
    normed = tiny(pooling=None).fit_transform(X)
    np.testing.assert_allclose(np.linalg.norm(normed.data, axis=1), 1, rtol=1e-5)
    assert len(local[[1, 0]]) == 2 and np.array_equal(local[[1, 0]][0], local[1])


def test_paths_and_arrays_of_any_size_agree(tiny_backbone, image_files):
    from cnnfeatures.images import load_image

    arrays = [np.asarray(Image.open(p)) for p in image_files]
    from_paths = tiny(pooling="max").fit_transform(image_files)
    from_arrays = tiny(pooling="max").fit_transform(arrays)
    np.testing.assert_array_equal(from_paths, from_arrays)
    assert from_paths.shape == (4, 3)
    assert load_image(image_files[0]).shape == (40, 30, 3)


# ---------------------------------------------------------------- fc through the extractor


def test_fc2_at_scale_0_equals_dense_output(rng, tmp_path):
    import keras

    keras.utils.set_random_seed(3)
    stock = keras.applications.VGG16(include_top=True, weights=None)
    path = tmp_path / "vgg16_top.weights.h5"
    stock.save_weights(path)
    X = images(rng, n=2, side=100)
    ext = CNNFeatureExtractor(backbone="vgg16", weights=path, layer="fc2", pooling="max",
                              l2_normalize=False, cache=False)
    ours = ext.fit_transform(X)
    from cnnfeatures.images import load_image

    x = keras.applications.vgg16.preprocess_input(np.stack([load_image(i, 224) for i in X]))
    dense = keras.Model(stock.input, stock.get_layer("fc2").output)
    ref = keras.ops.convert_to_numpy(dense.predict_on_batch(x))
    assert np.abs(ours - ref).max() / np.abs(ref).max() <= 1e-5


# ---------------------------------------------------------------- cache


def test_gridsearch_forwards_each_image_once_per_scale(tiny_backbone, rng):
    get_cache().clear()
    reset_forward_pass_counts()
    X = images(rng, n=12, side=40)
    y = np.array([0, 1] * 6)
    pipe = make_pipeline(tiny(cache=True), LogisticRegression())
    grid = {
        "cnnfeatureextractor__layer": ["avg8", "max2", ["avg8", "max2"]],
        "cnnfeatureextractor__pooling": ["mean", "max"],
        "cnnfeatureextractor__scales": [(0,), (1,)],
    }
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert len(search.cv_results_["params"]) == 12
    assert count(224) == 12 and count(544) == 12


def test_vgg_one_pass_serves_block5_fc1_fc2(rng):
    get_cache().clear()
    reset_forward_pass_counts()
    X = images(rng, n=2, side=64)
    for layer in ("block5_pool", "fc1", "fc2"):
        for pooling in ("mean", "max"):
            CNNFeatureExtractor(backbone="vgg16", weights=None, layer=layer,
                                pooling=pooling).fit_transform(X)
    assert count(224) == 2


def test_changed_file_is_a_miss_and_same_content_a_hit(tiny_backbone, tmp_path, rng):
    get_cache().clear()
    reset_forward_pass_counts()
    path = tmp_path / "a.png"
    Image.fromarray(images(rng, 1, 32)[0]).save(path)
    ext = tiny(cache=True).fit([path])
    first = ext.transform([path])
    ext.transform([path])
    assert count() == 1
    copy = tmp_path / "copy.png"
    copy.write_bytes(path.read_bytes())
    ext.transform([copy])
    assert count() == 1
    Image.fromarray(images(rng, 1, 32)[0]).save(path)
    second = ext.transform([path])
    assert count() == 2 and not np.allclose(first, second)


def test_disk_cache_shared_across_processes(tiny_backbone, tmp_path, rng):
    reset_forward_pass_counts()
    X = images(rng, n=3, side=32)
    ext = tiny(cache=str(tmp_path / "c"))
    a = ext.fit_transform(X)
    assert get_cache(tmp_path / "c").info().disk_entries > 0
    get_cache(tmp_path / "c").clear(disk=False)  # as if in a fresh process
    b = ext.transform(X)
    np.testing.assert_array_equal(a, b)
    assert count() == 3  # read back from disk, no new forward pass
    files = list((tmp_path / "c").glob("*/*.npy"))
    np.load(files[0], allow_pickle=False)  # stored without pickles


def test_no_cache_recomputes(tiny_backbone, rng):
    reset_forward_pass_counts()
    X = images(rng, n=2, side=32)
    ext = tiny(cache=False).fit(X)
    ext.transform(X)
    ext.transform(X)
    assert count() == 4


# ---------------------------------------------------------------- sklearn conventions


def test_fit_does_no_forward_pass(tiny_backbone, rng):
    reset_forward_pass_counts()
    ext = tiny().fit(images(rng))
    assert count() == 0 and ext.n_features_out_ == 3 and ext.input_sides_ == (224,)


def test_clone_pickle_and_pandas(tiny_backbone, rng):
    X = images(rng)
    ext = tiny(layer=["avg8", "max2"], scales=(0, 1)).fit(X)
    assert clone(ext).get_params() == ext.get_params()
    restored = pickle.loads(pickle.dumps(ext))
    np.testing.assert_array_equal(restored.transform(X), ext.transform(X))
    frame = tiny().set_output(transform="pandas").fit_transform(X)
    assert list(frame.columns) == ["avg8_mean_0", "avg8_mean_1", "avg8_mean_2"]
    with pytest.raises(ValueError, match="ragged"):
        tiny(pooling=None).set_output(transform="pandas").fit_transform(X)


def test_pickled_pipeline_in_fresh_process(tiny_backbone, rng, tmp_path):
    X = images(rng, n=6, side=32)
    pipe = make_pipeline(tiny(), LogisticRegression()).fit(X, [0, 1] * 3)
    setup = (
        "import tests.conftest as c\n"
        "from cnnfeatures.backbones import BackboneSpec, register_backbone\n"
        "register_backbone(BackboneSpec('tiny', '', c._tiny_builder, 32, 8, (), ('avg8',),"
        " preprocess=lambda a: a))\n"
    )
    np.testing.assert_allclose(proba_in_fresh_process(pipe, X, tmp_path, setup),
                               pipe.predict_proba(X), rtol=1e-6)


@pytest.mark.parametrize("params, message", [
    (dict(layer="nope"), r"unknown layer\(s\) \['nope'\].*avg8"),
    (dict(backbone="alexnet"), "unknown backbone 'alexnet'"),
    (dict(scales=(-1,)), "0 <= n <= 5"),
    (dict(scales=(9,)), "0 <= n <= 5"),
    (dict(scales=1), "scales.*tuple"),
    (dict(scales=(0, 0)), "repeat"),
    (dict(pooling=None, layer=["avg8", "max2"]), "one layer at a time"),
    (dict(layer=["avg8", "avg8"]), "twice"),
    (dict(pooling="median"), "pooling"),
    (dict(batch_size=0), "batch_size"),
])
def test_parameter_errors(tiny_backbone, rng, params, message):
    with pytest.raises((ValueError, TypeError), match=message):
        tiny(**params).fit(images(rng, 1, 32))


def test_bad_images_named_in_errors(tiny_backbone, tmp_path):
    from cnnfeatures import ImageLoadError

    bad = tmp_path / "bad.png"
    bad.write_text("text")
    with pytest.raises(ImageLoadError, match="bad.png: not an image"):
        tiny().fit_transform([bad])
    with pytest.raises(ImageLoadError, match=r"X\[1\]: contains NaN"):
        tiny().fit_transform([np.zeros((8, 8)), np.full((8, 8), np.nan)])


def test_transform_before_fit_raises(tiny_backbone, rng):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        tiny().transform(images(rng, 1))


# The API checks of scikit-learn that do not feed 2-D numeric X. The others generate
# (n_samples, n_features) float matrices, which are not images: our tags say
# two_d_array=False, and scikit-learn itself then skips them. Their intent is covered
# above: clone/pickle (test_clone_pickle_and_pandas), fit returns self and does not alter
# params (test_fit_does_no_forward_pass), unfitted errors, subset and order invariance
# (test_subset_and_order_invariance).
API_CHECKS = [
    checks.check_estimator_cloneable,
    checks.check_estimator_tags_renamed,
    checks.check_valid_tag_types,
    checks.check_estimator_repr,
    checks.check_no_attributes_set_in_init,
    checks.check_do_not_raise_errors_in_init_or_set_params,
    checks.check_mixin_order,
    checks.check_parameters_default_constructible,
    checks.check_get_params_invariance,
    checks.check_set_params,
]


@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks(check):
    check("CNNFeatureExtractor", CNNFeatureExtractor())


def test_sklearn_skips_numeric_checks_by_tag():
    from sklearn.utils import get_tags

    tags = get_tags(CNNFeatureExtractor())
    assert not tags.input_tags.two_d_array and tags.input_tags.three_d_array


def test_subset_and_order_invariance(tiny_backbone, rng):
    X = images(rng, n=5, side=48)
    ext = tiny(pooling="max").fit(X)
    full = ext.transform(X)
    np.testing.assert_array_equal(ext.transform(X[[4, 2, 0]]), full[[4, 2, 0]])
    np.testing.assert_array_equal(ext.transform(X[3:4]), full[3:4])


# ---------------------------------------------------------------- real data


@pytest.mark.slow
def test_gridsearch_on_mini_scene_with_offline_vgg16(tmp_path):
    """Real scenes, the offline ImageNet VGG-16: a grid over layers, poolings and scales
    forwards each image once per scale, and scores far above chance (1/3)."""
    from sklearn.svm import LinearSVC

    X, y = real_subset("mini_scene", "train", per_class=6)
    reset_forward_pass_counts()
    # A cache of its own: other tests (and their subprocesses) share the session's.
    pipe = make_pipeline(CNNFeatureExtractor(backbone="vgg16", weights=VGG16_WEIGHTS,
                                             cache=str(tmp_path / "cache")),
                         LinearSVC())
    grid = {
        "cnnfeatureextractor__layer": ["block4_pool", "block5_pool"],
        "cnnfeatureextractor__pooling": ["mean", "max"],
        "cnnfeatureextractor__scales": [(0,), (1,)],
    }
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert search.best_score_ > 0.85  # 3 balanced classes: chance is 0.33 (measured: 1.0)
    assert count(224) == 18 and count(544) == 18
