"""LSP and LSPET converters on the genuine files of ../shared/data: keypoints equal joints.mat,
crops map back to the original pixels, and the two datasets' opposite visibility flags."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.io

from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.data.schema import SchemaError
from texturepose.datasets.lsp import SPLITS, convert_lsp, read_lsp
from texturepose.datasets.lspet import convert_lspet
from texturepose.geometry.crops import from_crop, to_crop
from texturepose.keypoints import INDEX, subset_indices

N = 20
RES = 128
LSP14 = subset_indices("lsp14")


@pytest.fixture(scope="module")
def lsp_file(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("lsp") / "lsp_train.h5"
    counts = convert_lsp(shared_data / "lsp", out, "train", crop_res=RES, limit=N)
    assert counts["written"] == N and counts["skipped"] == 0
    return out


@pytest.fixture(scope="module")
def lspet_file(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("lspet") / "lspet_train.h5"
    counts = convert_lspet(shared_data / "lspet", out, crop_res=RES, limit=N)
    assert counts["written"] == N
    return out


def nearest_crop(image: np.ndarray, center, size, res) -> np.ndarray:
    """Independent oracle: each crop pixel takes the original pixel it maps back to."""
    uv = np.stack(np.meshgrid(np.arange(res) + 0.5, np.arange(res) + 0.5), -1)  # pixel centres
    xy = np.floor(from_crop(uv.reshape(-1, 2), center, size, res)).astype(int)
    h, w = image.shape[:2]
    inside = (xy[:, 0] >= 0) & (xy[:, 1] >= 0) & (xy[:, 0] < w) & (xy[:, 1] < h)
    out = np.zeros((res * res, 3), np.uint8)
    out[inside] = image[xy[inside, 1], xy[inside, 0]]
    return out.reshape(res, res, 3)


def test_lsp_keypoints_equal_joints_mat(lsp_file, shared_data):
    joints = scipy.io.loadmat(shared_data / "lsp" / "joints.mat")["joints"]  # 3 x 14 x 2000
    ds = Hdf5Dataset(lsp_file)
    assert len(ds) == N and ds.attrs["dataset"] == "lsp" and ds.attrs["crop_res"] == RES
    kp, vis = ds.column("keypoints_2d"), ds.column("visible")
    np.testing.assert_allclose(kp[:, LSP14, 0], joints[0, :, :N].T, atol=1e-4)
    np.testing.assert_allclose(kp[:, LSP14, 1], joints[1, :, :N].T, atol=1e-4)
    assert (kp[:, LSP14, 2] == 1).all()  # every LSP joint is annotated
    # LSP: flag 1 = occluded, so visible = 1 - flag
    np.testing.assert_array_equal(vis[:, LSP14], 1 - joints[2, :, :N].T)
    others = np.setdiff1d(np.arange(kp.shape[1]), LSP14)
    assert (kp[:, others] == 0).all() and (vis[:, others] == 0).all()
    assert list(ds.column("image_name")[:2]) == ["im0001.jpg", "im0002.jpg"]


def test_lsp_crops_map_back_to_original_pixels(lsp_file, shared_data):
    ds = Hdf5Dataset(lsp_file)
    errs, shifted = [], []
    for i in range(0, N, 4):
        s = ds[i]
        img = cv2.cvtColor(cv2.imread(str(shared_data / "lsp" / "images" / s["image_name"])),
                           cv2.COLOR_BGR2RGB)
        c, size = s["crop_center"], float(s["crop_size"])
        kp = s["keypoints_2d"][LSP14, :2]
        # the box holds every keypoint with SPIN's 1.2 margin
        uv = to_crop(kp, c, size, RES)
        assert (uv > 0).all() and (uv < RES).all()
        np.testing.assert_allclose(from_crop(uv, c, size, RES), kp, atol=1e-3)
        oracle = nearest_crop(img, c, size, RES).astype(float)
        errs.append(np.abs(s["image"].astype(float) - oracle).mean())
        shifted.append(np.abs(np.roll(s["image"], 2, axis=1).astype(float) - oracle).mean())
    # the stored crop is the oracle up to interpolation and JPEG (~3.5 grey levels); a crop 2
    # pixels off is ~13 away
    assert np.mean(errs) < 6.0
    assert np.mean(errs) < 0.5 * np.mean(shifted)


def test_lspet_visibility_convention(lspet_file, shared_data):
    joints = scipy.io.loadmat(shared_data / "lspet" / "joints.mat")["joints"]  # 14 x 3 x 10000
    ds = Hdf5Dataset(lspet_file)
    kp, vis = ds.column("keypoints_2d"), ds.column("visible")
    flag = joints[:, 2, :N].T
    # LSPET: flag 1 = visible, 0 = not annotated (arbitrary coordinates)
    np.testing.assert_array_equal(vis[:, LSP14], flag)
    np.testing.assert_array_equal(kp[:, LSP14, 2], flag)
    ann = flag > 0
    np.testing.assert_allclose(kp[:, LSP14, 0][ann], joints[:, 0, :N].T[ann], atol=1e-4)
    assert (kp[:, LSP14, :2][~ann] == 0).all()
    # image 1's right ankle is unannotated at (0, -26): it must not be taken as a point
    assert kp[0, INDEX["r_ankle"], 2] == 0


def test_lspet_only_present_and_missing_counts(shared_data, tmp_path):
    # the shared copy holds images 1-400 of 10000: the default counts the rest as missing
    counts = convert_lspet(shared_data / "lspet", tmp_path / "a.h5", crop_res=32, limit=3)
    assert counts["written"] == 3


def test_lsp_validation_split_is_the_last_100_training_images():
    # train_fit + val partition the training half; test is untouched
    fit, val = set(SPLITS["train_fit"]), set(SPLITS["val"])
    assert not fit & val and fit | val == set(SPLITS["train"])
    assert (min(val), max(val), len(val)) == (900, 999, 100)
    assert SPLITS["test"] == range(1000, 2000)


def test_lsp_val_file_holds_images_901_to_1000(shared_data, tmp_path):
    joints = scipy.io.loadmat(shared_data / "lsp" / "joints.mat")["joints"]  # 3 x 14 x 2000
    counts = convert_lsp(shared_data / "lsp", tmp_path / "lsp_val.h5", "val", crop_res=32)
    assert counts["written"] == 100 and counts["skipped"] == 0
    ds = Hdf5Dataset(tmp_path / "lsp_val.h5")
    names = list(ds.column("image_name"))
    assert names == [f"im{i:04d}.jpg" for i in range(901, 1001)]
    kp = ds.column("keypoints_2d")
    np.testing.assert_allclose(kp[:, LSP14, 0], joints[0, :, 900:1000].T, atol=1e-4)
    assert ds.attrs["split"] == "val"
    # the training part stops where validation starts
    fit = [s.image_name for s in read_lsp(shared_data / "lsp", "train_fit")]
    assert fit[0] == "im0001.jpg" and fit[-1] == "im0900.jpg" and len(fit) == 900
    assert not set(fit) & set(names)


def test_lsp_unknown_split_is_refused(shared_data, tmp_path):
    with pytest.raises(ValueError, match="train_fit"):
        convert_lsp(shared_data / "lsp", tmp_path / "x.h5", "validation")


def test_lsp_test_half_absent_writes_nothing(shared_data, tmp_path):
    out = tmp_path / "lsp_test.h5"
    with pytest.raises(SchemaError, match="no readable samples"):
        convert_lsp(shared_data / "lsp", out, "test", crop_res=32)
    assert list(tmp_path.iterdir()) == []


def test_fetch_and_preprocess_stages(shared_data, tmp_path):
    """The two stage scripts end to end on a params file of their own (LSP, 5 images)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"seed": 0, "datasets": {
        "crop_res": 48,
        "lsp": {"enabled": True, "root": str(shared_data / "lsp"), "fetch": "symlink",
                "splits": ["train"], "options": {"limit": 5}},
        "h36m": {"enabled": False, "root": None},
    }}))
    raw, out, rep = tmp_path / "raw", tmp_path / "processed", tmp_path / "reports"
    run = [sys.executable, "--params", str(params)]
    subprocess.run([run[0], str(repo / "stages" / "fetch.py"), *run[1:], "--out-dir", str(raw)],
                   check=True, cwd=repo, capture_output=True)
    assert (raw / "lsp").is_symlink() and not (raw / "h36m").exists()
    subprocess.run([run[0], str(repo / "stages" / "preprocess.py"), *run[1:], "--raw-dir",
                    str(raw), "--out-dir", str(out), "--report-dir", str(rep)],
                   check=True, cwd=repo, capture_output=True)
    assert Hdf5Dataset(out / "lsp_train.h5").attrs["crop_res"] == 48
    assert json.loads((rep / "summary.json").read_text()) == {
        "lsp": {"train": {"written": 5, "skipped": 0}}}
    # a registered dataset enabled without data: a clear message and a failing exit code
    bad = subprocess.run([run[0], str(repo / "stages" / "fetch.py"), *run[1:], "h36m",
                          "--out-dir", str(raw)], cwd=repo, capture_output=True, text=True)
    assert bad.returncode == 1 and "vision.imar.ro" in bad.stderr


def test_real_recipe_trains_on_train_fit_and_validates_on_val(tmp_path):
    """params/real.yaml: `lsp-train_fit` in the mix reads lsp_train_fit.h5 (the others
    data.split's files); the held-out lsp_val.h5 is evaluated, never trained on."""
    from pathlib import Path

    from stages.common import load_params
    from texturepose.training.config import TrainConfig
    from texturepose.training.data import dataset_paths

    params = load_params(Path(__file__).resolve().parents[1] / "params" / "real.yaml")
    assert params["datasets"]["lsp"]["splits"] == ["train_fit", "val"]
    real = tmp_path / "data/processed/real"
    real.mkdir(parents=True)
    (tmp_path / "data/processed/synthetic_train.h5").touch()
    for name in ("lsp_train", "lsp_train_fit", "lsp_val", "lspet_train", "coco_train"):
        (real / f"{name}.h5").touch()
    paths = dataset_paths(TrainConfig.from_params(params), tmp_path)
    assert {k: v[0].name for k, v in paths.items()} == {
        "synthetic": "synthetic_train.h5", "lsp-train_fit": "lsp_train_fit.h5",
        "lspet": "lspet_train.h5", "coco": "coco_train.h5"}
    assert paths["lsp-train_fit"][1].name == "lsp_train_fit.parquet"
    val = [s for s in params["evaluate"]["sets"] if s["name"] == "lsp_val"]
    assert val and val[0]["file"] == "data/processed/real/lsp_val.h5" and val[0]["kind"] == "2d"
    assert val[0]["joints"] == "lsp14" and val[0]["pck"] == {"thresholds": [0.1, 0.2],
                                                             "norm": "torso"}
