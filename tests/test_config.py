"""cnnfeatures.config: settings in scikit-learn's shape, defaults from the environment."""

import os
import subprocess
import sys
import threading

import pytest

import cnnfeatures
from cnnfeatures import config_context, get_config, set_config
from cnnfeatures.config import ENVIRONMENT, carry_config


def probe(code: str, **environ: str) -> str:
    """What ``code`` prints in a fresh process with these CNNFEATURES_* variables only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNFEATURES")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**env, **environ})
    return (done.stdout + done.stderr).strip()


def test_every_setting_has_its_variable_and_a_default():
    assert set(get_config()) == set(ENVIRONMENT)
    assert all(v.startswith("CNNFEATURES_") for v in ENVIRONMENT.values())


def test_variables_are_defaults_read_once():
    code = ("import os, cnnfeatures as c\n"
            "a = c.get_config()['max_image_bytes']\n"
            "os.environ['CNNFEATURES_MAX_IMAGE_BYTES'] = '7'\n"  # too late: read once
            "print(a, c.get_config()['max_image_bytes'], c.get_config()['weights_dirs'])")
    out = probe(code, CNNFEATURES_MAX_IMAGE_BYTES="5000",
                CNNFEATURES_WEIGHTS_DIR=os.pathsep.join(["/a", "/b"]))
    assert out == "5000 5000 ('/a', '/b')"


@pytest.mark.parametrize("variable, value", [("CNNFEATURES_MAX_IMAGE_BYTES", "lots"),
                                             ("CNNFEATURES_NUM_THREADS", "0"),
                                             ("CNNFEATURES_CACHE_MEMORY_BYTES", "-3")])
def test_a_bad_variable_is_named(variable, value):
    out = probe("import cnnfeatures as c; c.get_config()", **{variable: value})
    assert f"ValueError: ${variable}" in out, out


def test_cache_dir_variable_none_means_memory_only():
    code = "import cnnfeatures as c; print(c.get_config()['cache_dir'])"
    assert probe(code) == "session"
    assert probe(code, CNNFEATURES_CACHE_DIR="none") == "None"
    assert probe(code, CNNFEATURES_CACHE_DIR="/tmp/x") == "/tmp/x"


def test_context_is_undone_even_after_an_error():
    before = get_config()
    with pytest.raises(RuntimeError):
        with config_context(max_image_bytes=123, backend_logs=True):
            assert get_config()["max_image_bytes"] == 123
            assert get_config()["backend_logs"] is True
            raise RuntimeError
    assert get_config() == before


def test_context_is_per_thread_and_set_config_is_for_the_process():
    seen = {}
    before = get_config()["max_image_bytes"]
    try:
        with config_context(max_image_bytes=10):
            other = threading.Thread(target=lambda: seen.update(plain=get_config()))
            other.start(), other.join()
            carried = threading.Thread(
                target=carry_config(lambda: seen.update(carried=get_config())))
            carried.start(), carried.join()
            set_config(max_image_bytes=20)
            assert get_config()["max_image_bytes"] == 10  # the context wins in its thread
        assert get_config()["max_image_bytes"] == 20
    finally:
        set_config(max_image_bytes=before)
    assert seen["plain"]["max_image_bytes"] == before
    assert seen["carried"]["max_image_bytes"] == 10


@pytest.mark.parametrize("settings, words", [
    ({"max_image_size": 3}, "unknown setting 'max_image_size'"),
    ({"max_image_bytes": 0}, "max_image_bytes must be positive"),
    ({"num_threads": "two"}, "num_threads must be a whole number"),
    ({"weights_dirs": "/one/folder"}, "weights_dirs must be a sequence of folders"),
    ({"tmp_dir": 3}, "tmp_dir must be a path or None"),
])
def test_bad_settings_are_named_and_change_nothing(settings, words):
    before = get_config()
    for change in (set_config, config_context):
        with pytest.raises((TypeError, ValueError), match=words):
            with_context = change(**{"backend_logs": True, **settings})
            if change is config_context:
                with with_context:
                    pass
        assert get_config() == before


def test_a_context_reaches_the_extractor(tiny_backbone, tmp_path):
    """An image over the context's size cap is refused by name; outside, it is read."""
    import numpy as np
    from PIL import Image

    path = tmp_path / "big.png"
    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(path)
    extractor = cnnfeatures.CNNFeatureExtractor(backbone=tiny_backbone, layer="max2",
                                                cache=False, weights=None)
    with config_context(max_image_bytes=path.stat().st_size - 1):
        with pytest.raises(Exception, match="big.png"):
            extractor.fit_transform([str(path)])
    assert extractor.fit_transform([str(path)]).shape[0] == 1
