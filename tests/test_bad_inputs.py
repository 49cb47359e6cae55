"""A corpus of bad and unusual inputs, generated here (no binary fixtures in git).

Each case ends either in an error that names the input and what was expected, or in a
documented correct result.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from cnnfeatures import (
    CNNFeatureExtractor,
    FineTunedCNNClassifier,
    ImageAugmenter,
    ImageLoadError,
    load_image,
    load_image_folder,
)
from cnnfeatures.images import resize_square


def _jpeg(tmp_path, name="x.jpg", size=(40, 30), **save):
    path = tmp_path / name
    Image.fromarray(np.full((*size, 3), 120, np.uint8)).save(path, **save)
    return path


def corpus(tmp_path):
    """(name, thunk, expected): expected is an error regex, or None for a correct result."""
    jpeg = _jpeg(tmp_path)
    data = jpeg.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(np.zeros((3, 3, 4), np.uint8)).save(tmp_path / "rgba.png")
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).convert("P").save(tmp_path / "pal.png")
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.full((1, 1, 3), 7, np.uint8)).save(tmp_path / "one.png")
    rotated = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 8
    rotated.save(tmp_path / "exif.jpg", exif=exif)
    big = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(big)  # 144 Mpx declared, tiny file
    (tmp_path / "ds" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "empty").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "ds" / "a" / "x.png")
    (tmp_path / "one_class" / "only").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "one_class" / "only" / "x.png")
    ext = dict(backbone="vgg16", weights=None, layer="block5_pool", cache=False)
    four = np.zeros((4, 32, 32, 3), np.uint8)

    def bomb():
        import PIL.Image

        old = PIL.Image.MAX_IMAGE_PIXELS
        PIL.Image.MAX_IMAGE_PIXELS = 50_000_000
        try:
            load_image(big)
        finally:
            PIL.Image.MAX_IMAGE_PIXELS = old

    return [
        ("truncated JPEG", lambda: load_image(tmp_path / "trunc.jpg"), r"trunc\.jpg: truncated"),
        ("0-byte file", lambda: load_image(tmp_path / "empty.png"), r"empty\.png: empty file"),
        ("text named .png", lambda: load_image(tmp_path / "text.png"), r"text\.png: not an image"),
        ("16-bit PNG", lambda: load_image(tmp_path / "g16.png")[0, 1, 0] == 255, None),
        ("RGBA", lambda: load_image(tmp_path / "rgba.png").max() == 0, None),
        ("palette", lambda: load_image(tmp_path / "pal.png").shape == (3, 3, 3), None),
        ("CMYK JPEG", lambda: load_image(tmp_path / "cmyk.jpg").shape == (3, 3, 3), None),
        ("1x1 image", lambda: CNNFeatureExtractor(**ext).fit_transform(
            [tmp_path / "one.png"]).shape == (1, 512), None),
        ("decompression bomb", bomb, r"bomb\.png: declared size is too large"),
        ("EXIF-rotated photo", lambda: load_image(tmp_path / "exif.jpg").shape == (20, 10, 3),
         None),
        ("directory as image", lambda: load_image(tmp_path / "ds"), r"ds: is a directory"),
        ("missing file", lambda: load_image(tmp_path / "nope.png"), r"nope\.png: no such file"),
        ("empty class folder", lambda: load_image_folder(tmp_path / "ds"),
         r"class folder 'empty' holds no image"),
        ("single-class dataset: loads", lambda: load_image_folder(
            tmp_path / "one_class").target_names == ["only"], None),
        ("single-class dataset: classifier", lambda: FineTunedCNNClassifier(
            weights=None, backbone="vgg16", input_side=32).fit(four, [0, 0, 0, 0]),
         r"single class \[0\]"),
        ("y of the wrong length", lambda: ImageAugmenter().fit_resample(four, [0, 1]),
         r"X has 4 images, y has shape \(2,\)"),
        ("NaN array", lambda: load_image(np.full((4, 4), np.nan), name="X[0]"),
         r"X\[0\]: contains NaN"),
        ("inf array", lambda: CNNFeatureExtractor(**ext).fit_transform(
            [np.full((4, 4), np.inf, np.float32)]), r"X\[0\]: contains NaN or infinite"),
        ("wrong dtype", lambda: load_image(np.zeros((4, 4), np.int32)), r"unsupported dtype"),
        ("unknown layer", lambda: CNNFeatureExtractor(**{**ext, "layer": "fc9"}).fit(four),
         r"unknown layer\(s\) \['fc9'\].*valid names.*block5_pool"),
        ("unknown backbone", lambda: CNNFeatureExtractor(backbone="lenet").fit(four),
         r"unknown backbone 'lenet'; choose one of \[.*vgg19"),
        ("missing weights file", lambda: CNNFeatureExtractor(
            backbone="vgg16", weights=tmp_path / "w.h5").fit(four), r"w\.h5.*not found"),
        ("negative scale", lambda: CNNFeatureExtractor(**{**ext, "scales": (-1,)}).fit(four),
         r"0 <= n <= 5"),
        ("absurd scale", lambda: CNNFeatureExtractor(**{**ext, "scales": (50,)}).fit(four),
         r"0 <= n <= 5.*at most 1824 pixels"),
        ("image too small for the network", lambda: FineTunedCNNClassifier(
            backbone="xception", weights=None, input_side=40).fit(four, [0, 1, 0, 1]),
         r"input_side=40 is below xception's minimum 71"),
    ]


def test_corpus(tmp_path):
    cases = corpus(tmp_path)
    assert len(cases) == 25
    for name, thunk, expected in cases:
        if expected is None:
            assert bool(thunk()) is True, name
        else:
            with pytest.raises((ValueError, TypeError, FileNotFoundError)) as info:
                thunk()
            assert info.match(expected), f"{name}: {info.value}"


@settings(max_examples=60, deadline=None)
@given(
    image=st.one_of(
        arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30))),
        arrays(np.uint16, st.tuples(st.integers(1, 30), st.integers(1, 30),
                                    st.sampled_from([1, 3, 4]))),
        arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 30), st.just(3)),
               elements=st.floats(0, 255, width=32)),
    ),
    side=st.integers(1, 64),
)
def test_any_valid_array_loads_in_range(image, side):
    if image.dtype.kind == "f" and 0 < image.max() <= 1:
        # Float images that all lie in [0, 1] look normalised: refused, never misread.
        with pytest.raises(ImageLoadError, match=r"X\[0\]: float pixels all lie in"):
            load_image(image, name="X[0]")
        return
    out = load_image(image)
    assert out.shape == (*image.shape[:2], 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255
    resized = resize_square(out, side)
    assert resized.shape == (side, side, 3)
    assert out.min() - 1e-3 <= resized.min() and resized.max() <= out.max() + 1e-3


@settings(max_examples=30, deadline=None)
@given(arrays(st.sampled_from([np.int8, np.int64, np.complex64, np.bool_]),
              st.tuples(st.integers(1, 5), st.integers(1, 5))))
def test_unsupported_dtypes_always_rejected(image):
    with pytest.raises(ImageLoadError, match="unsupported dtype"):
        load_image(image)


@pytest.mark.parametrize("make", ["extractor", "finetuned", "hybrid"])
def test_weights_file_that_is_not_one_is_named(tmp_path, make):
    """Extraction and both Keras classifiers: a file that is neither HDF5 nor a .keras
    archive is refused by name, before Keras' anonymous "file signature not found"."""
    from cnnfeatures import CNNFeatureExtractor, FineTunedCNNClassifier, HybridSepConvClassifier

    bad = tmp_path / "download.weights.h5"
    bad.write_text("<html>404 Not Found</html>")  # what a failed download leaves
    X = np.zeros((4, 32, 32, 3), np.uint8)
    estimator = {"extractor": lambda: CNNFeatureExtractor(backbone="vgg16", weights=str(bad)),
                 "finetuned": lambda: FineTunedCNNClassifier(backbone="vgg16",
                                                             weights=str(bad), input_side=32),
                 "hybrid": lambda: HybridSepConvClassifier(backbone="vgg16", weights=str(bad),
                                                           input_side=32)}[make]()
    with pytest.raises(ValueError, match=f"weights file {re.escape(str(bad))} is not a Keras "
                                         "weights file"):
        estimator.fit(X, [0, 1, 0, 1])
