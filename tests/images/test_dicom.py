"""DICOM reading: files are written by pydicom inside the tests."""

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from cnnfeatures import ImageLoadError, load_image, load_image_folder  # noqa: E402
from cnnfeatures.images import load_dicom  # noqa: E402
from tests.conftest import dicom_dataset  # noqa: E402


def write_dicom(path, pixels, *, photometric="MONOCHROME2", slope=1.0, intercept=0.0,
                window=None, patient="P1", frames=1):
    rows, cols = pixels.shape[-2:]
    ds = dicom_dataset(PatientID=patient, Modality="OT", Rows=rows, Columns=cols,
                       PhotometricInterpretation=photometric, BitsAllocated=16,
                       BitsStored=16, HighBit=15, PixelRepresentation=0,
                       RescaleSlope=slope, RescaleIntercept=intercept)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_modality_lut_then_window(tmp_path):
    # Stored 0..4000, slope 1 intercept -1024 -> HU -1024..2976; window 40/400 (soft tissue)
    stored = np.array([[0, 1024, 1064, 1264, 4000]], np.uint16)
    path = write_dicom(tmp_path / "ct.dcm", stored, intercept=-1024, window=(40, 400))
    rgb = load_dicom(path)
    hu = stored.astype(float) - 1024
    expected = np.clip((hu - (40 - 200)) / 400, 0, 1) * 255
    np.testing.assert_allclose(rgb[0, :, 0], expected[0], atol=1e-3)
    np.testing.assert_allclose(load_image(path), rgb)  # load_image routes DICOM too
    wide = load_dicom(path, window=(1000, 4000))  # overridable
    assert not np.allclose(wide, rgb)


def test_16_bit_kept_until_final_scaling_and_monochrome1(tmp_path):
    stored = np.array([[1000, 1001, 1002, 1003]], np.uint16)  # detail finer than 8 bits
    plain = load_dicom(write_dicom(tmp_path / "a.dcm", stored))
    np.testing.assert_allclose(plain[0, :, 0], [0, 85, 170, 255], atol=1e-3)
    inverted = load_dicom(write_dicom(tmp_path / "b.dcm", stored, photometric="MONOCHROME1"))
    np.testing.assert_allclose(inverted[0, :, 0], [255, 170, 85, 0], atol=1e-3)


def test_multiframe_needs_a_frame(tmp_path):
    stack = np.stack([np.full((4, 4), v, np.uint16) for v in (0, 100, 200)])
    stack[:, 0, 0] = 300  # so each frame has a range
    path = write_dicom(tmp_path / "mf.dcm", stack, frames=3)
    with pytest.raises(ImageLoadError, match="mf.dcm: multi-frame DICOM \\(3 frames\\)"):
        load_image(path)
    frame = load_dicom(path, frame=2)
    assert frame.shape == (4, 4, 3)
    with pytest.raises(ImageLoadError, match="frame 5 out of range"):
        load_dicom(path, frame=5)


def test_folder_picks_up_dicom_and_groups_by_patient(tmp_path):
    for cls, patient in (("a", "P1"), ("a", "P2"), ("b", "P1")):
        d = tmp_path / cls
        d.mkdir(exist_ok=True)
        write_dicom(d / f"{patient}.dcm", np.arange(16, dtype=np.uint16).reshape(4, 4),
                    patient=patient)
    data = load_image_folder(tmp_path, group_pattern="dicom:PatientID")
    assert data.groups.tolist() == ["P1", "P2", "P1"]
    assert data.target.tolist() == [0, 0, 1]


def test_broken_dicom_named(tmp_path):
    path = tmp_path / "broken.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 10)
    with pytest.raises(ImageLoadError, match="broken.dcm: unreadable DICOM"):
        load_image(path)


def _colour_dataset(**elements):
    return dicom_dataset(Modality="OT", Rows=4, Columns=8, PixelRepresentation=0, **elements)


def test_palette_colour_goes_through_its_colour_table(tmp_path):
    ds = _colour_dataset(PhotometricInterpretation="PALETTE COLOR", BitsAllocated=16,
                         BitsStored=16, HighBit=15)
    for colour, entry in (("Red", 65535), ("Green", 0), ("Blue", 32896)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [8, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData",
                np.full(8, entry, np.uint16).tobytes())
    ds.PixelData = np.tile(np.arange(8, dtype=np.uint16), (4, 1)).tobytes()
    ds.save_as(tmp_path / "palette.dcm", enforce_file_format=True)
    np.testing.assert_allclose(load_image(tmp_path / "palette.dcm"),
                               np.broadcast_to([255, 0, 128], (4, 8, 3)), atol=0.01)


def test_12_bit_rgb_dicom_read_on_its_bits_stored(tmp_path):
    ds = _colour_dataset(PhotometricInterpretation="RGB", SamplesPerPixel=3,
                         PlanarConfiguration=0, BitsAllocated=16, BitsStored=12, HighBit=11)
    rgb = np.zeros((4, 8, 3), np.uint16)
    rgb[..., 0] = 4095
    rgb[..., 1] = 2048
    ds.PixelData = rgb.tobytes()
    ds.save_as(tmp_path / "rgb12.dcm", enforce_file_format=True)
    out = load_image(tmp_path / "rgb12.dcm")
    np.testing.assert_allclose(out[0, 0], [255, 2048 * 255 / 4095, 0], atol=0.01)


@pytest.mark.parametrize("slope", ["NaN", "inf"])
def test_non_finite_rescale_slope_is_named(tmp_path, slope):
    path = write_dicom(tmp_path / "s.dcm", np.arange(32).reshape(4, 8))
    ds = pydicom.dcmread(path)
    with pydicom.config.disable_value_validation():
        ds.RescaleSlope = slope
        ds.save_as(path)
    with pytest.raises(ImageLoadError, match=r"s\.dcm: RescaleSlope is (nan|inf)"):
        load_image(path)


def test_sigmoid_voi_function_of_the_files_window(tmp_path):
    path = write_dicom(tmp_path / "sig.dcm", np.array([[0, 100, 200]]), window=(100, 100))
    ds = pydicom.dcmread(path)
    ds.VOILUTFunction = "SIGMOID"
    ds.save_as(path)
    expected = 255 / (1 + np.exp(-4 * (np.array([0, 100, 200]) - 100) / 100))
    np.testing.assert_allclose(load_image(path)[0, :, 0], expected, rtol=1e-5)
    # A window the caller gives is a plain ramp.
    np.testing.assert_allclose(load_dicom(path, window=(100, 200))[0, :, 0],
                               [0, 127.5, 255], rtol=1e-5)


def test_dark_windowed_dicom_reads_dark_not_refused(tmp_path):
    """A window above all the pixels leaves values within [0, 1] of 255: a dark image, on
    the 0-255 scale by construction, not a normalised one."""
    path = write_dicom(tmp_path / "dark.dcm", np.array([[0, 10, 20]]), window=(400, 100))
    ds = pydicom.dcmread(path)
    ds.VOILUTFunction = "SIGMOID"
    ds.save_as(path)
    image = load_image(path)
    assert 0 < image.max() < 1
    assert load_image(path, 8).shape == (8, 8, 3)
