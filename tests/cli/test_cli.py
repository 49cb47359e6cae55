import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnfeatures.cli import main


@pytest.fixture
def folder(tmp_path, rng):
    """A 2-class dataset with train/ and test/: class 1 images are bright, class 0 dark."""
    for split, n in (("train", 6), ("test", 4)):
        for label, (lo, hi) in enumerate([(0, 100), (150, 256)]):
            d = tmp_path / "data" / split / f"c{label}"
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(lo, hi, (24, 24, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"p{i}_{label}.png")
    return tmp_path / "data"


TINY = ["--backbone", "tiny", "--weights", "none"]


def test_describe(folder, capsys):
    assert main(["describe", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "train: 12 images, 2 classes" in out and "test: 8 images" in out


def test_evaluate_prints_metrics_and_writes_json(tiny_backbone, folder, tmp_path, capsys):
    report = tmp_path / "m.json"
    code = main(["evaluate", str(folder), *TINY, "--layer", "avg8", "--pooling", "mean",
                 "--no-l2", "--json", str(report)])
    assert code == 0
    out = capsys.readouterr().out
    assert "accuracy           1.0000" in out and "specificity" in out
    metrics = json.loads(report.read_text())
    assert metrics["accuracy"] == 1.0 and set(metrics["per_class"]) == {"c0", "c1"}


def test_extract_npz(tiny_backbone, folder, tmp_path):
    out = tmp_path / "f.npz"
    assert main(["extract", str(folder), "--split", "train", *TINY, "--layer", "avg8",
                 "--pooling", "max", "-o", str(out)]) == 0
    data = np.load(out)
    assert data["features"].shape == (12, 3) and data["target"].tolist() == [0] * 6 + [1] * 6
    assert data["feature_names"][0] == "avg8_max_0"


def test_grid_tables(tiny_backbone, folder, tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["grid", str(folder), *TINY, "--layer", "avg8", "max2", "--scales", "0", "1",
                 "--cv", "2", "-o", str(out)]) == 0
    import pandas as pd

    cv = pd.read_csv(out / "grid_cv.csv", header=[0, 1], index_col=0)
    assert list(cv.index) == ["N=0", "N=1"]
    assert [tuple(c) for c in cv.columns] == [("mean", "avg8"), ("mean", "max2"),
                                              ("max", "avg8"), ("max", "max2")]
    assert (out / "grid_test.csv").exists() and (out / "grid_cv.png").exists()


def test_cache_info_and_clear(tiny_backbone, folder, tmp_path, capsys):
    cache = tmp_path / "cache"
    main(["extract", str(folder), "--split", "test", *TINY, "--layer", "avg8",
          "--cache-dir", str(cache), "-o", str(tmp_path / "f.npz")])
    capsys.readouterr()
    assert main(["cache", "info", "--dir", str(cache)]) == 0
    assert " 0 entries" not in capsys.readouterr().out
    assert main(["cache", "clear", "--dir", str(cache)]) == 0
    assert "0 entries" in capsys.readouterr().out


def test_errors_are_reported_not_raised(folder, capsys):
    assert main(["describe", str(folder / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


def test_version(capsys):
    import cnnfeatures

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"cnnfeatures {cnnfeatures.__version__} ")


@pytest.mark.parametrize("command", ["describe", "extract", "evaluate", "grid", "augment",
                                     "explain", "reproduce", "cache"])
def test_help_describes_each_command_and_says_each_default_once(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    usage, _, rest = text.partition("\n\n")
    description = rest.split("\n\n")[0]
    assert description and not description.lstrip().startswith(("positional", "options"))
    assert "%%" not in text
    for option in text.split("\n  -")[1:]:  # one block per option
        assert " ".join(option.split()).count("default") <= 1, option


@pytest.mark.parametrize("argv", [["--help"], ["extract", "--help"], ["augment", "--help"]])
def test_help_imports_no_heavy_library(argv):
    # --help is read often and should answer at once: no TensorFlow, scikit-learn (~2 s)
    # or OpenCV before a command runs; augment's options are added only when it is used.
    code = ("import sys\nfrom cnnfeatures.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\nheavy = [m for m in ('tensorflow', 'keras', 'sklearn',"
            " 'imblearn', 'cv2') if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         check=True).stdout
    expected = ["sklearn", "imblearn", "cv2"] if argv[0] == "augment" else []
    assert out.strip().splitlines()[-1] == f"HEAVY {expected}"


def test_option_names_are_shared_and_old_spellings_still_parse():
    from cnnfeatures.cli import build_parser

    parse = build_parser().parse_args
    new = parse(["grid", "root", "--layer", "a", "b", "--pooling", "max"])
    old = parse(["grid", "root", "--layers", "a", "b", "--poolings", "max"])
    assert (new.layers, new.poolings) == (old.layers, old.poolings) == (["a", "b"], ["max"])
    # Every command takes its data folder as its first positional argument.
    assert parse(["reproduce", "1-4", "d1", "d2"]).data == ["d1", "d2"]
    assert parse(["reproduce", "1-4", "--data", "d1"]).data_option == ["d1"]
