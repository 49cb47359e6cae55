import numpy as np
import pytest
from imblearn.pipeline import make_pipeline as make_imb_pipeline
from sklearn.linear_model import LogisticRegression

from cnnfeatures import AugmentationPolicy, CNNFeatureExtractor, ImageAugmenter
from cnnfeatures.augmentation import augmentation_grid
from cnnfeatures.cache import get_cache
from cnnfeatures.images import TransientImage
from cnnfeatures.instrumentation import forward_pass_counts, reset_forward_pass_counts


def test_copies_labels_and_determinism(rng):
    X = rng.integers(0, 256, (4, 20, 24, 3), dtype=np.uint8)
    y = np.array(["a", "b", "b", "c"])
    X1, y1 = ImageAugmenter(n_copies=2, random_state=3).fit_resample(X, y)
    X2, y2 = ImageAugmenter(n_copies=2, random_state=3).fit_resample(X, y)
    assert len(X1) == 12 and y1.tolist() == ["a", "b", "b", "c"] * 3
    for a, b in zip(X1, X2):
        np.testing.assert_array_equal(a, b)
    X3, _ = ImageAugmenter(n_copies=2, random_state=4).fit_resample(X, y)
    assert not np.array_equal(X1[5], X3[5])
    assert X1[4].shape == (20, 24, 3) and X1[4].dtype == np.uint8
    assert isinstance(X1[4], TransientImage) and not isinstance(X1[0], TransientImage)
    np.testing.assert_array_equal(X1[0], X[0])  # originals first, unchanged


def test_labels_follow_copies():
    # Each image's colour tells its class: copies must keep their class's colour.
    X = np.zeros((6, 16, 16, 3), np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    X[:, :, :, 0] = 40 + 80 * y[:, None, None]
    aug = ImageAugmenter(n_copies=3, brightness=0, contrast=0, random_state=0)
    X_res, y_res = aug.fit_resample(X, y)
    for img, label, src in zip(X_res, y_res, aug.sample_indices_):
        assert y[src] == label
        assert abs(np.asarray(img)[:, :, 0].mean() - (40 + 80 * label)) < 2


def test_balance_gives_equal_counts(rng):
    X = rng.integers(0, 256, (7, 8, 8, 3), dtype=np.uint8)
    y = np.array([0, 0, 0, 0, 0, 1, 2])
    _, y_res = ImageAugmenter(n_copies=0, balance=True, random_state=0).fit_resample(X, y)
    assert np.bincount(y_res).tolist() == [5, 5, 5]
    _, y_res = ImageAugmenter(n_copies=1, balance=True, random_state=0).fit_resample(X, y)
    assert np.bincount(y_res).tolist() == [10, 10, 10]


def test_policy_transforms():
    img = np.zeros((32, 32, 3), np.float32)
    img[:, :16] = 200
    rs = np.random.RandomState(0)
    flipped = AugmentationPolicy(rotation=0, zoom=0, shift=0, brightness=0, contrast=0,
                                 horizontal_flip=True)
    outs = [flipped(img, rs) for _ in range(10)]
    assert any(o[0, 0, 0] == 0 for o in outs) and any(o[0, 0, 0] == 200 for o in outs)
    dark = AugmentationPolicy(horizontal_flip=False, rotation=0, zoom=0, shift=0, contrast=0,
                              brightness=0, gamma=0.5)(np.full((4, 4, 3), 128, np.float32), rs)
    assert dark.min() >= 0 and dark.max() <= 255 and not np.allclose(dark, 128)
    full = AugmentationPolicy(rotation=30, shear=10, crop=0.2, gamma=0.2, elastic_alpha=3,
                              elastic_sigma=4)(img, rs)
    assert full.shape == img.shape and 0 <= full.min() and full.max() <= 255


def test_errors(rng):
    X = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="X has 3 images, y has shape \\(2,\\)"):
        ImageAugmenter().fit_resample(X, [0, 1])
    with pytest.raises(ValueError, match="rotation"):
        ImageAugmenter(rotation=-1).fit_resample(X, [0, 1, 1])


def test_pipeline_trains_on_copies_predicts_on_originals(tiny_backbone, rng):
    get_cache().clear()
    reset_forward_pass_counts()
    X = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    y = np.array([0, 1] * 3)
    pipe = make_imb_pipeline(
        ImageAugmenter(n_copies=2, random_state=0),
        CNNFeatureExtractor(backbone="tiny", weights=None, layer="avg8", pooling="mean"),
        LogisticRegression(),
    ).fit(X, y)
    assert sum(forward_pass_counts().values()) == 18  # 6 originals + 12 copies
    assert pipe.predict(X).shape == (6,)  # predictions: originals only, no copies
    assert sum(forward_pass_counts().values()) == 18  # originals came from the cache
    # Only the 6 originals were cached: copies are new content each time. (Plus the
    # network's card: its layers and widths, so that a later process needs no network.)
    assert get_cache().info().memory_entries == 6 * 2 * 2 + 1  # 2 layers x 2 poolings


def test_grid_picture(tmp_path, rng):
    from cnnfeatures.cli import main

    img = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    grid = augmentation_grid(img, ImageAugmenter(rotation=20), n=5, columns=3, side=32,
                             random_state=0)
    assert grid.shape == (64, 96, 3)
    np.testing.assert_allclose(grid[:32, :32].mean(), img.mean(), atol=3)
    from PIL import Image

    Image.fromarray(img).save(tmp_path / "x.png")
    assert main(["augment", str(tmp_path / "x.png"), "-n", "3", "-o",
                 str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (3 * 224, 2 * 224)
