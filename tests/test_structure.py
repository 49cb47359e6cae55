"""The seams between modules (issue 16): fitted state, explicit flags, declarations made
once, the report runner's journal, and the first-hour hooks that came with them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.pipeline import make_pipeline, make_union
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from cnnfeatures import CNNFeatureExtractor, FineTunedCNNClassifier, ImageAugmenter
from cnnfeatures.augmentation import AUGMENTATION_SETTINGS
from cnnfeatures.cache import clear_memory_cache
from cnnfeatures.images import TransientImage
from cnnfeatures.instrumentation import forward_pass_counts, reset_forward_pass_counts
from cnnfeatures.models import SHARED_PARAMETERS, SmallDataWarning
from cnnfeatures.preprocessing import CLAHETransformer
from tests.conftest import write_tint_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(5)
    X = rng.integers(0, 120, (12, 40, 40, 3), dtype=np.uint8)
    y = np.arange(12) % 2
    X[y == 1, 10:30, 10:30] = 240
    return X, y


# --------------------------------------------------------------------------- fitted state

def test_set_params_after_fit_does_not_change_transform(tiny_conv_backbone, images):
    X, _ = images
    ext = CNNFeatureExtractor(backbone="tiny_conv", layer="pool", pooling="mean",
                              weights=None, cache=False).fit(X)
    before = ext.transform(X)
    ext.set_params(pooling="median", scales=(0, 1), l2_normalize=False)
    np.testing.assert_array_equal(ext.transform(X), before)
    with pytest.raises(ValueError, match="pooling"):
        ext.fit(X)  # the bad value is refused where validation belongs: at fit


def test_keras_classifier_predicts_with_the_side_it_was_fitted_at(images):
    X, y = images
    clf = FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32,
                                 head_units=(8, 4), max_epochs=1, validation_fraction=0.5,
                                 random_state=0).fit(X, y)
    clf.set_params(input_side=64)
    assert clf.predict_proba(X).shape == (12, 2)
    assert (clf.input_side_, clf.backbone_) == (32, "vgg16")


# --------------------------------------------------------------------------- declared once

@pytest.mark.parametrize("name", ["FineTunedCNNClassifier", "HybridSepConvClassifier",
                                  "CNNFeatureExtractor", "VLADEncoder", "CLAHETransformer",
                                  "ImageAugmenter"])
def test_every_parameter_is_in_the_signature(name):
    """scikit-learn reads the parameters from __init__: every one is written there (no
    **kwargs, no forged __signature__), and each value given is the value stored."""
    import inspect

    import cnnfeatures

    cls = getattr(cnnfeatures, name)
    assert "__signature__" not in vars(cls.__init__)
    signature = inspect.signature(cls)
    assert all(p.kind is not p.VAR_KEYWORD for p in signature.parameters.values())
    assert list(signature.parameters) == list(cls().get_params()) or \
        set(signature.parameters) == set(cls().get_params())
    for param in signature.parameters:
        marker = object()
        assert cls(**{param: marker}).get_params()[param] is marker, param


def test_shared_keras_parameters_are_declared_once():
    from cnnfeatures import HybridSepConvClassifier

    for cls in (FineTunedCNNClassifier, HybridSepConvClassifier):
        params = cls().get_params()
        for name, default in SHARED_PARAMETERS.items():
            assert params[name] == default, (cls.__name__, name)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'dropuot'"):
        FineTunedCNNClassifier(dropuot=0.3)


def test_augmentation_settings_are_declared_once():
    from cnnfeatures.cli import build_parser

    names = [name for name, *_ in AUGMENTATION_SETTINGS]
    params = ImageAugmenter().get_params()
    assert set(names) <= set(params) and {"n_copies", "balance", "sampling_strategy",
                                          "random_state"} <= set(params)
    # The sampler's signature repeats the policy's defaults (scikit-learn reads them there).
    assert {name: params[name] for name in names} == {
        name: default for name, default, *_ in AUGMENTATION_SETTINGS}
    augment = build_parser()._subparsers._group_actions[0].choices["augment"]
    augment.format_help()  # its settings' options are added when it is first used
    options = {a.dest for a in augment._actions}
    assert set(names) <= options
    with pytest.raises(ValueError, match="rotation"):
        ImageAugmenter(rotation=500).fit_resample(np.zeros((2, 8, 8, 3), np.uint8), [0, 1])


def test_sampling_strategy_of_imbalanced_learn(images):
    X, y = images
    y = np.array([0] * 9 + [1] * 3)
    _, y_res = ImageAugmenter(n_copies=0, balance=True, random_state=0).fit_resample(X, y)
    assert np.bincount(y_res).tolist() == [9, 9]
    _, y_res = ImageAugmenter(n_copies=1, balance=True, sampling_strategy={1: 6},
                              random_state=0).fit_resample(X, y)
    assert np.bincount(y_res).tolist() == [18, 12]  # (3 + 3 added) x 2 views


# --------------------------------------------------------------------------- explicit flags

def test_transient_mark_survives_clahe_and_is_not_cached(tiny_backbone, images):
    from imblearn.pipeline import make_pipeline as make_imb_pipeline

    X, y = images
    X_res, _ = ImageAugmenter(n_copies=1, random_state=0).fit_resample(X, y)
    equalised = CLAHETransformer().transform(X_res)
    assert isinstance(equalised[12], TransientImage) and not isinstance(equalised[0],
                                                                        TransientImage)
    clear_memory_cache()
    pipe = make_imb_pipeline(ImageAugmenter(n_copies=2, random_state=0), CLAHETransformer(),
                             CNNFeatureExtractor(backbone="tiny", layer="avg8",
                                                 weights=None),
                             LogisticRegression())
    reset_forward_pass_counts()
    pipe.fit(X, y)
    pipe.fit(X, y)  # originals from the cache, copies (new each time) forwarded again
    assert sum(forward_pass_counts().values()) == 12 + 24 + 24


def test_precision_is_its_own_part_of_the_cache_key(tiny_conv_backbone, images):
    X, _ = images
    reset_forward_pass_counts()
    for precision in ("float32", "bfloat16"):
        CNNFeatureExtractor(backbone="tiny_conv", layer="pool", weights=None,
                            precision=precision).fit_transform(X[:3])
    keys = sorted(forward_pass_counts())
    assert [k[2] for k in keys] == ["bfloat16", "float32"]
    assert keys[0][1] == keys[1][1]  # one weights fingerprint


# --------------------------------------------------------------------------- explain

@pytest.mark.parametrize("pooling, combination", [("mean", "pool"), ("max", "pool"),
                                                   ("mean", "concat")])
@pytest.mark.parametrize("between", [StandardScaler, MinMaxScaler])
def test_explained_score_is_the_pipelines_decision(tiny_conv_backbone, images, pooling,
                                                   combination, between):
    """Grad-CAM differentiates the fitted maths: scale combination, L2, scaler, classifier."""
    import keras

    from cnnfeatures.explain import grad_cam, integrated_gradients, scorer_for

    X, y = images
    pipe = make_pipeline(
        CNNFeatureExtractor(backbone="tiny_conv", layer="pool", pooling=pooling,
                            scales=(0, 1), scale_combination=combination, weights=None),
        between(), RidgeClassifier()).fit(X, y)
    scorer = scorer_for(pipe)
    explained = np.array([
        keras.ops.convert_to_numpy(scorer.forward(scorer.inputs(image)))[0]
        for image in X])
    d = pipe.decision_function(X)
    # Eager and traced convolutions round differently (oneDNN picks other algorithms): the
    # same maths agrees to a few per cent, a wrong combination or scaler would not.
    np.testing.assert_allclose(explained, np.column_stack([-d, d]), rtol=0.05, atol=0.02)
    assert np.corrcoef(explained[:, 1], d)[0, 1] > 0.999
    heat = grad_cam(pipe, X[1:2], layer="conv", target=1)[0]
    assert heat.shape == (40, 40) and heat.max() == 1
    assert integrated_gradients(pipe, X[1:2], target=1, steps=4)[0].shape == (224, 224)


# --------------------------------------------------------------------------- small data

def test_small_data_trains_without_early_stopping_and_says_so(images):
    X, y = images
    clf = FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32,
                                 head_units=(8, 4), max_epochs=3, random_state=0)
    with pytest.warns(SmallDataWarning, match=r"cannot carve a validation set .* training "
                                              r"for max_epochs=3 without early stopping"):
        clf.fit(X[:3], y[:3])
    assert clf.n_epochs_ == clf.best_epoch_ == 3 and "val_loss" not in clf.history_


def test_calibrated_classifier_on_21_images(images):
    from sklearn.calibration import CalibratedClassifierCV

    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (21, 32, 32, 3), dtype=np.uint8)
    y = np.arange(21) % 2
    clf = FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32,
                                 head_units=(8, 4), max_epochs=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallDataWarning)
        calibrated = CalibratedClassifierCV(clf, cv=3).fit(X, y)
    proba = calibrated.predict_proba(X)
    assert proba.shape == (21, 2) and np.allclose(proba.sum(axis=1), 1)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_scores_agree_with_predict(tiny_vgg_backbone, n_classes):
    """decision_function and predict_log_proba, scikit-learn's way: log-odds of the second
    class (two classes) or log-probabilities, the same decision as predict."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    y = np.array(["a", "b", "c"][:n_classes] * 6)[:12]
    clf = FineTunedCNNClassifier(backbone=tiny_vgg_backbone, weights=None, input_side=32,
                                 head_units=(8, 4), max_epochs=2, validation_fraction=0.5,
                                 random_state=0).fit(X, y)
    proba, log_proba = clf.predict_proba(X), clf.predict_log_proba(X)
    scores = clf.decision_function(X)
    assert np.all(np.isfinite(log_proba)) and np.allclose(np.exp(log_proba), proba, atol=1e-6)
    if n_classes == 2:
        assert scores.shape == (12,)
        assert np.allclose(scores, np.log(proba[:, 1]) - np.log(proba[:, 0]), atol=1e-4)
        assert np.array_equal(clf.classes_[(scores > 0).astype(int)], clf.predict(X))
    else:
        assert scores.shape == (12, 3)
        assert np.array_equal(clf.classes_[scores.argmax(axis=1)], clf.predict(X))


def test_sample_weight_callbacks_and_warm_start(images):
    import keras

    X, y = images

    class Count(keras.callbacks.Callback):
        epochs = 0

        def on_epoch_end(self, epoch, logs=None):
            Count.epochs += 1

    clf = FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32,
                                 head_units=(8, 4), max_epochs=2, patience=10,
                                 validation_fraction=0.5, random_state=0, warm_start=True)
    clf.fit(X, y, callbacks=[Count()])
    assert Count.epochs == 2
    first = clf.model_
    weights = clf.model_.get_layer("predictions").get_weights()[0].copy()
    clf.fit(X, y, sample_weight=np.linspace(0.5, 2, 12))
    assert clf.model_ is first  # trained on, not rebuilt
    assert clf.n_epochs_ == 4 and len(clf.history_["loss"]) == 2  # all fits; this fit's
    assert not np.allclose(weights, clf.model_.get_layer("predictions").get_weights()[0])
    with pytest.raises(ValueError, match=r"sample_weight|shape"):
        clf.fit(X, y, sample_weight=np.ones(5))


# --------------------------------------------------------------------------- composition

def test_clahe_takes_part_in_set_output_and_feature_names(tiny_backbone, images):
    pd = pytest.importorskip("pandas")
    X, y = images
    ext = dict(backbone="tiny", layer="avg8", pooling="mean", weights=None)
    pipe = make_pipeline(CLAHETransformer(), CNNFeatureExtractor(**ext), StandardScaler(),
                         LogisticRegression()).set_output(transform="pandas")
    pipe.fit(X, y)
    features = pipe[:-1].transform(X)
    assert isinstance(features, pd.DataFrame) and list(features.columns)[:2] == [
        "avg8_mean_0", "avg8_mean_1"]
    union = make_union(CNNFeatureExtractor(**ext),
                       make_pipeline(CLAHETransformer(), CNNFeatureExtractor(**ext))).fit(X)
    names = union.get_feature_names_out()
    assert len(names) == 6 and names[0] == "cnnfeatureextractor__avg8_mean_0"
    assert names[3].startswith("pipeline__avg8_mean_")


# --------------------------------------------------------------------------- the runner

@pytest.fixture(scope="module")
def tint_data(tmp_path_factory):
    return write_tint_dataset(tmp_path_factory.mktemp("data") / "tint", 6, 3)


def test_run_table_resumes_from_its_journal(tiny_backbone, tint_data, tmp_path):
    from cnnfeatures.report import Experiment, quick_budget, run_table

    exp = Experiment(backbone="tiny", weights=None, cache=False,
                     budget=quick_budget(scales=(0, 1), n_resamples=50))
    journal = tmp_path / "journal.jsonl"
    seen = []

    def stop_after_three(line):
        seen.append(line)
        if sum("running" in s for s in seen) == 4:
            raise KeyboardInterrupt  # killed while measuring the fourth run

    with pytest.raises(KeyboardInterrupt):
        run_table("1-4", [tint_data], exp, journal=journal, progress=stop_after_three)
    assert len(journal.read_text().splitlines()) == 3
    lines = []
    result = run_table("1-4", [tint_data], exp, journal=journal, progress=lines.append)
    assert sum("done before" in s for s in lines) == 3
    assert sum("running" in s for s in lines) == len(result.records) - 3 == 5
    again = []
    run_table("1-4", [tint_data], exp, journal=journal, progress=again.append)
    assert all("done before" in s for s in again)  # nothing measured twice
    changed = Experiment(backbone="tiny", weights=None, cache=False, random_state=1,
                         budget=quick_budget(scales=(0, 1), n_resamples=50))
    other = []
    run_table("1-4", [tint_data], changed, journal=journal, progress=other.append)
    assert all("running" in s for s in other)  # other settings: measured anew


def test_killed_reproduce_command_resumes(tiny_backbone, tint_data, tmp_path):
    out = tmp_path / "out"
    code = ("import sys\nfrom tests.conftest import _tiny_builder\n"
            "from cnnfeatures.backbones import BackboneSpec, register_backbone\n"
            "register_backbone(BackboneSpec('tiny', '', _tiny_builder, 32, 8, (), "
            "('avg8', 'max2'), preprocess=lambda a: a))\n"
            "from cnnfeatures.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    args = [sys.executable, "-c", code, "reproduce", "1-4", tint_data, "--backbone",
            "tiny", "--weights", "none", "--scales", "0", "1", "2", "-o", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    journal = out / "journal_1-4.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not journal.exists()
                                      or len(journal.read_text().splitlines()) < 2):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(journal.read_text().splitlines())
    assert 2 <= done < 12
    finished = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"resuming: {done} finished run(s)" in finished.stdout
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(records) == 12 and len({r["id"] for r in records}) == 12


def test_group_patterns_are_explicit(tint_data):
    from cnnfeatures.report import Experiment

    assert Experiment().group_pattern("/x/chest_xray") is None  # no guess from the name
    exp = Experiment(group_patterns={"chest_xray": "chest_xray", "*": r"^(\d)"})
    assert exp.group_pattern("/x/chest_xray") == "chest_xray"
    assert exp.group_pattern(tint_data) == r"^(\d)"
    train, _, _ = exp.load(tint_data)
    assert sorted(set(train.groups)) == [str(i) for i in range(6)]


# --------------------------------------------------------------------------- the CLI

def test_cli_help_shows_defaults_and_registries_are_read_at_run_time(tint_data, capsys):
    from cnnfeatures.backbones import BACKBONES, BackboneSpec, register_backbone
    from cnnfeatures.cli import build_parser, main

    parser = build_parser()
    evaluate = parser._subparsers._group_actions[0].choices["evaluate"]
    text = " ".join(evaluate.format_help().split())
    assert "(default: vgg16)" in text and "(default: imagenet)" in text
    for action in evaluate._actions:
        assert action.help, action.dest
    assert main(["evaluate", tint_data, "--backbone", "lenet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown backbone 'lenet'; choose one of" in err
    from tests.conftest import _tiny_builder

    register_backbone(BackboneSpec("tiny_late", "", _tiny_builder, 32, 8, (), ("avg8",),
                                   preprocess=lambda a: a))
    try:
        # A parser built before the backbone existed accepts it: no frozen choices.
        args = parser.parse_args(["evaluate", tint_data, "--backbone", "tiny_late",
                                  "--weights", "none", "--resamples", "0"])
        assert args.func(args) == 0
        assert "accuracy" in capsys.readouterr().out
    finally:
        BACKBONES.pop("tiny_late")
