"""TestTimeAugmentationClassifier and SeedEnsembleClassifier: views by hand, averages,
invariance, sources passed as they are, chunks, seeds at every level, scikit-learn's
conventions (the seed ensemble on tabular data; both on images in test_estimator_checks)."""

import pickle

import numpy as np
import pytest
from PIL import Image
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from cnnfeatures import (
    CNNFeatureExtractor,
    SeedEnsembleClassifier,
    TestTimeAugmentationClassifier,
    ensemble,
    load_image,
)
from cnnfeatures.ensemble import VIEWS, view_image


def left_minus_right(X):
    """One feature that a left-right flip negates: the left half's mean minus the right's."""
    rows = []
    for x in X:
        x = load_image(x)  # a path or an array
        half = x.shape[1] // 2
        rows.append([x[:, :half].mean() - x[:, -half:].mean()])
    return np.array(rows)


def sided_model():
    return make_pipeline(FunctionTransformer(left_minus_right), LogisticRegression())


def sided_images(rng, n=12):
    """Images brighter on the left (class 1) or on the right (class 0)."""
    images = rng.integers(0, 100, (n, 8, 8, 3)).astype(np.uint8)
    labels = np.arange(n) % 2
    images[labels == 1, :, :4] += 100
    images[labels == 0, :, 4:] += 100
    return images, labels


class Recorder(ClassifierMixin, BaseEstimator):
    """Remembers what predict_proba was given; predicts 0.5/0.5."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.seen_ = []
        return self

    def predict_proba(self, X):
        self.seen_.append(list(X))
        return np.full((len(X), 2), 0.5)


def test_views_by_hand():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert view_image(image, "identity").tolist() == image.tolist()
    assert view_image(image, "vflip")[0].tolist() == [8, 9, 10, 11]
    assert view_image(image, "rot90").tolist() == [[3, 7, 11], [2, 6, 10], [1, 5, 9],
                                                   [0, 4, 8]]
    assert view_image(image, "rot180")[0].tolist() == [11, 10, 9, 8]
    assert view_image(image, "rot270").shape == (4, 3)
    assert view_image(image, "crop_top_left", 0.5).tolist() == [[0, 1], [4, 5]]
    assert view_image(image, "crop_top_right", 0.5).tolist() == [[2, 3], [6, 7]]
    assert view_image(image, "crop_center", 2 / 3).shape == (2, 3)
    colour = np.zeros((6, 10, 3), np.uint8)
    for view in VIEWS:
        out = view_image(colour, view)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.flags.c_contiguous
    with pytest.raises(ValueError, match="unknown view 'mirror'"):
        view_image(colour, "mirror")


def test_posteriors_are_the_mean_over_views(rng):
    images, labels = sided_images(rng)
    tta = TestTimeAugmentationClassifier(sided_model(), views=["identity", "hflip"])
    proba = tta.fit(images, labels).predict_proba(images)
    flipped = images[:, :, ::-1]
    expected = (tta.estimator_.predict_proba(images) + tta.estimator_.predict_proba(flipped)) / 2
    np.testing.assert_allclose(proba, expected)
    # A flip averaged with itself cannot tell an image from its mirror: the feature is
    # negated, so the two posteriors are each other's reverse and their mean is the same.
    np.testing.assert_allclose(tta.predict_proba(flipped), proba)
    assert list(tta.predict(images)) == list(tta.classes_[np.argmax(proba, axis=1)])


def test_identity_passes_sources_through_and_views_decode_natively(tmp_path):
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    path = tmp_path / "xray.png"
    Image.fromarray(deep).save(path)  # a 16-bit gray PNG
    tta = TestTimeAugmentationClassifier(Recorder(), views=["identity", "hflip", np.fliplr])
    tta.fit(np.zeros((2, 8, 8, 3), np.uint8), [0, 1])
    tta.predict_proba([str(path)])
    identity, hflip, custom = tta.estimator_.seen_
    assert identity == [str(path)]
    assert hflip[0].dtype == np.uint16 and hflip[0][0, 0] == deep[0, -1]
    np.testing.assert_array_equal(custom[0], hflip[0])
    assert [name for name, _ in tta.views_] == ["identity", "hflip", "fliplr"]


def test_long_inputs_are_predicted_in_chunks_with_the_same_result(rng, monkeypatch):
    images, labels = sided_images(rng, n=10)
    tta = TestTimeAugmentationClassifier(sided_model(), views=["identity", "rot180"])
    whole = tta.fit(images, labels).predict_proba(images)
    monkeypatch.setattr(ensemble, "CHUNK", 3)
    np.testing.assert_allclose(tta.predict_proba(list(images)), whole)


@pytest.mark.parametrize("views, words", [
    (["identity", "mirror"], "views: unknown view 'mirror'"),
    ([], "non-empty list"),
    ("hflip", "'views' parameter .* must be an instance of 'list'"),
])
def test_bad_views_are_named_at_fit(views, words, rng):
    images, labels = sided_images(rng)
    with pytest.raises(ValueError, match=words):
        TestTimeAugmentationClassifier(sided_model(), views=views).fit(images, labels)


def test_grid_search_clone_and_pickle(rng):
    images, labels = sided_images(rng, n=16)
    grid = GridSearchCV(TestTimeAugmentationClassifier(sided_model()), cv=2,
                        param_grid={"views": [("identity",), ("identity", "crop_center")],
                                    "estimator__logisticregression__C": [0.1, 1.0]})
    grid.fit(list(images), labels)
    assert grid.best_score_ > 0.9
    model = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_allclose(model.predict_proba(images),
                               grid.best_estimator_.predict_proba(images))
    assert clone(model).get_params()["views"] == grid.best_params_["views"]


def test_members_get_their_own_seed_at_every_level():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), np.repeat([0, 1, 2], 20)
    inner = make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=7))
    ensemble_ = SeedEnsembleClassifier(inner, n_members=3, random_state=0).fit(X, y)
    seeds = [member[-1].random_state for member in ensemble_.estimators_]
    assert seeds == ensemble_.seeds_.tolist() and len(set(seeds)) == 3
    probas = [member.predict_proba(X) for member in ensemble_.estimators_]
    assert not np.allclose(probas[0], probas[1])  # the seeds changed the fits
    np.testing.assert_allclose(ensemble_.predict_proba(X), np.mean(probas, axis=0))
    again = SeedEnsembleClassifier(inner, n_members=3, random_state=0).fit(X, y)
    np.testing.assert_allclose(again.predict_proba(X), ensemble_.predict_proba(X))
    parallel = SeedEnsembleClassifier(inner, n_members=3, random_state=0, n_jobs=2).fit(X, y)
    np.testing.assert_allclose(parallel.predict_proba(X), ensemble_.predict_proba(X))


def test_an_estimator_without_a_seed_is_refused():
    with pytest.raises(ValueError, match="Pipeline has no random_state parameter"):
        SeedEnsembleClassifier(make_pipeline(StandardScaler(), Recorder())).fit(
            np.zeros((4, 2)), [0, 1, 0, 1])


def test_seed_ensemble_of_image_networks_differs_by_seed(rng):
    from cnnfeatures import FineTunedCNNClassifier

    images = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 3)
    network = FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32,
                                     head_units=(4, 4), max_epochs=1, validation_fraction=0.5)
    model = SeedEnsembleClassifier(network, n_members=2, random_state=0).fit(images, labels)
    first, second = (member.predict_proba(images) for member in model.estimators_)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(model.predict_proba(images), (first + second) / 2, rtol=1e-5)


def test_a_soft_vote_of_two_image_pipelines_takes_paths(image_files):
    paths, labels = image_files, [0, 1, 0, 1]
    vote = VotingClassifier(voting="soft", estimators=[
        (layer, make_pipeline(CNNFeatureExtractor(backbone="vgg16", weights=None, layer=layer,
                                                  cache=False), LogisticRegression()))
        for layer in ("block1_pool", "block2_pool")])
    proba = vote.fit(paths, labels).predict_proba(paths)
    members = [est.predict_proba(paths) for est in vote.estimators_]
    np.testing.assert_allclose(proba, np.mean(members, axis=0), rtol=1e-5)


@parametrize_with_checks([SeedEnsembleClassifier(SGDClassifier(loss="log_loss"), n_members=3,
                                                 random_state=0)])
def test_scikit_learn_conventions(estimator, check):
    check(estimator)


def test_views_of_a_pandas_column_of_paths(tmp_path, rng):
    pd = pytest.importorskip("pandas")
    images, labels = sided_images(rng, n=8)
    paths = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    column = pd.Series(paths, name="path")
    tta = TestTimeAugmentationClassifier(sided_model(), views=["identity", "hflip"])
    tta.fit(column, labels)
    np.testing.assert_allclose(tta.predict_proba(column), tta.predict_proba(images))
