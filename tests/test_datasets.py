import numpy as np
import pytest
from PIL import Image

from cnnfeatures import load_image_folder
from cnnfeatures.datasets import NotAnImageWarning
from tests.conftest import DATA


def _write(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)


def test_split_layout_with_groups(tmp_path):
    for name in ["person1_bacteria_1.jpeg", "person1_virus_2.jpeg", "person7_bacteria_3.jpeg"]:
        _write(tmp_path / "train" / "PNEUMONIA" / name)
    _write(tmp_path / "train" / "NORMAL" / "IM-0001-0001.jpeg")
    data = load_image_folder(tmp_path, "train", group_pattern="chest_xray")
    assert data.target_names == ["NORMAL", "PNEUMONIA"]
    assert data.target.tolist() == [0, 1, 1, 1]
    assert data.groups.tolist() == ["IM-0001", "person1", "person1", "person7"]


def test_flat_layout_and_non_images_listed(tmp_path):
    _write(tmp_path / "a" / "x.png")
    _write(tmp_path / "b" / "y.png")
    (tmp_path / "b" / "notes.txt").write_text("hi")
    with pytest.warns(NotAnImageWarning, match="notes.txt"):
        data = load_image_folder(tmp_path)
    assert len(data.filenames) == 2 and data.skipped[0].endswith("notes.txt")
    with pytest.raises(ValueError, match="notes.txt"):
        load_image_folder(tmp_path, on_non_image="raise")


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image_folder(tmp_path / "nope")
    _write(tmp_path / "train" / "a" / "x.png")
    with pytest.raises(ValueError, match="do not match group_pattern"):
        load_image_folder(tmp_path / "train", group_pattern=r"person(\d+)")
    with pytest.raises(FileNotFoundError, match="no split 'val'.*train"):
        load_image_folder(tmp_path, "val")
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match="'empty' holds no image"):
        load_image_folder(tmp_path, "train")


@pytest.mark.slow
def test_chest_xray_test_split():
    data = load_image_folder(DATA / "chest_xray", split="test", group_pattern="chest_xray")
    assert len(data.filenames) == 618
    assert data.target_names == ["NORMAL", "PNEUMONIA"]
    assert np.bincount(data.target).tolist() == [231, 387]
    assert 1 < len(set(data.groups)) < 618  # several images per patient


@pytest.mark.slow
@pytest.mark.parametrize("name", ["chest_xray", "malaria_cells"])
def test_patient_patterns_match_every_file(name):
    """Every file of every split gets a group (load_image_folder raises otherwise)."""
    splits = [s for s in ("train", "val", "test") if (DATA / name / s).is_dir()]
    data = {s: load_image_folder(DATA / name, split=s, group_pattern=name) for s in splits}
    groups = {s: set(d.groups) for s, d in data.items()}
    for s in splits:
        assert 1 < len(groups[s]) < len(data[s].filenames)
    if name == "chest_xray":
        return  # the official split numbers patients anew in each split
    # malaria_cells was split by slide series (MANIFEST): no series is in two splits.
    for a in splits:
        for b in splits:
            if a < b:
                assert not groups[a] & groups[b], (name, a, b)
