import os

import numpy as np
import pytest
from PIL import Image

from cnnfeatures.images import (
    ImageLoadError,
    check_image_sources,
    image_digest,
    load_image,
    resize_square,
    to_rgb_float,
)
from tests.conftest import DATA


def test_uint8_gray_becomes_three_equal_channels():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = load_image(arr)
    assert out.shape == (3, 4, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :, 0], arr)
    np.testing.assert_array_equal(out[:, :, 2], arr)


def test_uint16_scaled_by_type_range_not_clipped():
    arr = np.array([[0, 257, 65535]], dtype=np.uint16)
    out = to_rgb_float(arr)
    np.testing.assert_allclose(out[0, :, 0], [0, 1.0, 255.0], rtol=1e-6)


def test_rgba_composited_on_black():
    arr = np.zeros((1, 2, 4), np.uint8)
    arr[0, 0] = [200, 100, 50, 255]
    arr[0, 1] = [200, 100, 50, 0]
    out = to_rgb_float(arr)
    np.testing.assert_allclose(out[0, 0], [200, 100, 50])
    np.testing.assert_allclose(out[0, 1], [0, 0, 0])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_rejected(bad):
    arr = np.zeros((4, 4, 3), np.float32)
    arr[1, 1, 1] = bad
    with pytest.raises(ImageLoadError, match="X\\[3\\].*NaN or infinite"):
        load_image(arr, name="X[3]")


def test_float_out_of_range_rejected():
    with pytest.raises(ImageLoadError, match=r"\[0, 255\]"):
        to_rgb_float(np.full((2, 2), 300.0))


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.complex64])
def test_wrong_dtype_rejected(dtype):
    with pytest.raises(ImageLoadError, match="unsupported dtype"):
        to_rgb_float(np.zeros((2, 2), dtype=dtype))


@pytest.mark.parametrize("shape", [(5,), (2, 2, 5), (0, 3)])
def test_bad_shapes_rejected(shape):
    with pytest.raises(ImageLoadError, match="shape|zero-size"):
        to_rgb_float(np.zeros(shape, np.uint8))


def test_resize_square_and_range():
    img = np.zeros((10, 20, 3), np.float32)
    img[:, 10:] = 255
    up = resize_square(img, 64)
    down = resize_square(img, 4)
    assert up.shape == (64, 64, 3) and down.shape == (4, 4, 3)
    assert up.min() >= 0 and up.max() <= 255  # bicubic overshoot clipped
    np.testing.assert_allclose(down[:, :2], 0)
    np.testing.assert_allclose(down[:, 2:], 255)


def test_png_16bit_gray(tmp_path):
    arr = np.array([[0, 1000, 65535]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    out = load_image(path)
    np.testing.assert_allclose(out[0, :, 0], [0.0, 1000 * 255 / 65535, 255.0], rtol=1e-5)


def test_palette_and_cmyk(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2] = [255, 0, 0]
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    np.testing.assert_allclose(load_image(tmp_path / "p.png")[0, 0], [255, 0, 0])
    cmyk = load_image(tmp_path / "c.jpg")
    assert cmyk.shape == (4, 4, 3)
    assert cmyk[0, 0, 0] > 200 and cmyk[0, 0, 1] < 60


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)  # landscape as stored
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (20, 10, 3)


def test_large_jpeg_decoded_reduced(tmp_path):
    Image.new("RGB", (2000, 1600), (10, 20, 30)).save(tmp_path / "big.jpg")
    out = load_image(tmp_path / "big.jpg", side=224)
    assert out.shape == (224, 224, 3)
    np.testing.assert_allclose(out[100, 100], [10, 20, 30], atol=3)


def test_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not an image")
    Image.new("RGB", (64, 64)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    cases = {
        empty: "empty file",
        text: "not an image",
        truncated: "truncated",
        tmp_path / "missing.png": "no such file",
        tmp_path: "is a directory",
    }
    for path, problem in cases.items():
        with pytest.raises(ImageLoadError) as info:
            load_image(path)
        assert str(path) in str(info.value) and problem in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    with pytest.raises(ImageLoadError, match="permission denied"):
        load_image(path)


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    Image.new("L", (300, 300)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100 // 2)
    with pytest.raises(ImageLoadError, match="bomb.png.*too large"):
        load_image(tmp_path / "bomb.png")


def test_check_image_sources():
    assert len(check_image_sources(["a.png", "b.png"])) == 2
    assert len(check_image_sources(np.zeros((3, 8, 8)))) == 3
    with pytest.raises(TypeError, match="single path"):
        check_image_sources("a.png")
    with pytest.raises(ValueError, match="empty"):
        check_image_sources([])
    with pytest.raises(TypeError, match=r"X\[1\] is a int"):
        check_image_sources(["a.png", 3])


def test_digest_follows_content(tmp_path):
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    b[0, 0] = 1
    assert image_digest(a) == image_digest(a.copy()) != image_digest(b)
    path = tmp_path / "x.png"
    Image.fromarray(a).save(path)
    d1 = image_digest(path)
    Image.fromarray(b).save(path)
    assert image_digest(path) != d1


@pytest.mark.slow
def test_every_shared_image_loads():
    paths = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix != ".md")
    assert len(paths) > 7000
    for path in paths:
        out = load_image(path, side=64)
        assert out.shape == (64, 64, 3) and out.dtype == np.float32
        assert 0 <= out.min() and out.max() <= 255
