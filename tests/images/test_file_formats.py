"""What a file holds, read as a viewer shows it — or refused, naming the file.

Bit depth (12-bit data in 16-bit containers, sBIT, 32-bit integers), frames, EXIF
orientation on every decoding path, transparency keys, float alpha, and CLAHE's tile size.
"""

import struct
import warnings
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from cnnfeatures import CLAHETransformer, LowBitDepthWarning
from cnnfeatures.images import ImageLoadError, check_image_sources, load_image, load_image_native
from cnnfeatures.messages import reset_warnings

GRADIENT_12 = (np.linspace(0, 4095, 2000)[None, :] * np.ones((50, 1))).astype(np.uint16)


def _insert_png_chunk(path, kind: bytes, payload: bytes) -> None:
    """Write a chunk before the first IDAT (where sBIT and eXIf belong)."""
    data = path.read_bytes()
    chunk = (struct.pack(">I", len(payload)) + kind + payload
             + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    at = data.index(b"IDAT") - 4
    path.write_bytes(data[:at] + chunk + data[at:])


@pytest.fixture(autouse=True)
def _fresh_warnings():
    reset_warnings()
    yield
    reset_warnings()


def test_12_bit_data_in_a_16_bit_png_warns_once_naming_the_file(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"xray{i}.png")
        Image.fromarray(GRADIENT_12).save(paths[-1])
    with pytest.warns(LowBitDepthWarning) as seen:
        images = [load_image(p) for p in paths]
    assert len([w for w in seen if w.category is LowBitDepthWarning]) == 1
    message = str(seen[0].message)
    assert "xray0.png" in message and "0-4095" in message
    # Read on the type's range, as documented: the warning says so, nothing is stretched.
    assert images[0].max() == pytest.approx(4095 * 255 / 65535, abs=1e-3)


def test_full_range_16_bit_and_uint8_do_not_warn(tmp_path):
    Image.fromarray((GRADIENT_12.astype(np.uint32) * 16).astype(np.uint16)).save(
        tmp_path / "full.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowBitDepthWarning)
        assert load_image(tmp_path / "full.png").max() > 250
        load_image(np.full((4, 4), 3, np.uint8))
        load_image(np.zeros((4, 4), np.uint16))  # black is black, not low depth


def test_uint16_array_within_12_bits_warns():
    with pytest.warns(LowBitDepthWarning, match=r"X\[0\]|array image"):
        load_image(np.full((4, 4), 4000, np.uint16))


@pytest.mark.parametrize("colour", [False, True])
def test_png_sbit_declaring_12_bits_scales_unscaled_data_to_full_range(tmp_path, colour):
    pixels = GRADIENT_12[:, ::32]  # 0 to 4095
    path = tmp_path / "sbit.png"
    if colour:  # 16-bit colour goes through OpenCV, not Pillow
        rgb = np.stack([pixels] * 3, axis=2)
        cv2.imwrite(str(path), rgb)
        _insert_png_chunk(path, b"sBIT", bytes([12, 12, 12]))
    else:
        Image.fromarray(pixels).save(path)
        _insert_png_chunk(path, b"sBIT", bytes([12]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowBitDepthWarning)
        image = load_image(path)
    expected = np.rint(pixels * (65535 / 4095)).astype(np.uint16) * (255 / 65535)
    np.testing.assert_allclose(image[:, :, 0], expected, atol=1e-3)


def test_png_sbit_with_values_already_scaled_up_is_left_as_is(tmp_path):
    # The PNG rule: an encoder scales b-bit samples up to 16 bits; sBIT only records b.
    pixels = np.array([[0, 16 * 4095]], np.uint16)
    path = tmp_path / "scaled.png"
    Image.fromarray(pixels).save(path)
    _insert_png_chunk(path, b"sBIT", bytes([12]))
    np.testing.assert_allclose(load_image(path)[0, :, 0], [0, 65520 * 255 / 65535], rtol=1e-6)


def test_png_sbit_with_a_dark_image_scaled_by_the_png_rule_is_left_as_is(tmp_path):
    # 12-bit values up to 255, shifted up by the encoder: all below 4096, low bits zero.
    pixels = (np.array([[0, 100, 255]], np.uint16) << 4)
    path = tmp_path / "dark.png"
    Image.fromarray(pixels).save(path)
    _insert_png_chunk(path, b"sBIT", bytes([12]))
    with pytest.warns(LowBitDepthWarning):  # dark it is: the warning says so, no more
        image = load_image(path)
    np.testing.assert_allclose(image[0, :, 0], [0, 1600 * 255 / 65535, 4080 * 255 / 65535],
                               rtol=1e-5)


def test_12_bit_colour_with_opaque_alpha_is_seen_by_sbit_and_warning(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint16)
    rgba[..., :3] = np.arange(16, dtype=np.uint16).reshape(4, 4)[..., None] * 273  # to 4095
    rgba[..., 3] = 65535
    path = tmp_path / "rgba12.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    with pytest.warns(LowBitDepthWarning):  # opaque alpha does not hide the 12-bit colour
        assert load_image(path).max() == pytest.approx(4095 * 255 / 65535, abs=1e-3)
    reset_warnings()
    _insert_png_chunk(path, b"sBIT", bytes([12, 12, 12, 16]))
    assert load_image(path).max() == pytest.approx(255, abs=1e-3)


def test_16_bit_gray_png_transparency_key(tmp_path):
    gray = np.array([[1000, 30000, 65535]], np.uint16)
    Image.fromarray(gray).save(tmp_path / "key16.png", transparency=30000)
    np.testing.assert_allclose(load_image(tmp_path / "key16.png")[0, :, 0],
                               [1000 * 255 / 65535, 0, 255], rtol=1e-5)


def test_32_bit_integer_tiff_within_8_bits_is_refused_not_read_as_16_bit(tmp_path):
    Image.fromarray(np.arange(0, 256, 16, dtype=np.int32)[None]).save(tmp_path / "i32.tif")
    with pytest.raises(ImageLoadError, match=r"i32\.tif: 32-bit integer pixels all in "
                                             r"\[0, 240\]: on the 8-bit scale"):
        load_image(tmp_path / "i32.tif")
    # Above 255 only the 16-bit scale is possible; a 16-bit TIFF (I;16) reads on it too.
    Image.fromarray(np.array([[0, 65535]], np.int32)).save(tmp_path / "i32_wide.tif")
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "i16.tif")
    for name in ("i32_wide.tif", "i16.tif"):
        np.testing.assert_allclose(load_image(tmp_path / name)[0, :, 0], [0, 255])


@pytest.mark.parametrize("fmt,suffix", [("TIFF", "tif"), ("GIF", "gif"), ("PNG", "png"),
                                        ("WEBP", "webp")])
def test_multi_frame_files_are_refused_not_cut_to_frame_0(tmp_path, fmt, suffix):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 255)]
    path = tmp_path / f"frames.{suffix}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageLoadError, match=rf"frames\.{suffix}: a {fmt} file of 2 frames"):
        load_image(path)
    # One frame saved the same way reads.
    frames[1].save(tmp_path / f"one.{suffix}", format=fmt, save_all=True)
    assert load_image(tmp_path / f"one.{suffix}").shape == (8, 8, 3)


def test_tiff_pyramid_reads_its_full_size_first_page(tmp_path):
    full = np.zeros((32, 48, 3), np.uint8)
    full[:, 24:] = 255
    pages = [Image.fromarray(full)] + [Image.fromarray(full).reduce(f) for f in (2, 4)]
    pages[0].save(tmp_path / "pyramid.tif", save_all=True, append_images=pages[1:])
    np.testing.assert_array_equal(load_image(tmp_path / "pyramid.tif"), full)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_same_for_16_bit_colour_as_for_8_bit(tmp_path, orientation):
    rgb = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "o8.png", exif=exif)
    cv2.imwrite(str(tmp_path / "o16.png"), cv2.cvtColor(rgb.astype(np.uint16) * 257,
                                                          cv2.COLOR_RGB2BGR))
    _insert_png_chunk(tmp_path / "o16.png", b"eXIf", exif.tobytes()[6:])  # no "Exif\0\0"
    eight, sixteen = load_image(tmp_path / "o8.png"), load_image(tmp_path / "o16.png")
    assert eight.shape == ((10, 6, 3) if orientation >= 5 else (6, 10, 3))
    np.testing.assert_allclose(sixteen, eight, atol=1e-3)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_png_transparency_key_is_composited_like_alpha(tmp_path, mode):
    gray = np.arange(0, 256, 16, dtype=np.uint8)[None].repeat(2, axis=0)
    img = Image.fromarray(gray if mode == "L" else np.stack([gray] * 3, axis=2))
    img.save(tmp_path / "key.png", transparency=128 if mode == "L" else (128, 128, 128))
    out = load_image(tmp_path / "key.png")[:, :, 0]
    assert (out[:, 8] == 0).all()  # the keyed value 128 is transparent: black
    np.testing.assert_array_equal(np.delete(out, 8, axis=1), np.delete(gray, 8, axis=1))


def test_float_alpha_on_0_1_beside_colour_on_0_255_is_refused():
    transparent = np.dstack([np.full((4, 4, 3), 130.0), np.zeros((4, 4))])
    np.testing.assert_array_equal(load_image(transparent), 0)  # all transparent: black
    rgba = np.dstack([np.full((4, 4, 3), 130.0), np.ones((4, 4))])
    with pytest.raises(ImageLoadError, match=r"alpha channel lies in \[1, 1\].*multiply "
                                             r"alpha by 255"):
        load_image(rgba, name="X[3]")
    opaque = rgba.copy()
    opaque[:, :, 3] = 255.0
    np.testing.assert_allclose(load_image(opaque), 130.0)
    # Colour on [0, 1] is refused whatever the alpha.
    with pytest.raises(ImageLoadError, match="scaled to"):
        load_image(np.dstack([np.full((4, 4, 3), 0.5), np.full((4, 4), 255.0)]))


def test_ambiguous_sources_are_named():
    with pytest.raises(ValueError, match=r"shape \(4, 5, 2\) is ambiguous"):
        check_image_sources(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(TypeError, match="an iterator"):
        check_image_sources(p for p in ["a.png"])
    with pytest.raises(TypeError, match="a mapping"):
        check_image_sources({"a.png": 0})
    with pytest.raises(ImageLoadError, match=r"got shape \(5,\)"):
        load_image_native(np.zeros(5, np.uint8))


def test_clahe_refuses_images_smaller_than_two_pixels_a_tile():
    with pytest.raises(ValueError, match=r"X\[1\]: 8x8 pixels is too small.*\(8, 8\)"):
        CLAHETransformer().fit_transform([np.zeros((64, 64), np.uint8),
                                          np.zeros((8, 8), np.uint8)])
    (out,) = CLAHETransformer(tile_grid_size=(4, 4)).fit_transform([np.zeros((8, 8), np.uint8)])
    assert out.max() < 255  # a flat image does not turn white with 2x2-pixel tiles


def test_clahe_treats_float_gray_as_gray():
    ramp = np.tile(np.arange(64, 128, dtype=np.uint8), (64, 1))
    (from_uint8,) = CLAHETransformer().fit_transform([ramp])
    (from_float,) = CLAHETransformer().fit_transform([ramp.astype(np.float32)])
    assert from_float.shape == (64, 64)
    np.testing.assert_array_equal(from_float, from_uint8)
