"""Bad input gives a clear message and nothing half-written: corrupt/truncated/missing images,
NaN and out-of-image keypoints, wrong-shaped .mat, truncated HDF5, unknown schema version."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import scipy.io

from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.data.schema import SchemaError, validate
from texturepose.datasets.common import RawSample, ReaderError, SplitInfo, write_split
from texturepose.datasets.lsp import convert_lsp
from texturepose.keypoints import INDEX

N = 8


@pytest.fixture()
def lsp_copy(shared_data, tmp_path):
    """The first N LSP images and a joints.mat whose first N entries are the genuine ones."""
    root = tmp_path / "lsp"
    (root / "images").mkdir(parents=True)
    for i in range(1, N + 1):
        shutil.copy(shared_data / "lsp" / "images" / f"im{i:04d}.jpg", root / "images")
    joints = scipy.io.loadmat(shared_data / "lsp" / "joints.mat")["joints"]
    scipy.io.savemat(root / "joints.mat", {"joints": joints})
    return root, joints


def test_corrupt_truncated_and_missing_images_are_counted(lsp_copy, tmp_path):
    root, _ = lsp_copy
    (root / "images" / "im0002.jpg").write_bytes(b"this is not a jpeg")
    data = (root / "images" / "im0003.jpg").read_bytes()
    (root / "images" / "im0003.jpg").write_bytes(data[: len(data) // 2])
    (root / "images" / "im0004.jpg").unlink()
    counts = convert_lsp(root, tmp_path / "out.h5", crop_res=32, limit=N - 3)
    assert counts["written"] == N - 3
    assert counts["skipped_reasons"] == {"unreadable image": 2, "missing image": 1}
    assert "im0004.jpg" in counts["skipped_examples"]["missing image"]
    ds = Hdf5Dataset(tmp_path / "out.h5")
    assert ds.attrs["skipped"] == 3 and "unreadable image" in ds.attrs["skipped_reasons"]
    assert "im0002.jpg" not in set(ds.column("image_name"))


def test_nan_and_out_of_image_keypoints(lsp_copy, tmp_path):
    root, joints = lsp_copy
    joints = joints.copy()
    joints[:2, :, 4] = np.nan  # image 5: no usable keypoint at all
    joints[:2, 3, 5] = np.nan  # image 6: one NaN joint (left hip)
    joints[0, 0, 0] = -500.0  # image 1: right ankle far outside the image
    scipy.io.savemat(root / "joints.mat", {"joints": joints})
    counts = convert_lsp(root, tmp_path / "out.h5", crop_res=32)
    # images N+1..1000 are not in the copy
    assert counts["skipped_reasons"] == {"too few valid keypoints": 1, "missing image": 1000 - N}
    ds = Hdf5Dataset(tmp_path / "out.h5")
    names = list(ds.column("image_name"))
    assert "im0005.jpg" not in names
    kp = ds.column("keypoints_2d")
    assert np.isfinite(kp).all()
    k6 = kp[names.index("im0006.jpg")]
    assert k6[INDEX["l_hip"], 2] == 0 and k6[INDEX["r_hip"], 2] == 1
    k1 = kp[0]
    assert k1[INDEX["r_ankle"], 2] == 0
    # the crop box ignores the dropped point: it stays around the remaining joints
    valid = k1[:, 2] > 0
    assert ds.column("crop_size")[0] == pytest.approx(
        1.2 * np.ptp(k1[valid, :2], axis=0).max(), rel=1e-5)


def test_wrong_shaped_mat_is_refused(lsp_copy, tmp_path):
    root, joints = lsp_copy
    scipy.io.savemat(root / "joints.mat", {"joints": joints[:, :, :100]})
    with pytest.raises(ReaderError) as e:
        convert_lsp(root, tmp_path / "out.h5", crop_res=32)
    msg = str(e.value)
    assert "joints.mat" in msg and "'joints'" in msg and "3x14x2000" in msg and "3x14x100" in msg
    (root / "joints.mat").write_bytes(b"MATLAB? no.")
    with pytest.raises(ReaderError, match="not a readable MATLAB file"):
        convert_lsp(root, tmp_path / "out.h5", crop_res=32)
    (root / "joints.mat").unlink()
    with pytest.raises(ReaderError, match="not found.*lsp_dataset.zip"):
        convert_lsp(root, tmp_path / "out.h5", crop_res=32)
    assert not (tmp_path / "out.h5").exists()


def _good_file(lsp_copy, path):
    root, _ = lsp_copy
    convert_lsp(root, path, crop_res=32, limit=3)
    return path


def test_truncated_hdf5(lsp_copy, tmp_path):
    path = _good_file(lsp_copy, tmp_path / "a.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(SchemaError, match="truncated"):
        Hdf5Dataset(path)


def test_unknown_schema_version(lsp_copy, tmp_path):
    path = _good_file(lsp_copy, tmp_path / "a.h5")
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(SchemaError, match="schema_version 99"):
        validate(path)


def test_failure_mid_conversion_leaves_old_file_intact(lsp_copy, tmp_path):
    path = _good_file(lsp_copy, tmp_path / "a.h5")
    before = path.read_bytes()
    good = next(iter(Hdf5Dataset(path).iter_range(0, 1)))

    def samples():
        kp = good["keypoints_2d"]
        yield RawSample(kp, good["visible"], None, 0.0, "x.jpg",
                        image=np.zeros((300, 300, 3), np.uint8))
        raise RuntimeError("disk unplugged")

    with pytest.raises(RuntimeError, match="disk unplugged"):
        write_split(samples(), path, SplitInfo("lsp", "train", "s", "l"), crop_res=32)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "lsp"]
