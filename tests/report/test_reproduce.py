"""cnnfeatures.reproduce and `cnnfeatures reproduce` on a hand-made bright/dark dataset."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from cnnfeatures.cli import main
from cnnfeatures.report import Experiment, format_record, plan_table, quick_budget, run_table

TINY_BUDGET = quick_budget(scales=(0,), vlad_scales=(0,), ks=(2, 4), pca_components=None,
                           max_epochs=2, base_epochs=1, copies=1, cv=2, n_resamples=200)


def tiny_experiment(**changes):
    return Experiment(**{"backbone": "tiny", "weights": None, "budget": TINY_BUDGET,
                         "cache": False, **changes})


def test_tables_1_4_layout_and_perfect_separation(tiny_backbone, bright_dark):
    result = run_table("1-4", [bright_dark], tiny_experiment())
    table = result.tables["table_1-4_bright_dark"]
    assert list(table.index) == ["N=0"]
    assert list(table.columns) == [("mean", "avg8"), ("mean", "max2"),
                                   ("max", "avg8"), ("max", "max2")]
    # The tint alone separates the classes: every configuration is perfect.
    np.testing.assert_array_equal(table.to_numpy(), 1.0)
    assert len(result.records) == 4
    for r in result.records:
        assert r["accuracy_low"] <= r["accuracy"] <= r["accuracy_high"]
        assert r["n_test"] == 8 and r["roc_auc"] == 1.0
        assert r["recall red"] == r["specificity blue"] == 1.0
        assert r["cpu_minutes"] > 0


def test_table_5_7_rows_k_and_pooled_baseline(tiny_backbone, bright_dark):
    result = run_table("5-7", [bright_dark], tiny_experiment())
    table = result.tables["table_5-7_bright_dark"]
    assert list(table.index) == ["k=2", "k=4", "k=pooled"]
    assert list(table.columns) == ["avg8", "max2"]
    assert ((table.to_numpy() >= 0) & (table.to_numpy() <= 1)).all()


def test_table_11_conditions_per_dataset(tiny_backbone, bright_dark):
    result = run_table("11", [bright_dark], tiny_experiment())
    table = result.tables["table_11"]
    assert list(table.index) == ["bright_dark"]
    assert list(table.columns) == ["without augmentation", "with augmentation (x2)",
                                   "CLAHE", "raw + CLAHE"]


def test_table_12_picks_by_cross_validation_not_test(tiny_backbone, bright_dark):
    result = run_table("12", [bright_dark], tiny_experiment())
    (record,) = result.records
    assert record["cv_score"] == 1.0  # selected on train folds
    assert "+ linear SVM" in record["method"]
    assert result.tables["table_12"].loc["bright_dark", "accuracy"] == 1.0


@pytest.mark.parametrize("table", ["8-9", "10"])
def test_keras_tables_layouts(bright_dark, table):
    exp = Experiment(backbone="vgg16", weights=None, budget=TINY_BUDGET, cache=False,
                     model_params=dict(input_side=32, head_units=(16, 8), batch_size=8))
    result = run_table(table, [bright_dark], exp)
    if table == "8-9":
        t8 = result.tables["table_8_bright_dark"]
        assert list(t8.index) == ["-", "blocks", "blocks, fc1", "blocks, fc2", "fc1", "fc2"]
        assert list(t8.columns) == ["accuracy", "recall", "epochs", "trainable parameters"]
        # Freezing more never leaves more to train.
        params = t8["trainable parameters"]
        assert params["-"] > params["blocks"] > params["blocks, fc1"]
        assert list(result.tables["table_9"].columns) == ["fine-tuned VGG (fc2 trainable)"]
    else:
        assert list(result.tables["table_10"].columns) == [
            "fine-tuned VGG (frozen base)", "hybrid SepConv CNN"]


def test_cli_reproduce_writes_tables(tiny_backbone, bright_dark, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "1-4", bright_dark, "--backbone", "tiny",
                 "--weights", "none", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| N=0 |" in printed and "| N=1 |" in printed  # quick budget: scales 0 and 1
    assert main(["reproduce", "1-4", "--data", bright_dark, "--backbone", "tiny",
                 "--weights", "none", "--scales", "2", "--max-train", "6", "-o",
                 str(tmp_path / "out2")]) == 0
    printed = capsys.readouterr().out
    assert "| N=2 |" in printed and "| N=0 |" not in printed
    assert "6 of 16 train images" in printed and "budget quick*" in printed
    names = sorted(p.name for p in out.iterdir())
    assert {"table_1-4_bright_dark.md", "table_1-4_bright_dark.csv", "records_1-4.csv",
            "run_1-4.json"} <= set(names)
    assert json.loads((out / "run_1-4.json").read_text())["budget"] == "quick"


def test_errors_name_what_is_wrong(tiny_backbone, bright_dark, tmp_path, capsys):
    with pytest.raises(ValueError, match="table must be one of"):
        run_table("13", [bright_dark], tiny_experiment())
    with pytest.raises(ValueError, match="budget must be one of"):
        Experiment(budget="fast")
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no test/ folder"):
        run_table("1-4", [tmp_path], tiny_experiment())
    with pytest.raises(ValueError, match="'tiny' has no fc layers"):
        run_table("8-9", [bright_dark], tiny_experiment())
    assert main(["reproduce", "1-4", bright_dark, "--max-train", "-3"]) == 2
    # The folders come once: after the table, or after the --data of earlier versions.
    assert main(["reproduce", "1-4", bright_dark, "--data", bright_dark]) == 2
    assert "give the dataset folders once" in capsys.readouterr().err
    assert main(["reproduce", "1-4", "--backbone", "tiny"]) == 2
    assert "needs at least one dataset folder" in capsys.readouterr().err
    with pytest.raises(TypeError, match="either experiment or settings"):
        run_table("1-4", [bright_dark], tiny_experiment(), budget="quick")


def test_evaluation_record_roc_auc_and_intervals():
    from sklearn.metrics import roc_auc_score

    from cnnfeatures.report import bootstrap_interval, evaluation_record

    y = np.array([0, 0, 1, 1, 2, 2])
    scores = np.array([[3, 1, 0], [1, 2, 0], [0, 3, 1], [1, 0, 2], [0, 1, 3], [2, 0, 1.0]])
    proba = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    r = evaluation_record(y, proba.argmax(1), proba, names=["a", "b", "c"], n_resamples=0)
    # On probabilities: sklearn's one-vs-rest macro AUC exactly.
    assert r["roc_auc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    # On raw decision scores (sklearn refuses them): each class's column ranks its class.
    raw = evaluation_record(y, scores.argmax(1), scores, n_resamples=0)["roc_auc"]
    assert raw == pytest.approx(np.mean([roc_auc_score(y == c, scores[:, c]) for c in range(3)]))
    assert r["accuracy"] == 0.5  # rows 0, 2 and 4 are right
    low, high = bootstrap_interval(y, scores.argmax(1), n_resamples=500)
    assert low <= 0.5 <= high and 0 <= low < high <= 1
    with pytest.raises(ValueError, match="same non-zero length"):
        bootstrap_interval([0, 1], [0])


def test_cpu_budget_trains_the_last_block_and_validates_on_train(bright_dark):
    """Budget "cpu": rows that train the base train its last block only, a held-out part of
    train picks epochs and threshold, and the validation scores are in the records."""
    from dataclasses import replace

    from cnnfeatures.report import BUDGETS

    budget = replace(BUDGETS["cpu"], max_epochs=2, base_epochs=1, n_resamples=50,
                     validation_fraction=0.25)
    exp = Experiment(backbone="vgg16", weights=None, budget=budget, cache=False,
                     model_params=dict(input_side=32, head_units=(16, 8), batch_size=8))
    t8 = run_table("8-9", [bright_dark], exp)
    rows = list(t8.tables["table_8_bright_dark"].index)
    assert rows == ["block1-4", "blocks", "blocks, fc1", "blocks, fc2", "block1-4, fc1",
                    "block1-4, fc2"]
    params = t8.tables["table_8_bright_dark"]["trainable parameters"]
    # block5 of VGG-16 (3 convolutions of 512 x 512 x 3 x 3, with biases) is what trains
    # beyond the frozen-base row.
    assert params["block1-4"] - params["blocks"] == 3 * (512 * 512 * 9 + 512)
    for record in t8.records:
        assert 0 <= record["validation balanced_accuracy"] <= 1
        assert 0 <= record["threshold"] <= 1  # chosen on train's held-out part
        assert record["epochs"].endswith(f"/{1 if 'block1-4' in record['frozen'] else 2}")
    # Table 10's runs under the same budget (planned: training them adds nothing here
    # that test_keras_tables_layouts does not train already).
    t10 = plan_table("10", [bright_dark], exp)
    assert [run.params["method"] for run in t10.runs] == [
        "fine-tuned VGG (frozen base)", "fine-tuned VGG (block1-4 frozen)",
        "hybrid SepConv CNN"]


def test_held_out_validation_threshold_and_groups(tiny_backbone, bright_dark):
    """The threshold chosen on the held-out part of train decides predict and
    decision_function alike; predict_proba stays the network's."""
    from cnnfeatures import FineTunedCNNClassifier, load_image_folder
    from cnnfeatures.report import HeldOutValidation

    folder = load_image_folder(bright_dark, split="train")
    X, y = np.asarray(folder.filenames), np.asarray(folder.target)
    groups = np.arange(len(y)) // 2  # pairs of images: "patients"
    clf = FineTunedCNNClassifier(backbone="vgg16", weights=None, input_side=32,
                                 head_units=(8, 8), max_epochs=2, random_state=0)
    model = HeldOutValidation(clf, validation_fraction=0.25).fit(X, y, groups=groups)
    assert set(model.validation_scores_) == {"accuracy", "balanced_accuracy", "roc_auc"}
    assert model.estimator_.classes_.tolist() == model.classes_.tolist()
    proba = model.predict_proba(X)
    decision = model.decision_function(X)
    np.testing.assert_allclose(decision, proba[:, 1] - model.threshold_)
    np.testing.assert_array_equal(model.predict(X),
                                  model.classes_[(decision > 0).astype(int)])
    from cnnfeatures.models import SmallDataWarning

    lone = np.array([y[0]] * 7 + [y[-1]])  # one image of the second class: no split holds it
    with pytest.warns(SmallDataWarning, match="cannot hold out 0.25 of 8 images"):
        small = HeldOutValidation(clf, validation_fraction=0.25).fit(X[:8], lone,
                                                                     groups=np.arange(8))
    assert small.threshold_ is None and small.validation_scores_ == {}
    assert small.predict(X[:2]).shape == (2,)
    with pytest.raises(ValueError, match="'validation_fraction' parameter"):
        HeldOutValidation(clf, validation_fraction=1.5).fit(X, y)


def test_binary_records_carry_intervals_for_recall_specificity_and_auc():
    from cnnfeatures.report import evaluation_record

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    scores = y + rng.normal(0, 0.8, 200)
    predicted = (scores > 0.5).astype(int)
    r = evaluation_record(y, predicted, scores, names=["NORMAL", "PNEUMONIA"], n_resamples=300)
    assert r["recall PNEUMONIA"] == np.mean(predicted[y == 1] == 1)
    assert r["specificity PNEUMONIA"] == r["recall NORMAL"] == np.mean(predicted[y == 0] == 0)
    for key in ("recall PNEUMONIA", "specificity PNEUMONIA", "roc_auc"):
        assert r[f"{key}_low"] < r[key] < r[f"{key}_high"]
        assert r[f"{key}_high"] - r[f"{key}_low"] < 0.25  # 200 cases: a few points each way
    three = evaluation_record([0, 1, 2] * 20, [0, 1, 2] * 20, n_resamples=50)
    assert "recall 0_low" not in three  # per-class intervals: binary problems only


@pytest.mark.parametrize("n, k", [(40, 2), (9, 2), (60, 3), (30, 7)])
def test_bootstrap_on_all_resamples_equals_scikit_learn_on_each(n, k):
    """Every metric's interval, computed on all resamples at once, is the one
    scikit-learn's metric functions give called on each resample (the same draws); the
    resamples where a metric is undefined are left out and counted."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    from cnnfeatures.report import bootstrap, evaluation_record

    rng = np.random.default_rng(n + k)
    y = rng.integers(0, k, n)
    raw = rng.normal(size=(n, k)) + np.eye(k)[y]
    raw[:5] = raw[:5].round()  # tied scores: ROC AUC counts a tie as half
    scores = raw[:, 1] - raw[:, 0] if k == 2 else raw
    predicted = raw.argmax(1)
    record = evaluation_record(y, predicted, scores, n_resamples=200, random_state=3)
    draws = np.random.RandomState(3).randint(0, n, (200, n))

    def expected(metric) -> tuple[float, float, int]:
        values = []
        for idx in draws:
            try:
                value = metric(y[idx], predicted[idx], scores[idx])
            except ValueError:
                continue
            if not np.isnan(value):  # scikit-learn >= 1.8: NaN for one class, not an error
                values.append(value)
        return (*np.percentile(values, [2.5, 97.5]), 200 - len(values))

    labels = np.unique(np.r_[y, predicted])
    checks = {
        "accuracy": lambda t, p, s: accuracy_score(t, p),
        "balanced_accuracy": lambda t, p, s: balanced_accuracy_score(t, p),
        "roc_auc": lambda t, p, s: (roc_auc_score(t == 1, s) if k == 2 else np.mean(
            [roc_auc_score(t == c, s[:, j]) for j, c in enumerate(labels)])),
    }
    if k == 2:
        checks["recall 1"] = lambda t, p, s: np.mean(p[t == 1] == 1) if (t == 1).any() \
            else _raise()
        checks["specificity 1"] = lambda t, p, s: np.mean(p[t != 1] != 1) if (t != 1).any() \
            else _raise()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, metric in checks.items():
            low, high, undefined = expected(metric)
            assert record[f"{key}_low"] == pytest.approx(low, abs=1e-12), key
            assert record[f"{key}_high"] == pytest.approx(high, abs=1e-12), key
            assert record.get(f"{key}_undefined", 0) == undefined, key
    if k == 7:  # 30 images of 7 classes: some resamples lack a class, no AUC there
        assert record["roc_auc_undefined"] > 0
        assert "ROC AUC on" in format_record(record, [str(c) for c in range(7)])
    interval = bootstrap(y, predicted, n_resamples=200, random_state=3)
    assert (interval.low, interval.high) == (record["accuracy_low"], record["accuracy_high"])
    assert (interval.n_resamples, interval.n_undefined) == (200, 0)


def _raise():
    raise ValueError("no cases")


def test_bootstrap_of_any_metric_counts_where_it_is_undefined():
    from cnnfeatures.report import bootstrap

    def first_is_one(y_true, y_pred):  # undefined (NaN) where the resample starts with 0
        return np.nan if y_true[0] == 0 else float(np.mean(y_true == y_pred))

    interval = bootstrap([0, 1] * 20, [0, 1] * 20, first_is_one, n_resamples=100)
    assert 30 < interval.n_undefined < 70 and interval.low == interval.high == 1.0
    with pytest.raises(ValueError, match="undefined on every resample"):
        bootstrap([0, 0], [0, 0], lambda t, p: np.nan, n_resamples=10)


class _BrightnessProbability(ClassifierMixin, BaseEstimator):
    """P(second class) = an image's mean brightness / 255: a 'network' whose held-out
    probabilities the test sets by hand."""

    def fit(self, X, y, validation_data=None):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        p = np.array([np.asarray(x, float).mean() / 255 for x in X])
        return np.c_[1 - p, p]


def test_held_out_threshold_is_the_centre_of_the_best_ones():
    """Held-out images separate anywhere between 0.2 and 0.8: the threshold is the middle
    of that gap (scikit-learn's tuner alone returns its lowest end)."""
    from sklearn.model_selection import TunedThresholdClassifierCV

    from cnnfeatures.report import HeldOutValidation

    levels = np.r_[np.linspace(0.05, 0.2, 10), np.linspace(0.8, 0.95, 10)]
    X = np.stack([np.full((8, 8, 3), round(v * 255), np.uint8) for v in levels])
    y = np.array(["NORMAL"] * 10 + ["PNEUMONIA"] * 10)
    model = HeldOutValidation(_BrightnessProbability(), validation_fraction=0.5).fit(X, y)
    assert model.validation_scores_["balanced_accuracy"] == 1.0
    assert 0.4 < model.threshold_ < 0.6
    lowest = TunedThresholdClassifierCV(model.estimator_, scoring="balanced_accuracy",
                                        cv="prefit", refit=False).fit(X, y).best_threshold_
    assert lowest < 0.25  # what the centre rule replaces
    assert model.predict(X).tolist() == y.tolist()


def test_cpu_augmented_budget_augments_every_trained_network(bright_dark, tmp_path):
    """Budget "cpu-augmented": fixed views (prefix cached) on the frozen base, new views
    every epoch where blocks 4-5 or the hybrid's separable blocks train, the pretrained
    blocks at the lower rate; the precision and checkpoint folder reach every network."""
    from dataclasses import replace

    from cnnfeatures.report import BUDGETS

    budget = replace(BUDGETS["cpu-augmented"], max_epochs=2, base_epochs=1,
                     n_resamples=50, validation_fraction=0.25, augmentation_views=1)
    exp = Experiment(backbone="vgg16", weights=None, budget=budget, cache=False,
                     precision="bfloat16", checkpoint_dir=tmp_path / "checkpoints",
                     model_params=dict(input_side=32, head_units=(16, 8), batch_size=8))
    frozen, trained = exp.keras_params(True), exp.keras_params(False)
    assert frozen["augmentation_views"] == 1 and trained["augmentation_views"] is None
    assert exp.keras_params(True, views=False)["augmentation_views"] is None  # the hybrid's
    assert (frozen["learning_rate"], trained["learning_rate"]) == (1e-4, 1e-5)
    assert frozen["augmentation"] is trained["augmentation"] is budget.augmentation
    assert exp.base_frozen(()) == ("block1", "block2", "block3")
    assert frozen["precision"] == trained["precision"] == "bfloat16"
    assert frozen["checkpoint_dir"] == tmp_path / "checkpoints"

    t10 = run_table("10", [bright_dark], exp)
    assert list(t10.tables["table_10"].columns) == [
        "fine-tuned VGG (frozen base)", "fine-tuned VGG (block1-3 frozen)",
        "hybrid SepConv CNN"]
    for record in t10.records:
        assert 0 <= record["threshold"] <= 1
    assert not list((tmp_path / "checkpoints").glob("fit-*"))  # finished fits leave none
    # A budget with augmentation is another measurement: its own journal identity.
    assert exp.identity() != replace(exp, budget=replace(budget, augmentation=None)).identity()


def test_journals_of_budgets_without_augmentation_stay_valid():
    """The budget fields added with augmentation stay out of the identity at their
    defaults: runs journaled before them (Tables 1-7, the unaugmented budgets) are reused,
    not measured again."""
    from dataclasses import replace

    from cnnfeatures.report import BUDGETS

    exp = Experiment(backbone="vgg16", weights=None, budget=BUDGETS["quick"])
    budget = exp.identity()["budget"]
    assert not {"base_learning_rate", "augmentation", "augmentation_views"} & set(budget)
    assert budget["name"] == "quick" and budget["max_epochs"] == BUDGETS["quick"].max_epochs
    # Views without augmentation are none: still the same measurement.
    more_views = replace(exp, budget=replace(BUDGETS["quick"], augmentation_views=8))
    assert more_views.identity() == exp.identity()
    faster_base = replace(exp, budget=replace(BUDGETS["quick"], base_learning_rate=1e-6))
    assert faster_base.identity()["budget"]["base_learning_rate"] == 1e-6
