import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils import estimator_checks as checks

from cnnfeatures import FineTunedCNNClassifier, HybridSepConvClassifier, ImageAugmenter
from cnnfeatures.models.prefix import frozen_prefix
from tests.conftest import REGISTER_TINY_VGG, proba_in_fresh_process

pytestmark = pytest.mark.usefixtures("tiny_vgg_backbone")


def small(**params):
    """tiny_vgg (VGG's blocks in miniature) at 32x32, a tiny head: about a second per
    fit. Tests of VGG itself (its sizes, its fc parts, memory) name vgg16."""
    defaults = dict(backbone="tiny_vgg", weights=None, input_side=32, head_units=(16, 8),
                    dropout=0.0, learning_rate=1e-3, batch_size=8, max_epochs=5, patience=5,
                    random_state=0)
    return FineTunedCNNClassifier(**{**defaults, **params})


def test_hybrid_parameter_counts_match_figures_31_32():
    model = HybridSepConvClassifier(backbone="vgg19", weights=None)._build(2)
    assert model.count_params() == 30_020_930
    counts = {layer.name: layer.count_params() for layer in model.layers}
    expected = {
        "block1_conv1": 1_792, "block3_conv4": 590_080,
        "sep_block4_conv1": 133_888, "sep_block4_bn1": 2_048, "sep_block4_conv2": 267_264,
        "sep_block4_bn2": 2_048, "sep_block4_conv3": 267_264, "sep_block5_conv1": 267_264,
        "sep_block5_conv3": 267_264, "fc1": 25_691_136, "fc2": 524_800, "predictions": 1_026,
    }
    assert {k: counts[k] for k in expected} == expected
    assert "sep_block5_bn3" not in counts and "block4_conv1" not in counts
    assert frozen_prefix(model) == "block3_pool"
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 30_020_930 - 2_325_568 - 4 * 1024  # VGG blocks 1-3, BN statistics


@pytest.mark.parametrize("frozen, trainable", [
    ((), 139_578_434),                  # Table 8, row "-"
    (("fc2",), 122_797_122),            # Table 8, row "fc2"
    (("blocks", "fc1"), 16_789_506),    # fc2 + predictions
])
def test_vgg19_table_8_trainable_counts(frozen, trainable):
    model = FineTunedCNNClassifier(backbone="vgg19", weights=None, head="original",
                                   frozen=frozen)._build(2)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable


def test_fit_predict_any_labels(task):
    X, y = task
    clf = small(max_epochs=15, patience=15).fit(X, y)
    assert clf.classes_.tolist() == ["a", "b"]
    proba = clf.predict_proba(X)
    assert proba.shape == (24, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert clf.score(X, y) >= 0.9
    assert clf.frozen_prefix_cached_  # blocks frozen, no augmentation
    assert set(clf.history_) >= {"loss", "val_loss", "accuracy", "val_accuracy"}


def test_early_stopping_restores_the_best_epoch(task):
    X, y = task
    rng = np.random.default_rng(1)
    noisy = rng.permutation(y)  # nothing to learn: validation loss soon rises
    X_val, y_val = X[:8], noisy[:8]
    clf = small(max_epochs=40, patience=3, learning_rate=1e-2, frozen=()).fit(
        X[8:], noisy[8:], validation_data=(X_val, y_val))
    assert clf.n_epochs_ < 40
    assert clf.n_epochs_ == clf.best_epoch_ + 3
    proba = clf.predict_proba(X_val)
    # Keras' cross-entropy clips probabilities to [1e-7, 1 - 1e-7] (a softmax may give 0).
    picked = np.clip(proba[np.arange(8), np.searchsorted(clf.classes_, y_val)], 1e-7, 1 - 1e-7)
    loss = -np.mean(np.log(picked))
    np.testing.assert_allclose(loss, min(clf.history_["val_loss"]), rtol=1e-3)


def test_same_seed_same_predictions_and_class_weight_matters(task):
    X, y = task
    a = small(random_state=3).fit(X, y).predict_proba(X)
    b = small(random_state=3).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    weighted = small(random_state=3, class_weight={"a": 1.0, "b": 20.0}).fit(X, y)
    assert not np.allclose(weighted.predict_proba(X), a)
    balanced = small(random_state=3, class_weight="balanced").fit(X, y)
    assert balanced.predict_proba(X).shape == (24, 2)


def test_augmentation_trains_the_full_model(task):
    X, y = task
    clf = small(augmentation=ImageAugmenter(rotation=10), max_epochs=2).fit(X, y)
    assert not clf.frozen_prefix_cached_ and clf.n_epochs_ == 2


def test_groups_keep_patients_on_one_side(task):
    X, y = task
    from cnnfeatures.models.inputs import validation_split

    groups = np.repeat(np.arange(12), 2)
    train, val = validation_split(np.searchsorted(["a", "b"], y), groups, 0.25, seed=0,
                                  max_epochs=5)
    assert not set(groups[train]) & set(groups[val]) and len(val) == 6


@pytest.mark.parametrize("kind", ["finetuned", "hybrid"])
def test_pickle_in_a_fresh_process(task, tmp_path, kind):
    X, y = task
    if kind == "hybrid":
        clf = HybridSepConvClassifier(backbone="tiny_vgg", weights=None, input_side=32,
                                      filters=8, head_units=(8, 4), max_epochs=2,
                                      random_state=0).fit(X, y)
    else:
        clf = small(max_epochs=2).fit(X, y)
    np.testing.assert_array_equal(proba_in_fresh_process(clf, X, tmp_path, REGISTER_TINY_VGG),
                                  clf.predict_proba(X))


def test_gridsearch_over_frozen_sets(task):
    X, y = task
    # (The dropout head's fc1 is new: freezing it is an error, so the grid freezes blocks.)
    search = GridSearchCV(small(max_epochs=2), {
        "frozen": [("blocks",), ("block1", "block2")],
        "learning_rate": [1e-3],
    }, cv=2, error_score="raise").fit(X, y)
    assert len(search.cv_results_["params"]) == 2
    assert clone(search.best_estimator_).get_params()["frozen"] in [("blocks",),
                                                                    ("block1", "block2")]


@pytest.mark.parametrize("frozen, head, message", [
    (("block9",), "dropout", r"frozen: unknown part\(s\) \['block9'\] for backbone 'vgg16'; "
                             r"valid parts: \['blocks', 'block1', .*'block5', 'fc1', 'fc2'\]"),
    (("blocks", "fc1"), "dropout", r"would freeze \['fc1'\], which the head='dropout' "
                                   "initialises at random"),
])
def test_frozen_parts_checked_before_building(task, frozen, head, message):
    X, y = task
    with pytest.raises(ValueError, match=message):
        small(backbone="vgg16", frozen=frozen, head=head).fit(X, y)


def test_hybrid_fits_small(task):
    X, y = task
    clf = HybridSepConvClassifier(
        backbone="tiny_vgg", weights=None, input_side=32, filters=8, head_units=(8, 4),
        dropout=0.0, learning_rate=1e-3, max_epochs=3, random_state=0).fit(X, y)
    assert clf.frozen_prefix_cached_ and clf.n_epochs_ == 3
    assert clf.predict(X).shape == (24,)


def test_hybrid_separable_blocks_keep_the_signal_scale(rng):
    """Three separable convolutions in a row must not shrink activations ~1e4 times.

    (With Keras' default initialisation they did, and the network predicted a uniform
    distribution after a CPU-sized training.)
    """
    import keras

    model = HybridSepConvClassifier(backbone="vgg16", weights=None, input_side=64,
                                    random_state=0)._build(2)
    names = ["sep_block4_bn1", "sep_block4_conv3", "sep_block5_conv3"]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    outputs = probe.predict_on_batch(rng.normal(size=(4, 64, 64, 3)).astype("float32"))
    bn1, conv3, last = (np.abs(keras.ops.convert_to_numpy(o)).mean() for o in outputs)
    assert 0.3 < conv3 / bn1 < 3 and 0.3 < last / bn1 < 3


def test_hybrid_learns_in_prediction_mode(task):
    """After a few epochs, predictions (moving BatchNorm statistics) follow the classes."""
    X, y = task
    clf = HybridSepConvClassifier(
        backbone="vgg16", weights=None, input_side=32, filters=16, head_units=(16, 8),
        dropout=0.0, learning_rate=1e-3, max_epochs=10, patience=10, batch_size=4,
        random_state=0).fit(X, y)
    assert clf.score(X, y) >= 0.9


def test_errors(task):
    X, y = task
    with pytest.raises(ValueError, match="unknown part"):
        small(frozen=("block9x",)).fit(X, y)
    with pytest.raises(ValueError, match="X has 24 images, y has shape"):
        small().fit(X, y[:5])
    with pytest.raises(ValueError, match="single class"):
        small().fit(X, np.zeros(24))
    # The hybrid cuts a backbone after a pooled block: VGG and its like, by the registry.
    with pytest.raises(ValueError, match="backbone 'xception' has no pooled blocks"):
        HybridSepConvClassifier(backbone="xception", weights=None, input_side=96).fit(X, y)


def test_memory_is_stable_over_consecutive_fits(task):
    import resource

    X, y = task
    rss = []
    for _ in range(6):  # VGG-16: a model kept alive would hold 59 MB of weights
        small(backbone="vgg16", max_epochs=1).fit(X, y)
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    # MiB: no model or graph kept alive between fits (three kept would be 177 MiB more).
    assert rss[-1] - rss[2] < 150


API_CHECKS = [
    checks.check_estimator_cloneable, checks.check_estimator_repr,
    checks.check_no_attributes_set_in_init, checks.check_parameters_default_constructible,
    checks.check_get_params_invariance, checks.check_set_params,
    checks.check_do_not_raise_errors_in_init_or_set_params, checks.check_mixin_order,
    checks.check_valid_tag_types, checks.check_estimator_tags_renamed,
]


# The numeric checks feed 2-D float matrices, not images: the tags say two_d_array=False
# and scikit-learn skips them; their intent (fit returns self, classes_, predict_proba sums
# to one, clone, pickling, determinism) is tested above on images.
@pytest.mark.parametrize("estimator", [FineTunedCNNClassifier(), HybridSepConvClassifier()],
                         ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks(estimator, check):
    check(type(estimator).__name__, estimator)


def test_frozen_prefix_is_computed_once_per_image_across_a_grid(task):
    """A grid over what follows the frozen prefix computes each image's prefix once."""
    from cnnfeatures.cache import clear_memory_cache
    from cnnfeatures.instrumentation import forward_pass_counts, reset_forward_pass_counts

    X, y = task
    X = X.copy()
    X[:, 0, 0] = 7  # images no other test forwarded
    clear_memory_cache()
    reset_forward_pass_counts()
    search = GridSearchCV(small(max_epochs=2), {"learning_rate": [1e-3],
                                                "dropout": [0.0, 0.3]}, cv=2).fit(X, y)
    prefix = {k: n for k, n in forward_pass_counts().items() if k[0].endswith("frozen prefix")}
    assert len(prefix) == 1  # one prefix identity: same weights, same layers
    assert sum(prefix.values()) == len(X)  # 2 candidates x 2 folds + refit: each image once
    assert search.best_estimator_.frozen_prefix_cached_


def test_cache_frozen_directory_holds_the_prefixes_across_fits(task, tmp_path):
    """cache_frozen=<path>: the prefix activations go to that directory, and a new
    estimator naming it forwards nothing through the prefix."""
    from cnnfeatures.cache import clear_memory_cache
    from cnnfeatures.instrumentation import forward_pass_counts

    X, y = task
    directory = tmp_path / "prefixes"

    def prefix_passes():
        return sum(n for key, n in forward_pass_counts().items() if "frozen prefix" in key[0])

    clear_memory_cache()
    before = prefix_passes()
    clf = small(cache_frozen=str(directory), max_epochs=1).fit(X, y)
    assert clf.frozen_prefix_cached_ is True  # a bool, whatever cache_frozen holds
    assert prefix_passes() - before == len(X)
    assert len(list(directory.rglob("*.npy"))) == len(X)
    clear_memory_cache()  # only the directory can answer now
    before = prefix_passes()
    small(cache_frozen=directory, max_epochs=1, learning_rate=1e-2).fit(X, y)
    assert prefix_passes() == before


def test_augmentation_views_computes_each_views_prefix_once(task):
    """augmentation_views=2: the images and two fixed views of each go through the frozen
    prefix once; a second fit (another learning rate, same seed, same views) forwards
    nothing, and the views are cached, not recomputed at every epoch."""
    from cnnfeatures.cache import clear_memory_cache
    from cnnfeatures.instrumentation import forward_pass_counts

    def prefix_passes():
        return sum(n for key, n in forward_pass_counts().items() if "frozen prefix" in key[0])

    X, y = task
    X = X.copy()
    X[:, 0, 1] = 5  # images no other test forwarded
    clear_memory_cache()
    augmenter = ImageAugmenter(rotation=20, random_state=0)
    before = prefix_passes()
    clf = small(augmentation=augmenter, augmentation_views=2, max_epochs=3).fit(
        X[:16], y[:16], validation_data=(X[16:], y[16:]))
    assert clf.frozen_prefix_cached_ and clf.n_epochs_ == 3
    assert prefix_passes() - before == 16 * 3 + 8  # train images x (1 + 2 views), val once
    before = prefix_passes()
    small(augmentation=augmenter, augmentation_views=2, max_epochs=3,
          learning_rate=1e-2).fit(X[:16], y[:16], validation_data=(X[16:], y[16:]))
    assert prefix_passes() == before


def test_views_batches_take_one_version_of_each_image_per_epoch():
    from cnnfeatures.augmentation import AugmentationPolicy
    from cnnfeatures.models.inputs import draw_views, epoch_batches

    images = np.random.default_rng(0).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    views = draw_views(images, AugmentationPolicy(rotation=30), 3, seed=0)
    assert views.shape == (4, 10, 16, 16, 3) and views.dtype == np.uint8
    np.testing.assert_array_equal(views[0], images)
    assert all(not np.array_equal(views[v], images) for v in (1, 2, 3))
    # An image's views depend on the seed and its pixels, not on the other images: folds
    # of a cross-validation share them (and their cached prefixes).
    np.testing.assert_array_equal(
        draw_views(images[3:7], AugmentationPolicy(rotation=30), 3, seed=0), views[:, 3:7])
    assert not np.array_equal(
        draw_views(images, AugmentationPolicy(rotation=30), 3, seed=1)[1:], views[1:])
    # Each image is tagged with its index in every pixel, to follow it through the batches.
    tagged = np.broadcast_to(np.arange(10, dtype=np.float32)[None, :, None],
                             (4, 10, 3)).copy() + np.arange(4)[:, None, None] * 100
    data = epoch_batches(tagged, np.arange(10), 4, lambda x: x, None, seed=0, views=True)
    chosen = []
    for _ in range(5):
        seen = np.concatenate([data[b][0][:, 0] for b in range(len(data))])
        assert sorted(seen % 100) == list(range(10))  # every image once per epoch
        chosen.append(seen // 100)
        data.on_epoch_end()
    assert len({tuple(c) for c in chosen}) > 1 and set(np.concatenate(chosen)) == {0, 1, 2, 3}


def test_augmentation_views_without_augmentation_is_an_error(task):
    X, y = task
    with pytest.raises(ValueError, match="augmentation_views=2 draws views with `augmentation`"):
        small(augmentation_views=2).fit(X, y)


def test_bfloat16_training_leaves_the_global_policy_alone(task, tmp_path):
    from cnnfeatures.backend import load_keras
    from cnnfeatures.cache import get_cache

    keras = load_keras()
    X, y = task
    before = keras.config.dtype_policy().name
    clf = small(precision="bfloat16", max_epochs=15, patience=15,
                cache_frozen=tmp_path).fit(X, y)
    assert keras.config.dtype_policy().name == before
    conv = clf.model_.get_layer("block1_conv1")
    assert (conv.compute_dtype, conv.variable_dtype) == ("bfloat16", "float32")
    assert clf.model_.get_layer("predictions").compute_dtype == "float32"
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64 and np.allclose(proba.sum(axis=1), 1)
    assert clf.score(X, y) == 1.0 and clf.precision_ == "bfloat16"
    # Its frozen prefix is another computation than float32's: other cache entries.
    entries = get_cache(tmp_path).info().disk_entries
    assert entries > 0
    small(max_epochs=1, cache_frozen=tmp_path).fit(X, y)
    assert get_cache(tmp_path).info().disk_entries == 2 * entries


def test_float16_training_scales_the_loss(task):
    """float16 needs loss scaling (its gradients underflow): Keras adds it for models
    built under mixed_float16, the head trained on a cached prefix included."""
    from cnnfeatures.backend import load_keras

    keras = load_keras()
    X, y = task
    seen = []

    class Optimizer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(type(self.model.optimizer).__name__)

    for cache_frozen in (True, False):
        clf = small(precision="float16", max_epochs=2, cache_frozen=cache_frozen)
        clf.fit(X, y, callbacks=[Optimizer()])
        assert clf.frozen_prefix_cached_ is cache_frozen
    assert seen == ["LossScaleOptimizer", "LossScaleOptimizer"]


def test_unknown_precision_is_refused(task):
    X, y = task
    with pytest.raises(ValueError, match="precision"):
        small(precision="int8").fit(X, y)


def test_same_seed_same_training_whatever_the_process_did_before(task, tmp_path):
    """A fit's batches (order and augmentation) come from its own seed only. Keras'
    fit(shuffle=True) reordered the batches from NumPy's global generator, which the first
    fit's loading of a weights file advanced and later fits' did not: two fits with one
    seed trained differently (chest X-rays: validation loss 0.53 against 0.31 after one
    epoch)."""
    import random

    from tests.conftest import _tiny_vgg_builder

    weights = tmp_path / "tiny_vgg_random.weights.h5"
    _tiny_vgg_builder(input_shape=(32, 32, 3)).save_weights(weights)
    X, y = task

    def fit():
        return small(weights=weights, cache_frozen=False, batch_size=2, max_epochs=2,
                     dropout=0.3, augmentation=ImageAugmenter(rotation=10, brightness=0.1),
                     frozen=("block1", "block2", "block3")).fit(X, y)

    first = fit()
    # Whatever else the process draws in between (the global generators, on purpose).
    np.random.seed(123), random.seed(456)  # noqa: NPY002
    np.random.rand(17), random.random()  # noqa: NPY002
    second = fit()
    assert first.history_ == second.history_
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_fit_leaves_the_global_generators_alone(task, tmp_path):
    """A fit draws from its own seed only: Python's and NumPy's global generators go on
    as if it had not run (keras.utils.set_random_seed would have reseeded them)."""
    import random

    X, y = task

    def draws():
        return random.random(), np.random.rand()  # noqa: NPY002 (the global one, on purpose)

    random.seed(5), np.random.seed(5)  # noqa: NPY002
    expected = draws()
    random.seed(5), np.random.seed(5)  # noqa: NPY002
    small(max_epochs=2, dropout=0.3, augmentation=ImageAugmenter(rotation=10),
          checkpoint_dir=tmp_path).fit(X, y)
    HybridSepConvClassifier(backbone="tiny_vgg", weights=None, input_side=32, filters=8,
                            head_units=(8, 4), max_epochs=1, random_state=0).fit(X, y)
    assert draws() == expected
