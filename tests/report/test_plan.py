"""cnnfeatures.report.plan and ``cnnfeatures reproduce --dry-run``: checked, counted, not run."""

from __future__ import annotations

import numpy as np
import pytest

from cnnfeatures.cli import main
from cnnfeatures.report import Experiment, Journal, plan_table, quick_budget, run_table
from cnnfeatures.report.plan import layer_costs

BUDGET = quick_budget(scales=(0,), vlad_scales=(0,), ks=(2,), pca_components=None,
                      max_epochs=2, base_epochs=1, copies=2, cv=2, n_resamples=50)


def experiment(**changes):
    return Experiment(**{"backbone": "tiny", "weights": None, "budget": BUDGET,
                         "cache": False, **changes})


def test_tables_1_4_counted_from_their_runs(tiny_backbone, bright_dark):
    plan = plan_table("1-4", [bright_dark], experiment(budget=BUDGET.__class__(
        **{**BUDGET.__dict__, "scales": (0, 1)})))
    assert plan.datasets == [dict(name="bright_dark", train=16, test=8, classes=2)]
    # 2 scales x 2 poolings x 2 layers (avg8, max2), one fit each.
    assert len(plan.runs) == 8 and plan.fits == 8
    # Each image once per side, whichever run asks: 24 images at 224 and at 544.
    assert plan.forwards == {("images", 224): 24, ("images", 544): 24}
    assert plan.work == pytest.approx(24 + 24 * (544 / 224) ** 2)
    assert plan.estimated_minutes == pytest.approx(plan.work * plan.seconds_per_forward / 60)
    text = plan.format()
    assert "data bright_dark: 16 train and 8 test images, 2 classes" in text
    assert "fits: 8" in text and "24 images at 544 px" in text and "estimate: " in text


def test_augmentation_and_clahe_are_other_images(tiny_backbone, bright_dark):
    plan = plan_table("11", [bright_dark], experiment())
    # CLAHE: the 24 images again; augmentation: 2 new copies of each of the 16 train images.
    assert plan.forwards == {("CLAHE", 224): 24, ("augmented copies of images", 224): 32,
                             ("images", 224): 24}
    assert plan.fits == 4


def test_table_12_counts_every_grid_point_on_every_fold(tiny_backbone, bright_dark):
    (run,) = plan_table("12", [bright_dark], experiment()).runs
    # 2 layers x 2 poolings x 1 scale x 2 class weights, on 2 folds, then one refit.
    assert run.fits == 8 * 2 + 1


def test_keras_training_counted_by_the_share_that_trains(bright_dark):
    exp = Experiment(backbone="vgg16", weights=None, budget=BUDGET, cache=False,
                     model_params=dict(input_side=32, head_units=(8,), batch_size=8))
    plan = plan_table("8-9", [bright_dark], exp)
    by_row = {run.params["frozen"]: run for run in plan.runs}
    relative = (32 / 224) ** 2
    # Nothing frozen: the whole network trains, three forward passes per image and epoch
    # (base_epochs=1, 16 train images).
    assert by_row["-"].training == pytest.approx(1 * 16 * 3 * relative)
    # Base frozen: its prefix runs once per image (train and test), the head's epochs
    # are free.
    assert by_row["blocks"].training == 0
    assert by_row["blocks"].forwards == {("images", 32): 24}
    assert by_row["blocks, fc1"].training == 0 and len(plan.runs) == 6


def test_journaled_runs_are_done_and_not_counted(tiny_backbone, bright_dark, tmp_path):
    journal = tmp_path / "journal.jsonl"
    run_table("1-4", [bright_dark], experiment(), journal=journal)
    plan = plan_table("1-4", [bright_dark], experiment(), journal=Journal(journal))
    assert all(run.done for run in plan.runs) and plan.fits == 0 and plan.work == 0
    assert "(4 done before, in the journal)" in plan.format()


def test_layer_costs_by_hand():
    import keras

    x = keras.Input((None, None, 3))
    y = keras.layers.Conv2D(2, 3, padding="same", name="a")(x)  # 3*3*3*2 = 54 weights
    y = keras.layers.MaxPooling2D(2, name="p")(y)  # no weights: no cost
    y = keras.layers.Conv2D(4, 1, name="b")(y)  # 2*4 = 8 weights, a quarter of positions
    costs = layer_costs(keras.Model(x, y), side=16)
    a, b = 54 * 16 * 16, 8 * 8 * 8
    assert costs == pytest.approx({"a": a / (a + b), "p": a / (a + b), "b": 1.0})


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_backbone, bright_dark, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "all", bright_dark, "--backbone", "vgg16", "--weights",
                 "none", "--scales", "0", "--dry-run", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    for table in ("1-4", "5-7", "8-9", "10", "11", "12"):
        assert f"table {table}:" in printed
    assert "estimate, every table: " in printed
    assert "nothing computed or written" in printed


def test_dry_run_stops_where_the_run_would(tiny_backbone, bright_dark, tmp_path, capsys):
    def error(*args):
        status = main(["reproduce", *args, "--dry-run", "-o", str(tmp_path / "o")])
        return status, capsys.readouterr().err

    status, err = error("1-4", bright_dark, "--group-pattern", "tint=x",
                        "--backbone", "tiny", "--weights", "none")
    assert status == 2 and "group pattern for 'tint': no such dataset" in err
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    status, err = error("1-4", str(tmp_path / "empty"), "--backbone", "tiny",
                        "--weights", "none")
    assert status == 2 and "has no test/ folder" in err
    status, err = error("8-9", bright_dark, "--backbone", "tiny", "--weights", "none")
    assert status == 2 and "has no fc layers" in err
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not a weights file")
    status, err = error("1-4", bright_dark, "--backbone", "vgg16", "--weights", str(bad))
    assert status == 2 and f"weights file {bad} is not a Keras weights file" in err
    assert not (tmp_path / "o").exists()


def test_forward_timing_is_positive_and_finite(tiny_backbone, bright_dark):
    plan = plan_table("5-7", [bright_dark], experiment())
    assert np.isfinite(plan.seconds_per_forward) and plan.seconds_per_forward > 0
