import cv2
import numpy as np
import pytest
from PIL import Image
from sklearn.pipeline import make_pipeline, make_union

from cnnfeatures import CLAHETransformer, CNNFeatureExtractor
from cnnfeatures.preprocessing import clahe


def gradient(dtype, top):
    """A low-contrast hand-made image: a gentle ramp with a bright square."""
    img = np.tile(np.linspace(0.3, 0.5, 64), (64, 1)) * top
    img[20:30, 20:30] = 0.6 * top
    return np.rint(img).astype(dtype)


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535)])
def test_gray_equals_opencv(dtype, top):
    img = gradient(dtype, top)
    expected = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(img)
    (out,) = CLAHETransformer(clip_limit=3.0, tile_grid_size=(4, 4)).fit_transform([img])
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)
    assert np.ptp(out) > np.ptp(img)  # contrast went up


def test_color_modes(rng):
    gray = gradient(np.uint8, 255)
    rgb = np.stack([gray, gray // 2, gray // 3], axis=2)
    per_channel = CLAHETransformer(color_mode="per_channel").fit_transform([rgb])[0]
    for c in range(3):
        expected = cv2.createCLAHE(2.0, (8, 8)).apply(np.ascontiguousarray(rgb[:, :, c]))
        np.testing.assert_array_equal(per_channel[:, :, c], expected)
    assert CLAHETransformer(color_mode="gray").fit_transform([rgb])[0].shape == (64, 64)
    lab = CLAHETransformer(color_mode="lab").fit_transform([rgb])[0]
    assert lab.shape == rgb.shape and lab.dtype == np.uint8
    # Lab mode equalises lightness only: a gray picture stored as RGB stays gray (a = b = 0),
    # in 8 and 16 bits, and its contrast goes up.
    gray_rgb = np.repeat(gray[:, :, None], 3, axis=2)
    for image, tolerance in ((gray_rgb, 2), (gray_rgb.astype(np.uint16) * 257, 2 * 257)):
        out = clahe(image, color_mode="lab")
        assert out.dtype == image.dtype
        spread = out.astype(int).max(axis=2) - out.astype(int).min(axis=2)
        assert spread.max() <= tolerance
        assert np.ptp(out[:, :, 0]) > np.ptp(image[:, :, 0])


def test_paths_and_16bit_png(tmp_path):
    img = gradient(np.uint16, 65535)
    Image.fromarray(img).save(tmp_path / "g16.png")
    (out,) = CLAHETransformer().fit_transform([tmp_path / "g16.png"])
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, cv2.createCLAHE(2.0, (8, 8)).apply(img))


def test_bad_parameters():
    with pytest.raises(ValueError, match="tile_grid_size"):
        CLAHETransformer(tile_grid_size=(0, 8)).fit()
    with pytest.raises(ValueError, match="clip_limit"):
        CLAHETransformer(clip_limit=-1).fit()


def test_feature_union_raw_and_clahe(tiny_backbone, rng):
    X = rng.integers(80, 140, (4, 40, 40, 3), dtype=np.uint8)
    ext = dict(backbone="tiny", weights=None, layer="avg8", pooling="mean", cache=False)
    union = make_union(CNNFeatureExtractor(**ext),
                       make_pipeline(CLAHETransformer(), CNNFeatureExtractor(**ext)))
    out = union.fit_transform(X)
    assert out.shape == (4, 6)
    assert not np.allclose(out[:, :3], out[:, 3:])
