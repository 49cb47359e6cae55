"""The first hour of a data scientist (issue 15): quiet logs, progress in log files, offline
defaults, one-line errors, warnings said once, clear errors for pipelines built wrong."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnfeatures import CNNFeatureExtractor, FineTunedCNNClassifier, ImageAugmenter
from tests.conftest import DATA, VGG16_WEIGHTS, XCEPTION_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]


def _fresh_env(**changes) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "CNNFEATURES"))}
    return {**env, **changes}


def test_a_fresh_process_transforms_an_image_and_writes_nothing_to_stderr():
    code = ("import numpy as np\nfrom cnnfeatures import CNNFeatureExtractor\n"
            "X = np.random.default_rng(0).integers(0, 255, (1, 40, 40, 3), dtype=np.uint8)\n"
            "print(CNNFeatureExtractor(backbone='vgg16', weights=None, layer='block1_pool', "
            "cache=False).fit_transform(X).shape)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_fresh_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "(1, 64)"
    assert done.stderr == ""


def test_a_fresh_process_fits_a_keras_classifier_and_writes_nothing_to_stderr():
    """TensorFlow's C++ line at the first fit on batches from Python ('Memory patch
    applied') is said while the backend starts, muted, like its other start-up lines."""
    code = ("import numpy as np\nfrom cnnfeatures import FineTunedCNNClassifier\n"
            "X = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)\n"
            "clf = FineTunedCNNClassifier(backbone='vgg16', weights=None, input_side=32, "
            "max_epochs=1, validation_fraction=0.5, random_state=0)\n"
            "print(clf.fit(X, [0, 1] * 4).n_epochs_)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_fresh_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    assert done.stderr == ""


def test_progress_in_a_log_file_is_plain_lines(tiny_backbone, monkeypatch, capsys):
    from cnnfeatures import messages
    from cnnfeatures.backbones import clear_networks

    clear_networks()  # so that the build is announced

    monkeypatch.setattr(messages, "PROGRESS_SECONDS", 0.0)  # a line at every update
    X = np.random.default_rng(1).integers(0, 255, (40, 40, 40, 3), dtype=np.uint8)
    CNNFeatureExtractor(backbone="tiny", layer="avg8", weights=None, cache=False,
                        batch_size=8, verbose=1).fit_transform(X)
    err = capsys.readouterr().err  # captured: not a terminal
    lines = err.strip().splitlines()
    assert "cnnfeatures: building tiny (random weights, float32)" in lines[0]
    assert any("tiny forward passes: 16/40 img (40%)" in line for line in lines)
    assert lines[-1].startswith("cnnfeatures: tiny forward passes: 40/40 img (100%)")
    assert "\r" not in err and "\x1b" not in err and "\x08" not in err


def test_keras_progress_is_one_line_per_epoch_outside_a_terminal(capfd):
    X = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32, head_units=(8, 4),
                           max_epochs=2, validation_fraction=0.5, random_state=0,
                           verbose=1).fit(X, [0, 1] * 4)
    out = capfd.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "\x08" not in out and "\r" not in out


def test_fc_layers_of_a_file_without_top_are_refused_at_fit(tmp_path):
    """A pretrained request never gives random features: fc1 of a weights file without
    the classifier top is an error naming the layer, the file and what to pass."""
    import keras

    weights = tmp_path / "vgg16_notop.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None).save_weights(weights)
    X = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    extractor = CNNFeatureExtractor(backbone="vgg16", weights=str(weights), layer="fc1",
                                    cache=False)
    with pytest.raises(ValueError, match=r"\['fc1'\] of vgg16: the weights .*vgg16_notop"
                                         r".*no classifier top.*'block5_pool'"):
        extractor.fit(X)
    assert extractor.set_params(layer=None).fit(X).layers_ == ("block5_pool",)


def test_defaults_are_one_set_for_the_library_and_the_command_line():
    from cnnfeatures.cli import build_parser

    extractor = CNNFeatureExtractor()
    args = build_parser().parse_args(["evaluate", "data"])
    assert (args.backbone, args.weights, args.pooling) == (
        extractor.backbone, extractor.weights, extractor.pooling) == ("vgg16", "imagenet",
                                                                      "mean")
    assert extractor.layer is None and args.layer is None  # the last pooled block
    assert FineTunedCNNClassifier().backbone == "vgg16"


def test_repeated_fits_do_not_log_retracing(caplog):
    X = np.random.default_rng(0).integers(0, 255, (21, 32, 32, 3), dtype=np.uint8)
    y = np.arange(21) % 2
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for seed in range(6):
            clf = FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32,
                                         head_units=(8, 4), max_epochs=2, batch_size=8,
                                         validation_fraction=0.3, random_state=seed).fit(X, y)
            clf.predict(X[:5])
            clf.predict(X)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_augmenter_in_a_scikit_learn_pipeline_says_which_pipeline_to_use():
    from imblearn.pipeline import make_pipeline as make_imb_pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X = np.zeros((4, 16, 16, 3), np.uint8)
    ext = CNNFeatureExtractor(backbone="vgg16", weights=None, layer="block1_pool")
    with pytest.raises(TypeError, match=r"ImageAugmenter adds augmented images at fit time.*"
                                        r"imblearn\.pipeline\.make_pipeline"):
        make_pipeline(ImageAugmenter(), ext, LogisticRegression()).fit(X, [0, 1, 0, 1])
    make_imb_pipeline(ImageAugmenter(random_state=0), ext, LogisticRegression()).fit(
        X, [0, 1, 0, 1])


def test_weights_file_of_another_network_is_named_before_loading():

    if not XCEPTION_WEIGHTS.exists():
        pytest.skip("no offline Xception weights")
    with pytest.raises(ValueError, match=r"xception_notop_imagenet\.weights\.h5 does not hold "
                                         r"the weights of vgg16 .* it holds the weights of "
                                         r"xception: pass backbone 'xception'"):
        CNNFeatureExtractor(backbone="vgg16", weights=str(XCEPTION_WEIGHTS)).fit(
            np.zeros((1, 32, 32, 3), np.uint8))


@pytest.mark.parametrize("args, message", [
    (["evaluate", "/no/such"], "/no/such: dataset folder not found"),
    (["evaluate", str(DATA / "mini_scene"), "--weights", str(XCEPTION_WEIGHTS)],
     "does not hold the weights of vgg16"),
])
def test_user_errors_are_one_line_and_status_2(args, message):
    if not DATA.is_dir():
        pytest.skip("no ../shared data")
    done = subprocess.run([sys.executable, "-m", "cnnfeatures.cli", *args], cwd=ROOT,
                          env=_fresh_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


@pytest.mark.slow
def test_evaluate_with_no_flag_runs_offline_with_progress(small_data):
    """No flag but the data (a few real images per class of mini_scene): the offline
    VGG-16 weights beside the checkout are found, progress goes to stderr."""
    done = subprocess.run([sys.executable, "-m", "cnnfeatures.cli", "evaluate",
                           str(small_data / "mini_scene")], cwd=ROOT, env=_fresh_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "accuracy" in done.stdout and "layer=block5_pool pooling=mean" in done.stdout
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (f"cnnfeatures: building vgg16 (weights {VGG16_WEIGHTS.resolve()}, "
                        "float32)")
    assert all(line.startswith("cnnfeatures: ") for line in lines), lines
    assert "forward passes: 15/15 img (100%)" in done.stderr  # 5 train images per class
