"""RegionCropper: regions found by hand-made pictures, markers left out, masks, 16-bit
X-rays, images kept whole and named, the overlay, a place in a pipeline."""

import numpy as np
import pytest
from PIL import Image
from sklearn.pipeline import make_pipeline

from cnnfeatures import CNNFeatureExtractor, RegionCropper
from cnnfeatures.regions import RegionWarning, center_box, foreground_region, region_overlay


def chest(height=200, width=160, dtype=np.uint8, level=180):
    """A dark picture with an elliptic 'thorax' and a bright 'R' marker in a corner."""
    image = np.zeros((height, width), dtype)
    rows, cols = np.ogrid[:height, :width]
    inside = (((rows - height / 2) / (height * 0.35)) ** 2
              + ((cols - width / 2) / (width * 0.3)) ** 2)
    image[inside <= 1] = level
    image[4:16, width - 16:width - 4] = np.iinfo(dtype).max  # the marker
    return image


def test_the_largest_component_is_kept_and_the_marker_left_out():
    image = chest()
    box, mask = foreground_region(image, margin=0.0)
    top, left, bottom, right = box
    assert abs(top - 30) <= 2 and abs(bottom - 170) <= 2  # the ellipse: 200 * (0.5 ± 0.35)
    assert abs(left - 32) <= 2 and abs(right - 128) <= 2  # 160 * (0.5 ± 0.3)
    assert not mask[4:16, 144:156].any()
    assert mask[100, 80] and mask.sum() == pytest.approx(np.pi * 70 * 48, rel=0.03)
    wider, _ = foreground_region(image, margin=0.05)
    assert wider == (top - 10, left - 8, bottom + 10, right + 8)


def test_a_thin_bridge_to_a_marker_is_cut():
    image = chest()
    image[10:12, 100:150] = 180  # a 2-pixel line joining the marker to the body's box
    image[10:100, 100:102] = 180
    box, _ = foreground_region(image, margin=0.0)
    assert box[0] >= 28  # the marker's rows are not in the box


def test_a_dark_lesion_on_bright_skin():
    skin = np.full((100, 120, 3), 210, np.uint8)
    skin[30:70, 40:90] = (90, 60, 50)
    box, _ = foreground_region(skin, polarity="dark", margin=0.0)
    assert box == (30, 40, 70, 90)
    assert foreground_region(skin, polarity="bright", margin=0.0)[0] != box


def test_center_box_by_hand():
    assert center_box((100, 200), 0.8) == (10, 20, 90, 180)
    assert center_box((5, 5), 1.0) == (0, 0, 5, 5)


def test_a_16_bit_xray_file_is_cut_in_its_own_depth(tmp_path):
    image = chest(2000, 1600, np.uint16, level=30000)
    path = tmp_path / "xray.png"
    Image.fromarray(image).save(path)
    (out,) = RegionCropper(margin=0.0).fit_transform([str(path)])
    assert out.dtype == np.uint16
    assert out.shape == pytest.approx((1400, 960), abs=10)
    (masked,) = RegionCropper(mode="mask", margin=0.0).fit_transform([str(path)])
    assert masked.shape == out.shape and masked[0, 0] == 0 and masked[700, 480] == 30000


def test_mask_blacks_out_what_lies_outside_the_region_in_its_box():
    image = np.stack([chest()] * 3, axis=2)
    image[:, :, 1] //= 2
    (cut,) = RegionCropper(margin=0.0).fit_transform([image])
    (masked,) = RegionCropper(mode="mask", margin=0.0).fit_transform([image])
    assert cut.shape == masked.shape and cut.shape[2] == 3
    corner = (slice(0, 8), slice(0, 8))
    assert masked[corner].max() == 0 and masked[70, 48].tolist() == [180, 90, 180]


def test_images_without_a_region_are_kept_whole_and_named(tmp_path):
    speck = np.zeros((40, 40), np.uint8)
    speck[18:24, 18:24] = 200  # 2% of the picture: under min_area
    path = tmp_path / "speck.png"
    Image.fromarray(speck).save(path)
    with pytest.warns(RegionWarning, match=r"1 of 2 images, kept whole: .*speck\.png"):
        out = RegionCropper().fit_transform([chest(), str(path)])
    assert out[1].shape == (40, 40)


def test_center_region_and_bad_combinations():
    out = RegionCropper(region="center", fraction=0.5).fit_transform([np.zeros((40, 60, 3),
                                                                               np.uint8)])
    assert out[0].shape == (20, 30, 3)
    for call in ("fit", "fit_transform"):
        with pytest.raises(ValueError, match="mode='mask' needs region='foreground'"):
            getattr(RegionCropper(region="center", mode="mask"), call)([chest()])
    with pytest.raises(ValueError, match="'margin' parameter"):
        RegionCropper(margin=0.7).fit([chest()])


def test_overlay_dims_what_is_left_out_and_outlines_the_box():
    image = chest()
    box, mask = foreground_region(image)
    picture = region_overlay(image, box, mask)
    assert picture.dtype == np.uint8 and picture.shape == (200, 160, 3)
    assert picture[100, 80].tolist() == [180, 180, 180]  # kept as it is
    assert picture[10, 150].tolist() == [89, 89, 89]  # the marker, dimmed (255 * 0.35)
    assert picture[box[0], 80].tolist() == [255, 64, 0]  # the outline


def test_in_a_pipeline_before_the_extractor(tiny_backbone):
    images = [np.stack([chest()] * 3, axis=2), np.stack([chest(level=120)] * 3, axis=2)]
    pipe = make_pipeline(RegionCropper(),
                         CNNFeatureExtractor(backbone=tiny_backbone, layer="max2",
                                             l2_normalize=False, cache=False))
    features = pipe.fit_transform(images)
    # The tiny backbone averages 8x8 blocks: on the cut, the body fills more of each block
    # than on the whole picture, so its mean level is nearer the body's.
    whole = pipe[-1].transform(images)
    assert (features.mean(axis=1) > whole.mean(axis=1)).all()


def test_a_pandas_column_of_paths(tmp_path):
    pd = pytest.importorskip("pandas")
    paths = []
    for i, level in enumerate((150, 200)):
        path = tmp_path / f"chest{i}.png"
        Image.fromarray(chest(level=level)).save(path)
        paths.append(str(path))
    frame = pd.DataFrame({"path": paths, "label": [0, 1]})
    from_column = RegionCropper(mode="mask").fit_transform(frame["path"])
    from_list = RegionCropper(mode="mask").fit_transform(paths)
    for a, b in zip(from_column, from_list):
        np.testing.assert_array_equal(a, b)
