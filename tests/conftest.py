"""Shared fixtures: real data paths, a tiny backbone, and image-writing helpers."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"
VGG16_WEIGHTS = SHARED / "weights" / "vgg16_notop_imagenet.weights.h5"
XCEPTION_WEIGHTS = SHARED / "weights" / "xception_notop_imagenet.weights.h5"


def pytest_collection_modifyitems(config, items):
    if DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data not found at {DATA}")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


#: Images per class and split in :func:`small_data` (other splits: 2).
SMALL_PER_CLASS = {"train": 5, "test": 3}


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """``<tmp>/data``: every set of ../shared/data, laid out the same, with a few real
    images per class and split (symlinks): the first two (pages name them), then spread
    over the folder (several patients or slides). Built once per session."""
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    top = tmp_path_factory.mktemp("small") / "data"
    for dataset in sorted(p for p in DATA.iterdir() if p.is_dir()):
        for split_dir in sorted(p for p in dataset.iterdir() if p.is_dir()):
            for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                target = top / dataset.name / split_dir.name / class_dir.name
                target.mkdir(parents=True)
                files = sorted(class_dir.iterdir())
                n = SMALL_PER_CLASS.get(split_dir.name, 2)
                picks = np.unique(np.r_[0, 1, np.linspace(2, len(files) - 1, n - 2).round()]
                                  .clip(0, len(files) - 1))
                for f in (files[int(i)] for i in picks):
                    (target / f.name).symlink_to(f)
    return top


def real_subset(dataset: str, split: str, per_class: int):
    """The first ``per_class`` file names of each class of a real split, and labels."""
    from cnnfeatures import load_image_folder

    folder = load_image_folder(DATA / dataset, split=split)
    keep = np.concatenate([np.flatnonzero(folder.target == c)[:per_class]
                           for c in np.unique(folder.target)])
    return np.asarray(folder.filenames)[keep], np.asarray(folder.target)[keep]


def _tiny_builder(include_top=False, weights=None, input_shape=(None, None, 3)):
    """A parameter-free 'network': 8x8 average pooling, then 2x2 max pooling."""
    import keras

    x = keras.Input(input_shape or (None, None, 3))
    a = keras.layers.AveragePooling2D(8, name="avg8")(x)
    b = keras.layers.MaxPooling2D(2, name="max2")(a)
    return keras.Model(x, b, name="tiny")


@pytest.fixture(scope="session")
def tiny_backbone():
    """Register the 'tiny' backbone: outputs are hand-computable from the pixels."""
    from cnnfeatures.backbones import BackboneSpec, register_backbone

    register_backbone(
        BackboneSpec(
            "tiny", "", _tiny_builder, 32, 8, (), ("avg8", "max2"), preprocess=lambda a: a
        )
    )
    return "tiny"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def image_files(tmp_path, rng):
    """Write four small RGB PNGs of different sizes; return their paths."""
    from PIL import Image

    paths = []
    for i, size in enumerate([(40, 30), (64, 64), (20, 50), (33, 33)]):
        arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(arr).save(path)
        paths.append(str(path))
    return paths


def proba_in_fresh_process(model, X, tmp_path, setup: str = ""):
    """joblib.dump the model, load it in a new Python process and return its predict_proba.

    ``setup`` is code run first in that process (e.g. registering a test backbone).
    """
    import subprocess
    import sys

    import joblib

    joblib.dump(model, tmp_path / "model.joblib")
    np.save(tmp_path / "X.npy", X)
    code = (
        "import joblib, numpy as np\n" + setup +
        f"m = joblib.load({str(tmp_path / 'model.joblib')!r})\n"
        f"np.save({str(tmp_path / 'p.npy')!r}, m.predict_proba(np.load("
        f"{str(tmp_path / 'X.npy')!r})))\n"
    )
    repo = Path(__file__).resolve().parents[1]
    # A process of its own in every way: no shared session cache to read features from.
    env = {k: v for k, v in os.environ.items() if k != "CNNFEATURES_SESSION_CACHE"}
    env["CNNFEATURES_CACHE_DIR"] = "none"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo, capture_output=True,
                   env=env)
    return np.load(tmp_path / "p.npy")


def _tiny_conv_builder(include_top=False, weights=None, input_shape=(None, None, 3)):
    """A one-convolution network with real weights, loadable from a weights file."""
    import keras

    x = keras.Input(input_shape or (None, None, 3))
    y = keras.layers.Conv2D(4, 3, name="conv")(x)
    y = keras.layers.MaxPooling2D(2, name="pool")(y)
    model = keras.Model(x, y, name="tiny_conv")
    if weights is not None:
        model.load_weights(weights)
    return model


def register_tiny_conv():
    from cnnfeatures.backbones import BackboneSpec, register_backbone

    register_backbone(BackboneSpec("tiny_conv", "", _tiny_conv_builder, 32, 8, (), ("pool",),
                                   preprocess=lambda a: a))
    return "tiny_conv"


@pytest.fixture(scope="session")
def tiny_conv_backbone():
    """Register 'tiny_conv': one 3x3 convolution (4 filters) and 2x2 max pooling."""
    return register_tiny_conv()


def _tiny_vgg_builder(include_top=False, weights=None, input_shape=(None, None, 3)):
    """VGG's shape in miniature: five blocks of one 3x3 convolution and 2x2 max pooling,
    named as VGG's (``block1_conv1`` ... ``block5_pool``), 8 to 40 filters; centred
    pixels on VGG's scale (0-255), as VGG's own preprocessing leaves them."""
    import keras

    x = inputs = keras.Input(input_shape or (None, None, 3))
    for b in range(1, 6):
        x = keras.layers.Conv2D(8 * b, 3, padding="same", activation="relu",
                                name=f"block{b}_conv1")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    model = keras.Model(inputs, x, name="tiny_vgg")
    if weights is not None:
        model.load_weights(weights)
    return model


def register_tiny_vgg():
    from cnnfeatures.backbones import BackboneSpec, register_backbone

    blocks = tuple(f"block{b}" for b in range(1, 6))
    register_backbone(BackboneSpec("tiny_vgg", "", _tiny_vgg_builder, 32, 32, (),
                                   ("block5_pool",), preprocess=lambda a: a - 127.5,
                                   blocks=blocks, block_pools=tuple(f"{b}_pool" for b in blocks)))
    return "tiny_vgg"


#: Code that registers 'tiny_vgg' in a fresh process (see proba_in_fresh_process).
REGISTER_TINY_VGG = "from tests.conftest import register_tiny_vgg; register_tiny_vgg()\n"


@pytest.fixture(scope="session")
def tiny_vgg_backbone():
    """Register 'tiny_vgg': VGG's blocks in miniature, for the Keras classifiers' tests
    whose subject is the training, not VGG's size (a fit takes a third of VGG-16's time
    at 32 pixels)."""
    return register_tiny_vgg()


def save_tiny_conv_weights(path, seed: int):
    """Write tiny_conv weights drawn from ``seed`` to ``path`` (a .weights.h5 file)."""
    model = _tiny_conv_builder()
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.save_weights(path)
    return path


def write_tint_dataset(root, n_train: int, n_test: int):
    """train/ and test/ PNGs of classes 'blue' and 'red', which differ in their tint.

    (A tint and not a brightness: the features are L2-normalised, which removes brightness.)
    """
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for label, channel in (("blue", 2), ("red", 0)):
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 90, (32, 32, 3))
                pixels[..., channel] += 150
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / label / f"{i}.png")
    return str(root)


def dicom_dataset(**elements):
    """A minimal secondary-capture DICOM data set (gray, one sample), with ``elements``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = "P1"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    for key, value in elements.items():
        setattr(ds, key, value)
    return ds
