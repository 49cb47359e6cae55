"""Real inputs and faults (issue 13): every row is a class of files or faults, tested here.

Files are generated in the tests (no binary fixtures in git). Each case ends either in an
error that names the input and what was expected, or in a correct, checked result.
"""

from __future__ import annotations

import errno
import os
import pickle
import stat
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

from cnnfeatures import (
    CNNFeatureExtractor,
    ImageAugmenter,
    ImageLoadError,
    VLADEncoder,
    load_image,
    load_image_folder,
)
from cnnfeatures.cache import (
    ActivationCache,
    CacheWriteWarning,
    MemoryLRU,
    NotACacheError,
    clear_memory_cache,
    get_cache,
    make_key,
    memory_cache,
)
from cnnfeatures.descriptors import LocalDescriptors
from cnnfeatures.images import load_image_native, resize_square
from cnnfeatures.messages import reset_warnings
from tests.conftest import dicom_dataset, proba_in_fresh_process, save_tiny_conv_weights

SIDE = 16  # images of 100 px are then over 4 x SIDE: the reduced-decoding path


# --------------------------------------------------------------------------- every mode

def _halves(mode: str, size: tuple[int, int]) -> Image.Image:
    """Left half black, right half white (full scale), in ``mode``."""
    w, h = size
    if mode in ("I;16", "I;16B", "I"):
        arr = np.zeros((h, w), np.uint16 if mode != "I" else np.int32)
        arr[:, w // 2:] = 65535
        if mode == "I;16B":  # (Pillow's convert to I;16B keeps only 8 bits)
            return Image.frombytes(mode, (w, h), arr.astype(">u2").tobytes())
        return Image.fromarray(arr)
    if mode == "F":
        arr = np.zeros((h, w), np.float32)
        arr[:, w // 2:] = 255.0
        return Image.fromarray(arr)
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, w // 2:] = 255
    rgb = Image.fromarray(arr)
    if mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        with_alpha = rgb.convert("RGBA")
        with_alpha.putalpha(255)
        return with_alpha.convert(mode)
    return rgb.convert(mode)


MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV",
         "I", "I;16", "I;16B", "F", "La", "RGBa"]
FORMATS = {"PNG": ".png", "TIFF": ".tif", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp"}


def _mode_matrix(tmp_path):
    """Every mode each format can hold, written at two sizes: (format, mode, size, path)."""
    cases = []
    for fmt, ext in FORMATS.items():
        for mode in MODES:
            for size in ((24, 20), (100, 90)):
                path = tmp_path / f"{mode.replace(';', '_')}_{size[0]}{ext}"
                try:
                    _halves(mode, size).save(path, format=fmt)
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # the format cannot hold this mode
                cases.append((fmt, mode, size, path))
    return cases


def test_every_mode_of_every_format_loads_at_both_sizes(tmp_path):
    cases = _mode_matrix(tmp_path)
    formats = {fmt for fmt, *_ in cases}
    assert formats == set(FORMATS) and len(cases) >= 60, len(cases)
    for fmt, mode, size, path in cases:
        full = load_image(path)
        assert full.shape == (size[1], size[0], 3) and full.dtype == np.float32, (fmt, mode)
        w = size[0]
        # WebP is lossy: allow its ringing at the edge between the halves.
        tol = 40 if fmt == "WEBP" else 2
        assert full[:, : w // 2 - 2].max() <= tol, (fmt, mode, full[:, : w // 2 - 2].max())
        assert full[:, w // 2 + 2 :].min() >= 255 - tol, (fmt, mode)
        reduced = load_image(path, SIDE)  # 100 px: reduced decoding, then the resize
        assert reduced.shape == (SIDE, SIDE, 3), (fmt, mode)
        expected = resize_square(full, SIDE)
        assert np.abs(reduced - expected).mean() < 6, (fmt, mode)


def test_large_16_bit_gray_png_at_side_224(tmp_path):
    """The X-ray case: a 1000-px 16-bit PNG, short side >= 4 x 224, loads with its detail."""
    arr = np.tile(np.linspace(0, 65535, 1000).astype(np.uint16), (1000, 1))
    path = tmp_path / "xray16.png"
    Image.fromarray(arr).save(path)
    image = load_image(path, 224)
    assert image.shape == (224, 224, 3)
    np.testing.assert_allclose(image[0, :, 0], np.linspace(0, 255, 224), atol=1.5)


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_keeps_16_bits(tmp_path, ext, channels):
    import cv2

    rgb = np.zeros((6, 5, channels), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 12345, 257 * 100 + 50, 65535
    if channels == 4:
        rgb[..., 3] = 65535
    path = tmp_path / f"c16{ext}"
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA if channels == 4 else cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), bgr)
    out = load_image(path)
    np.testing.assert_allclose(out[0, 0], np.array([12345, 25750, 65535]) * 255 / 65535,
                               rtol=1e-5)
    native = load_image_native(path)
    assert native.dtype == np.uint16
    np.testing.assert_array_equal(native[0, 0], [12345, 25750, 65535])


# --------------------------------------------------------------------------- odd files


def _finishes(fn, seconds: float = 20.0):
    """Run ``fn`` in a thread; return (finished, exception)."""
    outcome = {}

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), outcome.get("error")


def test_fifo_and_device_links_are_refused_not_read(tmp_path):
    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.png"
    zero.symlink_to("/dev/zero")
    for path, kind in ((fifo, "a FIFO"), (zero, "a character device")):
        done, error = _finishes(lambda p=path: load_image(p))
        assert done, f"{path} hung"
        assert isinstance(error, ImageLoadError) and str(error).startswith(str(path))
        assert kind in str(error)


def test_folder_with_fifo_and_device_link_lists_them(tmp_path):
    cls = tmp_path / "train" / "a"
    cls.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(cls / "ok.png")
    os.mkfifo(cls / "pipe.png")
    (cls / "zero.png").symlink_to("/dev/zero")
    (cls / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.warns(UserWarning, match=r"not images \(or not regular files\)") as record:
        data = load_image_folder(tmp_path, split="train")
    assert [os.path.basename(f) for f in data.filenames] == ["ok.png"]
    message = str(record[0].message)
    assert "pipe.png (FIFO)" in message and "zero.png (device)" in message
    assert "gone.png (broken link)" in message


def test_file_over_the_size_cap(tmp_path):
    """The cap is a setting (set_config, config_context), whose default a fresh process
    reads from $CNNFEATURES_MAX_IMAGE_BYTES."""
    import subprocess
    import sys

    from cnnfeatures import config_context

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(path)
    with config_context(max_image_bytes=50):
        with pytest.raises(ImageLoadError, match=r"big\.png: file of .* exceeds the image "
                                                 r"size cap of 50 bytes.*set_config\("
                                                 r"max_image_bytes=.*MAX_IMAGE_BYTES"):
            load_image(path)
    assert load_image(path).shape == (64, 64, 3)  # the default cap again after the block
    done = subprocess.run([sys.executable, "-c", f"from cnnfeatures import load_image; "
                           f"load_image({str(path)!r})"], capture_output=True, text=True,
                          env={**os.environ, "CNNFEATURES_MAX_IMAGE_BYTES": "50"})
    assert done.returncode == 1 and "cap of 50 bytes" in done.stderr


def test_float_images_in_unit_range_are_refused(tmp_path):
    with pytest.raises(ImageLoadError, match=r"X\[2\]: float pixels all lie in \[0, 0\.9\]"):
        CNNFeatureExtractor(backbone="vgg16", weights=None, cache=False).fit_transform(
            [np.zeros((8, 8, 3), np.uint8)] * 2 + [np.linspace(0, 0.9, 192).reshape(8, 8, 3)])
    path = tmp_path / "unit.tif"
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(path)
    with pytest.raises(ImageLoadError, match=r"unit\.tif: float pixels all lie in \[0, 1\]"):
        load_image(path)
    assert load_image(np.zeros((3, 3), np.float32)).max() == 0  # all black: no ambiguity


def test_one_image_array_as_X_is_refused(tiny_backbone):
    ext = CNNFeatureExtractor(backbone="tiny", layer="avg8", weights=None, cache=False)
    with pytest.raises(ValueError, match=r"X: an array of shape \(40, 40, 3\) is ambiguous"):
        ext.fit_transform(np.zeros((40, 40, 3), np.uint8))
    assert ext.fit_transform([np.zeros((40, 40, 3), np.uint8)]).shape == (1, 3)
    assert ext.fit_transform(np.zeros((5, 40, 40), np.uint8)).shape == (5, 3)  # gray batch


def test_dataframe_columns_of_paths(tiny_backbone, image_files):
    pd = pytest.importorskip("pandas")
    ext = CNNFeatureExtractor(backbone="tiny", layer="avg8", weights=None, cache=False)
    frame = pd.DataFrame({"path": image_files})
    np.testing.assert_array_equal(ext.fit_transform(frame), ext.fit_transform(image_files))
    np.testing.assert_array_equal(ext.transform(frame[["path"]].to_numpy()),
                                  ext.transform(image_files))
    frame["label"] = 0
    with pytest.raises(ValueError, match=r"X is a DataFrame with 2 columns \['path', 'label'\]"
                                         r".*X\['path'\]"):
        ext.transform(frame)


# --------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_dicom_float_pixels_non_finite(tmp_path, bad):
    pytest.importorskip("pydicom")
    pixels = np.arange(16, dtype=np.float32).reshape(4, 4)
    pixels[1, 2] = bad
    ds = dicom_dataset(Rows=4, Columns=4, BitsAllocated=32, FloatPixelData=pixels.tobytes())
    path = tmp_path / "float.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageLoadError, match=r"float\.dcm: 1 non-finite pixel value"):
        load_image(path)


def test_dicom_declaring_a_huge_image_is_refused_before_decoding(tmp_path):
    pytest.importorskip("pydicom")
    ds = dicom_dataset(Rows=20000, Columns=20000, BitsAllocated=16, BitsStored=16, HighBit=15,
                        PixelRepresentation=0, PixelData=b"\0" * 64)
    path = tmp_path / "bomb.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageLoadError, match=r"bomb\.dcm: declared size is too large "
                                             r"\(20000x20000x1 = 400,000,000 pixels"):
        load_image(path)


def test_dcm_files_decoded_by_content(tmp_path):
    pytest.importorskip("pydicom")
    png = tmp_path / "really_png.dcm"
    Image.fromarray(np.full((5, 6), 200, np.uint8)).save(png, format="PNG")
    assert load_image(png).shape == (5, 6, 3) and load_image(png).max() == 200
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ImageLoadError, match=r"junk\.dcm: not a DICOM file .*nor an image "
                                             "format Pillow recognises"):
        load_image(junk)


def test_corrupt_dcm_in_folder_is_named_not_reported_as_lacking_a_tag(tmp_path):
    pytest.importorskip("pydicom")
    cls = tmp_path / "a"
    cls.mkdir()
    dicom_dataset(Rows=2, Columns=2, BitsAllocated=16, BitsStored=16, HighBit=15,
                   PixelRepresentation=0, PixelData=b"\0" * 8).save_as(
        cls / "good.dcm", enforce_file_format=True)
    (cls / "junk.dcm").write_bytes(np.random.default_rng(1).bytes(2000))
    with pytest.raises(ValueError, match=r"1 file\(s\) could not be read as DICOM to find "
                                         r"their PatientID: .*junk\.dcm: not a DICOM file"):
        load_image_folder(tmp_path, group_pattern="dicom:PatientID")


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("y, message", [
    ([0, 1, np.nan, 1], r"y has missing labels \(None or NaN\) at position\(s\) \[2\]"),
    (["a", None, "b", "a"], r"y has missing labels \(None or NaN\) at position\(s\) \[1\]"),
    (["a", 1, "b", 2], r"y mixes label types \(number, str: 'a' at position 0, 1 at "),
    ([0.1, 0.7, 1.3, 2.9], r"Unknown label type: continuous"),
])
def test_bad_labels_named(y, message):
    four = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=message):
        ImageAugmenter(random_state=0).fit_resample(four, y)
    from cnnfeatures import FineTunedCNNClassifier

    with pytest.raises(ValueError, match=message):
        FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32).fit(four, y)


def test_column_vector_labels_are_ravelled_with_a_warning():
    from sklearn.exceptions import DataConversionWarning

    four = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        _, y_res = ImageAugmenter(n_copies=1, random_state=0).fit_resample(
            four, np.array([[0], [1], [1], [0]]))
    assert y_res.tolist() == [0, 1, 1, 0] * 2


def test_class_weight_naming_an_absent_class():
    from cnnfeatures import FineTunedCNNClassifier

    four = np.zeros((4, 32, 32, 3), np.uint8)
    clf = FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32,
                                 class_weight={5: 10})
    with pytest.raises(ValueError, match=r"class_weight names class\(es\) \[5\] that y does "
                                         r"not hold; classes are \[0, 1\]"):
        clf.fit(four, [0, 1, 0, 1])


# --------------------------------------------------------------------------- weights


def test_weights_file_replaced_in_place_is_a_new_network(tmp_path, tiny_conv_backbone):
    weights = save_tiny_conv_weights(tmp_path / "w.weights.h5", seed=1)
    X = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    fitted = CNNFeatureExtractor(backbone="tiny_conv", layer="pool", pooling="mean",
                                 weights=str(weights), cache=False).fit(X)
    before = fitted.transform(X)
    st = os.stat(weights)
    save_tiny_conv_weights(tmp_path / "w2.weights.h5", seed=2)
    os.replace(tmp_path / "w2.weights.h5", weights)  # same size
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # same modification time
    assert os.stat(weights).st_size == st.st_size
    fresh = CNNFeatureExtractor(**fitted.get_params()).fit(X).transform(X)
    assert not np.allclose(fresh, before)  # the new file's network, not a stale one
    with pytest.raises(ValueError, match=r"the weights '.*w\.weights\.h5' have changed since "
                                         r"this extractor was fitted"):
        fitted.transform(X)
    restored = pickle.loads(pickle.dumps(fitted))
    with pytest.raises(ValueError, match="have changed since this extractor was fitted"):
        restored.transform(X)


def test_random_network_is_the_same_in_a_fresh_process(tmp_path, tiny_conv_backbone):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X = np.random.default_rng(0).integers(0, 256, (8, 40, 40, 3), dtype=np.uint8)
    pipe = make_pipeline(
        CNNFeatureExtractor(backbone="tiny_conv", layer="pool", pooling="mean", weights=None,
                            cache=False, random_state=3),
        LogisticRegression()).fit(X, [0, 1] * 4)
    here = pipe.predict_proba(X)
    there = proba_in_fresh_process(pipe, X, tmp_path, setup=(
        "from tests.conftest import register_tiny_conv\nregister_tiny_conv()\n"))
    np.testing.assert_allclose(there, here, atol=1e-6)
    other = CNNFeatureExtractor(backbone="tiny_conv", layer="pool", pooling="mean",
                                weights=None, cache=False, random_state=4).fit(X)
    assert not np.allclose(other.transform(X), pipe[0].transform(X))


# --------------------------------------------------------------------------- the cache


def _filled_cache(tmp_path, tiny_conv_backbone):
    weights = save_tiny_conv_weights(tmp_path / "w.weights.h5", seed=1)
    directory = tmp_path / "cache"
    ext = CNNFeatureExtractor(backbone="tiny_conv", layer="pool", pooling="mean",
                              weights=str(weights), cache=str(directory))
    X = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    expected = ext.fit_transform(X)
    return ext, X, expected, directory


def _entries(directory):
    """The cache's own entries: <2 hex>/<40 hex>.npy."""
    return sorted(p for p in directory.glob("??/*.npy") if len(p.stem) == 40)


@pytest.mark.parametrize("fault", ["shape", "dtype", "symlink", "forged", "fifo", "directory",
                                   "truncated"])
def test_odd_disk_entries_are_misses(tmp_path, tiny_conv_backbone, fault):
    ext, X, expected, directory = _filled_cache(tmp_path, tiny_conv_backbone)
    entries = _entries(directory)
    assert len(entries) >= 6  # both poolings of every image
    other = tmp_path / "other.npy"
    np.save(other, np.zeros((5, 5, 4), np.float32))
    for path in entries:
        path.unlink()
        if fault == "shape":
            np.save(path, np.ones(10, np.float32))
        elif fault == "dtype":
            np.save(path, np.ones(4, np.float64))
        elif fault == "symlink":
            path.symlink_to(other)
        elif fault == "forged":
            header = {"descr": "<f4", "fortran_order": False, "shape": (10**10,)}
            with open(path, "wb") as f:
                np.lib.format.write_array_header_1_0(f, header)
                f.write(b"\0" * 16)
        elif fault == "fifo":
            os.mkfifo(path)
        elif fault == "directory":
            path.mkdir()
        else:
            np.save(path, np.ones(4, np.float32))
            path.write_bytes(path.read_bytes()[:-3])
    clear_memory_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWriteWarning)  # a directory cannot be replaced
        done, error = _finishes(lambda: np.testing.assert_allclose(ext.transform(X), expected,
                                                                   rtol=1e-6))
    assert done and error is None, error
    if fault not in ("directory",):  # rewritten atomically as whole regular files
        for path in _entries(directory):
            assert stat.S_ISREG(os.lstat(path).st_mode)
            value = np.load(path)  # a feature, or the network's card (uint8 text)
            assert value.shape == (4,) or value.dtype == np.uint8


def test_clear_and_prune_touch_only_their_own_files(tmp_path, tiny_conv_backbone):
    ext, X, expected, directory = _filled_cache(tmp_path, tiny_conv_backbone)
    mine = _entries(directory)
    (directory / "train").mkdir()
    foreign = [directory / "train" / "features.npy", directory / "ab" / "notes.npy",
               directory / "ab" / "features.tmp", directory / "README"]
    (directory / "ab").mkdir(exist_ok=True)
    for path in foreign:
        np.save(path, np.zeros(3)) if path.suffix == ".npy" else path.write_text("keep")
    cache = ActivationCache(directory)
    assert cache.prune(max_bytes=0) == len(mine)
    assert all(p.exists() for p in foreign)
    ext.transform(X)  # memory hits: nothing written back
    clear_memory_cache()
    ext.transform(X)
    cache.clear()
    assert not _entries(directory) and all(p.exists() for p in foreign)


def test_clear_refuses_a_directory_the_cache_did_not_mark(tmp_path):
    from cnnfeatures.cli import main

    project = tmp_path / "project"
    (project / "ab").mkdir(parents=True)
    kept = project / "ab" / ("0" * 40 + ".npy")  # even a name like an entry's
    np.save(kept, np.zeros(3))
    with pytest.raises(NotACacheError, match=r"project has no CACHEDIR\.TAG marker .* "
                                             "nothing was deleted"):
        ActivationCache(project).clear()
    assert main(["cache", "clear", "--dir", str(project)]) == 2
    assert main(["cache", "prune", "--max-mb", "0", "--dir", str(project)]) == 2
    assert kept.exists()
    with pytest.warns(CacheWriteWarning, match=r"project holds files .* not a cnnfeatures "
                                               r"cache"):
        ActivationCache(project).put(make_key("x"), np.ones(2, np.float32))
    assert sorted(p.name for p in project.rglob("*")) == sorted(["ab", kept.name])


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_unwritable_cache_warns_once_and_goes_on(tmp_path, tiny_backbone, monkeypatch, code):
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    reset_warnings()  # each warning is said once per process
    clear_memory_cache()  # earlier tests may hold these features in memory
    directory = tmp_path / f"cache{code}"
    X = np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    ext = CNNFeatureExtractor(backbone="tiny", layer="avg8", pooling="mean", weights=None,
                              cache=str(directory))
    with pytest.warns(CacheWriteWarning) as record:
        features = ext.fit_transform(X)
    # (pytest.warns records every warning; a backend may add deprecation notes of its own)
    said = [w for w in record if issubclass(w.category, CacheWriteWarning)]
    assert len(said) == 1
    assert str(directory) in str(said[0].message) and os.strerror(code) in str(
        said[0].message)
    plain = CNNFeatureExtractor(**{**ext.get_params(), "cache": False}).fit_transform(X)
    np.testing.assert_array_equal(features, plain)


def test_info_survives_dangling_links_and_concurrent_clearing(tmp_path, tiny_conv_backbone):
    ext, X, expected, directory = _filled_cache(tmp_path, tiny_conv_backbone)
    n = len(_entries(directory))
    shard = _entries(directory)[0].parent
    (shard / ("f" * 40 + ".npy")).symlink_to(tmp_path / "nowhere.npy")
    cache = ActivationCache(directory)
    assert cache.info().disk_entries == n
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            cache.clear()
            clear_memory_cache()
            ext.transform(X)

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(30):
            assert 0 <= cache.info().disk_entries <= n
            cache.prune(max_bytes=10**9)
    finally:
        stop.set()
        worker.join()


def test_memory_bound_is_one_per_process_in_real_bytes(tmp_path):
    assert get_cache(tmp_path / "a").memory is get_cache(tmp_path / "b").memory is memory_cache()

    import tracemalloc

    lru = MemoryLRU(max_bytes=10**12)
    tracemalloc.start()  # counts what is allocated, whatever the allocator reuses
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(200_000):
            value = np.ones(64, np.float32)
            value.flags.writeable = False
            lru.put(make_key(i), value)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.85 * grown <= lru.bytes <= 1.25 * grown, (lru.bytes, grown)
    lru.set_limit(lru.bytes // 2)
    assert lru.bytes <= lru.max_bytes and lru.entries < 110_000


# --------------------------------------------------------------------------- VLAD


class _LazyImages:
    """Per-image descriptors made on demand; counts how many arrays are alive at once."""

    def __init__(self, n, rows, dim):
        self.n, self.rows, self.dim = n, rows, dim
        self.reads = 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        self.reads += 1
        return np.random.default_rng(i).standard_normal((self.rows, self.dim), np.float32)


def test_vlad_reads_a_lazy_sequence_in_bounded_memory():
    import tracemalloc

    lazy = _LazyImages(400, 100, 64)  # 10 MB if held at once
    total = 400 * 100 * 64 * 4
    descriptors = LocalDescriptors.from_sequence(lazy)
    assert not descriptors.in_memory and descriptors.n_descriptors == 40_000
    tracemalloc.start()
    try:
        vlad = VLADEncoder(k=4, pca_components=8, max_fit_descriptors=2000, batch_size=16,
                           random_state=0).fit(lazy)
        codes = vlad.transform(lazy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < total / 3, (peak, total)
    in_memory = LocalDescriptors.from_arrays([lazy[i] for i in range(len(lazy))])
    same = VLADEncoder(k=4, pca_components=8, max_fit_descriptors=2000, batch_size=16,
                       random_state=0).fit(in_memory).transform(in_memory)
    np.testing.assert_array_equal(codes, same)


def test_vlad_sequence_that_changes_shape_is_named():
    class Shifty(_LazyImages):
        def __getitem__(self, i):
            rows = super().__getitem__(i)
            return rows if self.reads <= self.n else rows[:-1]

    with pytest.raises(ValueError, match=r"X\[\d+\] has shape \(99, 8\) now but had "
                                         r"\(100, 8\)"):
        VLADEncoder(k=2, pca_components=None, random_state=0).fit(Shifty(5, 100, 8))
