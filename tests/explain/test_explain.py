"""Grad-CAM sanity checks on a task whose answer is known: a bright square somewhere."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from cnnfeatures import CNNFeatureExtractor, FineTunedCNNClassifier
from cnnfeatures.explain import grad_cam, integrated_gradients, layer_panel, overlay

SQUARE = 16


@pytest.fixture(scope="module")
def squares():
    """Dark noise; class 1 images hold a bright 16x16 square at a random place."""
    rng = np.random.default_rng(0)
    n, side = 80, 64
    X = rng.integers(0, 60, (n, side, side, 3)).astype(np.uint8)
    y = np.arange(n) % 2
    corners = rng.integers(0, side - SQUARE, (n, 2))
    for i in np.flatnonzero(y):
        r, c = corners[i]
        X[i, r : r + SQUARE, c : c + SQUARE] = 250
    return X, y, corners


def peak_on_square(maps, corners, pad=4, size=SQUARE):
    hits = []
    for m, (r, c) in zip(maps, corners):
        pr, pc = np.unravel_index(np.argmax(m), m.shape)
        hits.append(r - pad <= pr < r + size + pad and c - pad <= pc < c + size + pad)
    return np.mean(hits)


@pytest.fixture(scope="module")
def pipeline(squares):
    X, y, _ = squares
    return make_pipeline(
        CNNFeatureExtractor(backbone="vgg16", weights=None, layer="block5_pool", pooling="max"),
        StandardScaler(), LogisticRegression(C=10, max_iter=5000),
    ).fit(X[:40], y[:40])


@pytest.fixture(scope="module")
def finetuned(squares):
    X, y, _ = squares
    return FineTunedCNNClassifier(
        backbone="vgg16", weights=None, input_side=64, frozen=("blocks",), head_units=(16, 8),
        dropout=0.0, learning_rate=1e-3, max_epochs=30, patience=5, random_state=0,
    ).fit(X, y)


def test_pipeline_heatmap_peaks_on_the_square(pipeline, squares):
    X, y, corners = squares
    ones = np.flatnonzero(y[:40])
    maps = grad_cam(pipeline, X[ones], layer="block4_pool", target=1)
    assert maps[0].shape == (64, 64) and maps[0].dtype == np.float32
    assert all(0 <= m.min() and m.max() <= 1 for m in maps)
    assert peak_on_square(maps, corners[ones]) >= 0.9


def test_finetuned_heatmap_peaks_on_the_square(finetuned, squares):
    """Where the network says "square", its map of that class peaks on the square.

    (How many it recognises depends on its random start, which differs between Keras
    backends: on JAX this seed recognises 32 of 40.)
    """
    X, y, corners = squares
    ones = np.flatnonzero((y == 1) & (finetuned.predict(X) == 1))
    assert len(ones) >= 0.75 * np.sum(y == 1)
    maps = grad_cam(finetuned, X[ones], layer="block2_pool")  # predicted class
    assert peak_on_square(maps, corners[ones]) >= 0.9


def test_heatmap_changes_when_weights_are_randomised(finetuned, squares):
    """Adebayo et al. 2018: an explanation must depend on the model's parameters."""
    import pickle

    X, y, _ = squares
    ones = np.flatnonzero(y)[:6]
    before = np.stack(grad_cam(finetuned, X[ones], layer="block2_pool", target=1))
    scrambled = pickle.loads(pickle.dumps(finetuned))
    rng = np.random.default_rng(0)
    for name in ("fc1", "fc2", "predictions"):
        layer = scrambled.model_.get_layer(name)
        layer.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    after = np.stack(grad_cam(scrambled, X[ones], layer="block2_pool", target=1))
    assert before.max() > 0
    assert np.linalg.norm(before - after) > 0.5 * np.linalg.norm(before)


def test_targets_and_errors(pipeline, squares):
    X, y, _ = squares
    one = grad_cam(pipeline, X[1:2], target=1)[0]
    zero = grad_cam(pipeline, X[1:2], target=0)[0]
    assert not np.allclose(one, zero)
    per_image = grad_cam(pipeline, X[:2], target=[0, 1])
    assert len(per_image) == 2
    with pytest.raises(ValueError, match="target 7 is not a class"):
        grad_cam(pipeline, X[:1], target=7)
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        grad_cam(pipeline, X[:1], layer="nope")
    rbf = make_pipeline(CNNFeatureExtractor(backbone="vgg16", weights=None,
                                            layer="block5_pool"), SVC()).fit(X[:6], y[:6])
    with pytest.raises(ValueError, match="ends in SVC"):
        grad_cam(rbf, X[:1])


def test_integrated_gradients_and_pictures(pipeline, finetuned, squares):
    X, y, corners = squares
    ones = np.flatnonzero(y[:40])[:5]
    maps = integrated_gradients(pipeline, X[ones], target=1, steps=8)
    assert maps[0].shape == (224, 224)  # the network's input side
    # Attributions concentrate on the square (scaled from 64 to 224 pixels).
    mass = [m[int(r * 3.5) : int((r + SQUARE) * 3.5), int(c * 3.5) : int((c + SQUARE) * 3.5)]
            .sum() / m.sum() for m, (r, c) in zip(maps, corners[ones])]
    assert np.mean(mass) > 3 * (SQUARE / 64) ** 2  # well above the square's share of area
    picture = overlay(X[ones[0]], grad_cam(pipeline, X[ones[:1]])[0])
    assert picture.shape == (64, 64, 3) and picture.dtype == np.uint8
    panel = layer_panel(finetuned, X[ones[0]], layers=["block1_pool", "block2_pool"], side=32)
    assert panel.shape == (32, 96, 3)


def test_panel_of_a_cropping_pipeline_shows_the_cut(squares):
    from sklearn.svm import LinearSVC

    from cnnfeatures import RegionCropper

    X, y, _ = squares
    model = make_pipeline(RegionCropper(region="center", fraction=0.5),
                          CNNFeatureExtractor(backbone="vgg16", weights=None,
                                              layer="block3_pool", cache=False),
                          LinearSVC()).fit(X[:8], y[:8])
    (heat,) = grad_cam(model, X[:1], layer="block2_pool")
    assert heat.shape == (32, 32)  # the cut's size, not the image's
    panel = layer_panel(model, X[0], layers=["block2_pool"], side=32)
    np.testing.assert_array_equal(panel[:, :32], X[0, 16:48, 16:48])  # the cut, unscaled


def test_cli_explain_writes_overlays(pipeline, squares, tmp_path):
    import joblib
    from PIL import Image

    from cnnfeatures.cli import main

    X, _, _ = squares
    joblib.dump(pipeline, tmp_path / "model.joblib")
    Image.fromarray(X[1]).save(tmp_path / "img.png")
    assert main(["explain", str(tmp_path / "model.joblib"), str(tmp_path / "img.png"),
                 "--layer", "block3_pool", "block4_pool", "-o", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["img_gradcam_block3_pool.png", "img_gradcam_block4_pool.png"]
    assert Image.open(tmp_path / "out" / written[0]).size == (64, 64)


def _tiny_residual(include_top=False, weights=None, input_shape=(None, None, 3)):
    """conv_a → conv_b, plus a shortcut from conv_a's output around conv_b."""
    import keras

    x = keras.Input(input_shape or (None, None, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(x)
    b = keras.layers.Conv2D(4, 3, padding="same", name="conv_b")(a)
    out = keras.layers.Add(name="add")([a, b])
    return keras.Model(x, keras.layers.MaxPooling2D(2, name="pool")(out), name="tiny_res")


def test_grad_cam_inside_a_residual_block_says_why(squares):
    """conv_b's output does not determine the score (the shortcut bypasses it): refused
    with the reason; conv_a and the pooled output, which do, are explained."""
    from cnnfeatures.backbones import BackboneSpec, register_backbone

    register_backbone(BackboneSpec("tiny_res", "", _tiny_residual, 32, 8, (), ("pool",),
                                   preprocess=lambda a: a))
    X, y, _ = squares
    pipe = make_pipeline(CNNFeatureExtractor(backbone="tiny_res", weights=None, layer="pool"),
                         LogisticRegression()).fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="'conv_b': the class score depends on more than"):
        grad_cam(pipe, X[1:2], layer="conv_b", target=1)
    for layer in ("conv_a", "add", "pool"):
        (heat,) = grad_cam(pipe, X[1:2], layer=layer, target=1)
        assert heat.shape == (64, 64) and heat.max() == pytest.approx(1)
