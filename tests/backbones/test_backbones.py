import numpy as np
import pytest

from cnnfeatures.backbones import (
    WeightsUnavailableError,
    check_fc_weights,
    get_backbone,
    get_feature_network,
)
from tests.conftest import VGG16_WEIGHTS


def test_registry_lists_the_report_backbones():
    for name in ("vgg16", "vgg19", "xception", "resnet50"):
        assert get_backbone(name).name == name
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg20'.*vgg19"):
        get_backbone("vgg20")


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        get_feature_network("vgg16", tmp_path / "nope.h5")


def test_imagenet_download_failure_says_how_to_pass_a_file(monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    with pytest.raises(WeightsUnavailableError, match="weights='<path"):
        get_feature_network("resnet50", "imagenet")


@pytest.fixture(scope="module")
def stock_vgg16(tmp_path_factory):
    """Keras' own VGG-16 with its Dense top, random weights, saved to a weights file."""
    import keras

    keras.utils.set_random_seed(1)
    model = keras.applications.VGG16(include_top=True, weights=None)
    path = tmp_path_factory.mktemp("w") / "vgg16_full.weights.h5"
    model.save_weights(path)
    return model, path


def test_fc_as_convolution_equals_dense_at_224(stock_vgg16, rng):
    stock, path = stock_vgg16
    net = get_feature_network("vgg16", path)
    assert net.fc_pretrained
    x = net.preprocess(rng.uniform(0, 255, (2, 224, 224, 3)))
    fc1, fc2, pred = net.reader(["fc1", "fc2", "predictions"])(x)
    assert fc1.shape == (2, 1, 1, 4096)
    import keras

    dense = keras.Model(stock.input, [stock.get_layer(n).output for n in ("fc1", "fc2")])
    ref1, ref2 = (keras.ops.convert_to_numpy(r) for r in dense.predict_on_batch(x))
    for ours, ref in ((fc1, ref1), (fc2, ref2)):
        err = np.abs(ours[:, 0, 0] - ref).max() / np.abs(ref).max()
        assert err <= 1e-5
    np.testing.assert_allclose(pred[:, 0, 0], stock.predict_on_batch(x), rtol=1e-4, atol=1e-7)


def test_fc_maps_at_larger_sides(stock_vgg16, rng):
    net = get_feature_network("vgg16", stock_vgg16[1])
    x = net.preprocess(rng.uniform(0, 255, (1, 544, 544, 3)))
    b5, fc2 = net.reader(["block5_pool", "fc2"])(x)
    assert b5.shape == (1, 17, 17, 512) and fc2.shape == (1, 11, 11, 4096)


def test_vgg19_random_builds_at_224_and_544(rng):
    net = get_feature_network("vgg19", None)
    assert get_feature_network("vgg19", None) is net  # memoised
    read = net.reader(["block5_pool", "fc1"])
    for side, fc_side in ((224, 1), (544, 11)):
        b5, fc1 = read(net.preprocess(rng.uniform(0, 255, (1, side, side, 3))))
        assert b5.shape == (1, side // 32, side // 32, 512)
        assert fc1.shape == (1, fc_side, fc_side, 4096)


def test_unknown_layer_lists_valid_names():
    net = get_feature_network("vgg19", None)
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['fc3'\].*block5_pool.*fc2"):
        net.check_layers(["fc3"])


@pytest.mark.slow
def test_vgg16_offline_weights_and_notop_refusal(rng):
    net = get_feature_network("vgg16", VGG16_WEIGHTS)
    assert not net.fc_pretrained
    with pytest.raises(ValueError, match=r"\['fc1'\] of vgg16.*no classifier top.*"
                                         r"'block5_pool'"):
        check_fc_weights("vgg16", net.fc_pretrained, ["block5_pool", "fc1"], VGG16_WEIGHTS)
    check_fc_weights("vgg16", net.fc_pretrained, ["block5_pool"], VGG16_WEIGHTS)
    check_fc_weights("vgg16", False, ["fc1"], None)  # random weights, as asked
    # Every conv layer carries exactly what Keras itself loads from the file.
    import keras

    stock = keras.applications.VGG16(include_top=False, weights=str(VGG16_WEIGHTS))
    for layer in stock.layers[1:]:
        for ours, ref in zip(net.model.get_layer(layer.name).get_weights(), layer.get_weights()):
            np.testing.assert_array_equal(ours, ref)
    for side in (224, 544):
        (b5,) = net.reader(["block5_pool"])(net.preprocess(rng.uniform(0, 255, (1, side, side, 3))))
        assert b5.shape == (1, side // 32, side // 32, 512)
    from cnnfeatures.memo import memo_info

    assert memo_info()["weights file digests"][0] >= 1  # the file digested once, memoised


@pytest.mark.parametrize("name, width", [("efficientnetv2_b0", 1280), ("convnext_tiny", 768)])
def test_modern_backbones_extract_features_by_name(name, width, rng):
    from cnnfeatures import CNNFeatureExtractor

    images = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    ext = CNNFeatureExtractor(backbone=name, weights=None, cache=False).fit(images)
    features = ext.transform(images)
    # layer=None: the registry's last layer, the base's output, mean-pooled and L2-normalised.
    assert ext.layers_ == get_backbone(name).pooled_layers
    assert features.shape == (2, width) and np.isfinite(features).all()
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def test_convnext_last_layer_has_the_same_name_however_many_were_built():
    # Keras names ConvNeXt's last LayerNormalization after how many it built before.
    spec = get_backbone("convnext_tiny")
    names = {spec.keras_constructor(include_top=False, weights=None,
                                    input_shape=(None, None, 3)).layers[-1].name
             for _ in range(2)}
    assert names == {"convnext_tiny_head_layernorm"}


def test_convnext_weights_file_of_a_stock_model_loads(tmp_path, rng):
    import keras

    stock = keras.applications.ConvNeXtTiny(include_top=False, weights=None,
                                            input_shape=(None, None, 3))
    path = tmp_path / "convnext_tiny.weights.h5"
    stock.save_weights(path)
    ours = get_backbone("convnext_tiny").keras_constructor(include_top=False, weights=str(path),
                                                           input_shape=(None, None, 3))
    x = rng.uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), stock.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
