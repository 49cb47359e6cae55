"""Training checkpoints: an interrupted fit resumes after its last saved epoch."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cnnfeatures import FineTunedCNNClassifier, HybridSepConvClassifier
from cnnfeatures.backend import load_keras
from cnnfeatures.models.checkpoint import STATE_FILE

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("tiny_vgg_backbone")


def small(**params):
    """tiny_vgg (VGG's blocks in miniature): what resumes is the training, whatever the
    network's size."""
    defaults = dict(backbone="tiny_vgg", weights=None, input_side=32, head_units=(16, 8),
                    dropout=0.0, learning_rate=1e-3, batch_size=8, max_epochs=6, patience=6,
                    random_state=0)
    return FineTunedCNNClassifier(**{**defaults, **params})


def epochs_counter():
    keras = load_keras()

    class Count(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

    return Count()


def interrupt_after(n_epochs):
    keras = load_keras()

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == n_epochs:
                raise KeyboardInterrupt  # as a killed process would stop

    return Interrupt()


def fit_dirs(root):
    return sorted(p for p in root.iterdir() if p.name.startswith("fit-"))


@pytest.mark.parametrize("cache_frozen", [True, False])  # head on cached prefix / whole net
def test_interrupted_fit_resumes_after_its_last_epoch(task, tmp_path, cache_frozen):
    X, y = task
    clf = small(checkpoint_dir=tmp_path, cache_frozen=cache_frozen)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y, callbacks=[interrupt_after(4)])
    (saved,) = fit_dirs(tmp_path)
    state = json.loads((saved / STATE_FILE).read_text())
    assert state["epochs"] == 4 and len(state["history"]["loss"]) == 4
    assert len(state["epoch_seconds"]) == 4

    count = epochs_counter()
    resumed = small(checkpoint_dir=tmp_path, cache_frozen=cache_frozen).fit(
        X, y, callbacks=[count])
    assert count.epochs == [4, 5]  # only the two epochs not yet run
    assert resumed.n_epochs_ == 6 and len(resumed.epoch_seconds_) == 6
    assert resumed.history_["loss"][:4] == state["history"]["loss"]
    assert fit_dirs(tmp_path) == []  # a finished fit removes its state

    # It trained on from the saved weights: as good as an uninterrupted fit, not a fresh
    # network that ran two epochs.
    whole = small().fit(X, y)
    two = small(max_epochs=2).fit(X, y)
    assert resumed.history_["loss"][-1] < two.history_["loss"][-1]
    assert resumed.score(X, y) == whole.score(X, y) == 1.0


@pytest.mark.parametrize("views", [None, 2])  # augmentation drawn every epoch / fixed views
def test_resumed_fit_trains_on_the_batches_of_the_uninterrupted_one(task, tmp_path, views):
    """Epoch e's order, views and augmentation come from (seed, e), and dropout's generator
    state is saved: a fit resumed at epoch 4 trains on what the uninterrupted fit trained on
    there, with the same masks, and ends where it ends."""
    from cnnfeatures import ImageAugmenter

    X, y = task
    params = dict(augmentation=ImageAugmenter(rotation=10, brightness=0.2),
                  augmentation_views=views, checkpoint_dir=tmp_path, dropout=0.3)
    with pytest.raises(KeyboardInterrupt):
        small(**params).fit(X, y, callbacks=[interrupt_after(4)])
    resumed = small(**params).fit(X, y)
    whole = small(**params).fit(X, y)
    assert resumed.history_["loss"] == pytest.approx(whole.history_["loss"], rel=1e-6)
    np.testing.assert_allclose(resumed.predict_proba(X), whole.predict_proba(X), rtol=1e-5)


def test_a_fit_resumes_only_its_own_state(task, tmp_path):
    X, y = task
    with pytest.raises(KeyboardInterrupt):
        small(checkpoint_dir=tmp_path).fit(X, y, callbacks=[interrupt_after(3)])
    for other in (small(checkpoint_dir=tmp_path, learning_rate=5e-4),
                  small(checkpoint_dir=tmp_path, random_state=1),
                  # the whole network trains, not a head on the cached prefix
                  small(checkpoint_dir=tmp_path, cache_frozen=False)):
        count = epochs_counter()
        other.fit(X, y, callbacks=[count])
        assert count.epochs == list(range(6))  # from the start: not the same fit
    count = epochs_counter()
    small(checkpoint_dir=tmp_path, max_epochs=6).fit(X[::-1], y[::-1], callbacks=[count])
    assert count.epochs[0] == 0  # other images (the same ones in another order)
    assert len(fit_dirs(tmp_path)) == 1  # the interrupted fit's state is still there


def test_early_stopping_state_survives_the_interruption(task, tmp_path):
    """The best weights and epoch found before the interruption are kept: the resumed fit
    restores them, as an uninterrupted one does."""
    X, y = task
    groups = np.repeat(np.arange(12), 2)
    params = dict(checkpoint_dir=tmp_path, max_epochs=12, patience=2, learning_rate=3e-2)
    whole = small(**{**params, "checkpoint_dir": None}).fit(X, y, groups=groups)
    with pytest.raises(KeyboardInterrupt):
        small(**params).fit(X, y, groups=groups, callbacks=[interrupt_after(2)])
    resumed = small(**params).fit(X, y, groups=groups)
    assert resumed.best_epoch_ == int(np.argmin(resumed.history_["val_loss"])) + 1
    assert len(resumed.history_["val_loss"]) == resumed.n_epochs_
    # It stops where the uninterrupted fit stops, with its best weights.
    assert (resumed.n_epochs_, resumed.best_epoch_) == (whole.n_epochs_, whole.best_epoch_)
    assert whole.n_epochs_ < 12  # early stopping did stop it
    assert resumed.history_["val_loss"] == pytest.approx(whole.history_["val_loss"], rel=1e-5)
    np.testing.assert_allclose(resumed.predict_proba(X), whole.predict_proba(X), rtol=1e-5)


@pytest.mark.parametrize("stopped_by", ["early stopping", "a callback"])
def test_a_fit_stopped_before_it_returned_resumes_with_no_epoch_left(task, tmp_path,
                                                                      stopped_by):
    """Killed after training stopped (by early stopping, or a user's callback) but before
    fit returned: the next fit trains no epoch and ends with the weights the uninterrupted
    fit ended with."""
    keras = load_keras()

    class StopsAtThreeKilledAtTheEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if stopped_by == "a callback" and epoch == 2:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            raise KeyboardInterrupt

    X, y = task
    groups = np.repeat(np.arange(12), 2)
    params = dict(checkpoint_dir=tmp_path, max_epochs=12, patience=2, learning_rate=3e-2)
    with pytest.raises(KeyboardInterrupt):
        small(**params).fit(X, y, groups=groups, callbacks=[StopsAtThreeKilledAtTheEnd()])
    (saved,) = fit_dirs(tmp_path)
    assert json.loads((saved / STATE_FILE).read_text())["stopped"]
    count = epochs_counter()
    resumed = small(**params).fit(X, y, groups=groups, callbacks=[count])
    whole = small(**{**params, "checkpoint_dir": None, "max_epochs":
                     3 if stopped_by == "a callback" else 12}).fit(X, y, groups=groups)
    assert count.epochs == []
    assert (resumed.n_epochs_, resumed.best_epoch_) == (whole.n_epochs_, whole.best_epoch_)
    np.testing.assert_allclose(resumed.predict_proba(X), whole.predict_proba(X), rtol=1e-5)


def test_a_state_that_cannot_be_read_starts_the_fit_again(task, tmp_path):
    X, y = task
    with pytest.raises(KeyboardInterrupt):
        small(checkpoint_dir=tmp_path).fit(X, y, callbacks=[interrupt_after(3)])
    (saved,) = fit_dirs(tmp_path)
    (saved / STATE_FILE).write_text('{"epochs": 3, "sto')  # what a lost disk cache leaves
    count = epochs_counter()
    with pytest.warns(UserWarning, match=r"state\.json cannot be resumed.*from the beginning"):
        small(checkpoint_dir=tmp_path).fit(X, y, callbacks=[count])
    assert count.epochs == list(range(6)) and fit_dirs(tmp_path) == []


def test_checkpoints_need_an_int_random_state(task, tmp_path):
    X, y = task
    with pytest.warns(UserWarning, match="needs an int random_state.*none is saved"):
        with pytest.raises(KeyboardInterrupt):
            small(checkpoint_dir=tmp_path, random_state=None).fit(
                X, y, callbacks=[interrupt_after(2)])
    assert list(tmp_path.iterdir()) == []


def test_hybrid_resumes_its_batch_norm_statistics(task, tmp_path):
    X, y = task
    params = dict(backbone="tiny_vgg", weights=None, input_side=32, frozen_blocks=2,
                  n_sep_blocks=1, filters=8, head_units=(8, 4), dropout=0.0, batch_size=8,
                  learning_rate=1e-3, max_epochs=4, patience=4, random_state=0,
                  checkpoint_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        HybridSepConvClassifier(**params).fit(X, y, callbacks=[interrupt_after(2)])
    (saved,) = fit_dirs(tmp_path)
    count = epochs_counter()
    clf = HybridSepConvClassifier(**params).fit(X, y, callbacks=[count])
    assert count.epochs == [2, 3] and clf.n_epochs_ == 4


KILLED_FIT = textwrap.dedent(f"""
    import sys, time
    import numpy as np
    sys.path.insert(0, {str(ROOT)!r})
    from tests.conftest import register_tiny_vgg
    from cnnfeatures import FineTunedCNNClassifier
    from cnnfeatures.backend import load_keras
    keras = load_keras()
    register_tiny_vgg()

    class Slow(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(1.0)  # time for the test to kill it between epochs

    rng = np.random.default_rng(0)
    y = np.array(["a", "b"] * 12)
    X = rng.integers(0, 90, (24, 32, 32, 3)).astype(np.uint8)
    X[y == "b"] += 150
    FineTunedCNNClassifier(backbone="tiny_vgg", weights=None, input_side=32, head_units=(16, 8),
                           dropout=0.0, learning_rate=1e-3, batch_size=8, max_epochs=40,
                           patience=40, random_state=0, checkpoint_dir=sys.argv[1]).fit(
        X, y, callbacks=[Slow()])
""")


def test_killed_process_resumes(task, tmp_path):
    """SIGKILL (no cleanup at all) in the middle of training: the next fit goes on."""
    script = tmp_path / "fit.py"
    script.write_text(KILLED_FIT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "ckpt")],
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    deadline = time.time() + 240
    state = None
    while time.time() < deadline and proc.poll() is None:
        files = list((tmp_path / "ckpt").glob(f"fit-*/{STATE_FILE}"))
        if files:
            state = json.loads(files[0].read_text())
            if state["epochs"] >= 3:
                break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state is not None and state["epochs"] >= 3, "the fit saved no epoch in time"
    saved = json.loads(files[0].read_text())["epochs"]
    X, y = task
    count = epochs_counter()
    clf = small(max_epochs=40, patience=40, checkpoint_dir=tmp_path / "ckpt").fit(
        X, y, callbacks=[count])
    assert count.epochs[0] == saved and clf.n_epochs_ == 40
