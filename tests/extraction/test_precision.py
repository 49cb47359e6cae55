"""Reduced-precision extraction: same features to about 1%, float32 out, separate caches."""

from __future__ import annotations

import numpy as np
import pytest

from cnnfeatures import CNNFeatureExtractor
from cnnfeatures.backbones import BackboneSpec, get_feature_network, register_backbone
from cnnfeatures.instrumentation import forward_pass_counts


def _small_conv(include_top=False, weights=None, input_shape=(None, None, 3)):
    """Two seeded conv layers: real multiply-adds, so precision shows, in milliseconds."""
    import keras

    x = keras.Input(input_shape or (None, None, 3))
    a = keras.layers.Conv2D(16, 3, activation="relu", name="conv1")(x)
    b = keras.layers.Conv2D(32, 3, activation="relu", name="conv2")(a)
    model = keras.Model(x, keras.layers.MaxPooling2D(4, name="pool")(b), name="smallconv")
    if weights is not None:
        model.load_weights(weights)
    return model


@pytest.fixture(scope="module")
def smallconv(tmp_path_factory):
    """Register 'smallconv' and write one fixed weights file for it."""
    import keras

    register_backbone(BackboneSpec("smallconv", "", _small_conv, 32, 8, (), ("pool",),
                                   preprocess=lambda a: a / 127.5 - 1.0))
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("w") / "smallconv.weights.h5"
    _small_conv().save_weights(path)
    return str(path)


def _extract(weights, precision, images, **kw):
    ext = CNNFeatureExtractor(backbone="smallconv", weights=weights, layer="pool",
                              pooling="mean", scales=(0,), precision=precision, **kw)
    return ext.fit_transform(images)


def test_bfloat16_features_match_float32_to_one_percent(smallconv, rng):
    images = rng.integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    full = _extract(smallconv, "float32", images, l2_normalize=False)
    half = _extract(smallconv, "bfloat16", images, l2_normalize=False)
    assert half.dtype == np.float32 and half.shape == full.shape
    rel = np.linalg.norm(half - full, axis=1) / np.linalg.norm(full, axis=1)
    # bfloat16 keeps 8 significant bits (0.4% per rounding); two layers stay within 3%.
    assert rel.max() < 0.03
    assert rel.max() > 0  # it did run in lower precision


def test_precision_networks_are_separate_and_mixed(smallconv):
    full = get_feature_network("smallconv", smallconv)
    half = get_feature_network("smallconv", smallconv, precision="bfloat16")
    assert half is not full
    assert half is get_feature_network("smallconv", smallconv, precision="bfloat16")
    assert half.model.get_layer("conv1").compute_dtype == "bfloat16"
    assert half.model.get_layer("conv1").variable_dtype == "float32"
    assert full.model.get_layer("conv1").compute_dtype == "float32"
    # Same weights, different identities: cache entries can never mix.
    np.testing.assert_array_equal(half.model.get_layer("conv2").get_weights()[0],
                                  full.model.get_layer("conv2").get_weights()[0])
    assert half.fingerprint == full.fingerprint  # the same weights...
    assert (half.precision, full.precision) == ("bfloat16", "float32")  # ...another key part
    import keras

    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_cached_float32_features_are_not_served_to_bfloat16(smallconv):
    # Images no other test uses: the memory cache lives as long as the process.
    images = np.random.default_rng(123).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    before = forward_pass_counts()
    _extract(smallconv, "float32", images)
    _extract(smallconv, "bfloat16", images)
    _extract(smallconv, "bfloat16", images)  # second time: from the cache
    after = forward_pass_counts()
    new = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert sorted(new.values()) == [3, 3]


def test_bad_precision_names_the_parameter(rng):
    ext = CNNFeatureExtractor(weights=None, precision="int8")
    with pytest.raises(ValueError, match="precision"):
        ext.fit(rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="precision must be one of"):
        get_feature_network("vgg16", None, precision="half")
