"""MPII (genuine json sample + an official-layout .mat fixture), 3DPW (sequence-pickle fixture),
MPI-INF-3DHP (genuine npz samples + annot.mat / annot_data.mat fixtures) and MoSh/AMASS npz."""

from __future__ import annotations

import json
import pickle
import shutil

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
from scipy.spatial.transform import Rotation

from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.data.schema import SchemaError
from texturepose.datasets.common import ReaderError
from texturepose.datasets.mosh import read_amass_npz
from texturepose.datasets.mpi_inf_3dhp import convert_mpi_inf_3dhp
from texturepose.datasets.mpii import convert_mpii
from texturepose.datasets.pw3d import convert_pw3d
from texturepose.datasets.spin_npz import convert_spin_npz
from texturepose.keypoints import INDEX, MPI3DHP17, OPENPOSE18, names_to_superset, superset_map

MPII16 = superset_map("mpii16")


# ---- MPII -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mpii_people(shared_data):
    root = shared_data / "mmpose-samples" / "mpii"
    return root, json.loads((root / "test_mpii.json").read_text())


def test_mpii_json_genuine(mpii_people, tmp_path):
    root, people = mpii_people
    counts = convert_mpii(root, tmp_path / "m.h5", json_path=str(root / "test_mpii.json"),
                          image_dir=".", crop_res=64)
    assert counts["written"] == len(people)
    ds = Hdf5Dataset(tmp_path / "m.h5")
    kp = ds.column("keypoints_2d")
    for i, p in enumerate(people):
        j, v = np.array(p["joints"]), np.array(p["joints_vis"]) > 0
        np.testing.assert_allclose(kp[i, MPII16[v], :2], j[v] - 1.0, atol=1e-4)  # 1-based
        np.testing.assert_array_equal(kp[i, MPII16, 2], v.astype(np.float32))
        c = np.array(p["center"]) - 1.0
        c[1] += 15 * p["scale"]
        np.testing.assert_allclose(ds.column("crop_center")[i], c, atol=1e-3)
        assert ds.column("crop_size")[i] == pytest.approx(250 * p["scale"], rel=1e-5)
    assert (ds.column("visible") == 0).all()  # the json has no visibility
    assert ds.attrs["visibility"].startswith("unknown")


def _struct(dicts):
    """A 1 x N MATLAB struct array for scipy.io.savemat."""
    keys = list(dicts[0])
    arr = np.zeros((1, len(dicts)), dtype=[(k, object) for k in keys])
    for i, d in enumerate(dicts):
        for k in keys:
            arr[0, i][k] = d[k]
    return arr


def _mpii_mat(path, people, visible_of):
    by_image: dict[str, list] = {}
    for p in people:
        by_image.setdefault(p["image"], []).append(p)
    annolist = []
    for name, ps in by_image.items():
        rects = []
        for p in ps:
            pts = [{"x": float(x), "y": float(y), "id": j, "is_visible": str(visible_of(j))}
                   for j, ((x, y), v) in enumerate(zip(p["joints"], p["joints_vis"], strict=True))
                   if v]
            rects.append({"scale": p["scale"], "objpos": {"x": p["center"][0],
                                                          "y": p["center"][1]},
                          "annopoints": {"point": _struct(pts)}})
        rects.append({"scale": 1.0, "objpos": {"x": 5.0, "y": 5.0},
                      "annopoints": np.zeros((0, 0))})  # a person without keypoints
        annolist.append({"image": {"name": name}, "annorect": _struct(rects)})
    annolist.append({"image": {"name": "test_image.jpg"}, "annorect": np.zeros((0, 0))})
    img_train = np.array([[1] * len(by_image) + [0]])
    scipy.io.savemat(path, {"RELEASE": {"annolist": _struct(annolist), "img_train": img_train}})


def test_mpii_mat_matches_json(mpii_people, tmp_path):
    root, people = mpii_people
    mat = tmp_path / "mpii_human_pose_v1_u12_1.mat"
    _mpii_mat(mat, people, visible_of=lambda j: int(j % 3 != 0))
    shutil.copytree(root, tmp_path / "images", ignore=shutil.ignore_patterns("*.json"))
    cm = convert_mpii(tmp_path, tmp_path / "mat.h5", "trainval", source="mat", crop_res=32)
    assert cm["written"] == len(people)
    assert cm["skipped_reasons"] == {"no keypoints annotated": len({p["image"] for p in people})}
    convert_mpii(root, tmp_path / "json.h5", json_path=str(root / "test_mpii.json"),
                 image_dir=".", crop_res=32)
    a, b = Hdf5Dataset(tmp_path / "mat.h5"), Hdf5Dataset(tmp_path / "json.h5")
    order = {(n, p): i for i, (n, p) in enumerate(zip(b.column("image_name"), b.column("person"),
                                                      strict=True))}
    idx = [order[(n, p)] for n, p in zip(a.column("image_name"), a.column("person"), strict=True)]
    np.testing.assert_allclose(a.column("keypoints_2d"), b.column("keypoints_2d")[idx], atol=1e-4)
    np.testing.assert_allclose(a.column("crop_center"), b.column("crop_center")[idx], atol=1e-4)
    np.testing.assert_allclose(a.column("crop_size"), b.column("crop_size")[idx], rtol=1e-6)
    vis = a.column("visible")[:, MPII16]
    ann = a.column("keypoints_2d")[:, MPII16, 2] > 0
    expect = (np.arange(16) % 3 != 0)[None] & ann
    np.testing.assert_array_equal(vis.astype(bool), expect)
    # the usual split needs the validation list: people in it go to val, the rest to train
    val = tmp_path / "mpii_val.json"
    val.write_text(json.dumps(people[:2]))
    cv = convert_mpii(tmp_path, tmp_path / "v.h5", "val", source="mat", val_json=str(val))
    ct = convert_mpii(tmp_path, tmp_path / "t.h5", "train", source="mat", val_json=str(val))
    assert (cv["written"], ct["written"]) == (2, len(people) - 2)
    with pytest.raises(ReaderError, match="val_json"):
        convert_mpii(tmp_path, tmp_path / "x.h5", "val", source="mat")


# ---- 3DPW -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pw3d_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("3dpw")
    rng = np.random.default_rng(0)
    n, w, h = 4, 320, 240
    yaw = Rotation.from_euler("y", 30, degrees=True).as_matrix()
    cam_poses = np.repeat(np.eye(4)[None], n, 0)
    cam_poses[:, :3, :3] = yaw
    cam_poses[:, :3, 3] = [0.1, 0.2, 3.0]
    poses2d = []
    for _ in range(2):
        p = np.zeros((n, 3, 18))
        p[:, 0] = rng.uniform(60, 260, (n, 18))
        p[:, 1] = rng.uniform(40, 200, (n, 18))
        p[:, 2] = 0.8
        p[:, 2, 16] = 0.0  # an undetected ear
        poses2d.append(p)
    seq = {
        "sequence": "downtown_test_00", "poses": [rng.normal(0, 0.3, (n, 72)) for _ in range(2)],
        "betas": [rng.normal(0, 1, 10), rng.normal(0, 1, 10)], "poses2d": poses2d,
        "cam_poses": cam_poses, "cam_intrinsics": np.array([[400, 0, 160], [0, 400, 120],
                                                            [0, 0, 1.0]]),
        "campose_valid": [np.ones(n, bool), np.array([1, 1, 0, 1], bool)],
        "img_frame_ids": np.arange(n) * 2, "trans": [np.zeros((n, 3))] * 2,
        "genders": ["m", "f"],
    }
    (root / "sequenceFiles" / "test").mkdir(parents=True)
    with open(root / "sequenceFiles" / "test" / "downtown_test_00.pkl", "wb") as f:
        pickle.dump(seq, f, protocol=2)
    imgs = root / "imageFiles" / "downtown_test_00"
    imgs.mkdir(parents=True)
    for fid in seq["img_frame_ids"]:
        cv2.imwrite(str(imgs / f"image_{fid:05d}.jpg"), np.full((h, w, 3), 90, np.uint8))
    return root, seq


def test_pw3d_sequence_pickle(pw3d_root, tmp_path):
    root, seq = pw3d_root
    counts = convert_pw3d(root, tmp_path / "p.h5", "test", crop_res=32)
    assert counts["written"] == 7 and counts["skipped_reasons"] == {"camera pose not valid": 1}
    ds = Hdf5Dataset(tmp_path / "p.h5")
    assert ds.attrs["body_model"] == "smpl"
    persons, frames = ds.column("person"), ds.column("frame")
    assert list(frames[persons == 1]) == [0, 2, 6]  # img_frame_ids, frame 2 (id 4) invalid
    i = int(np.flatnonzero(persons == 1)[2])  # actor 1, pose index 3
    body = ds.column("body_pose")[i]
    pose = seq["poses"][1][3].reshape(24, 3)
    R = Rotation.from_rotvec(pose).as_matrix()
    np.testing.assert_allclose(body[1:], R[1:], atol=1e-5)
    np.testing.assert_allclose(body[0], seq["cam_poses"][3, :3, :3] @ R[0], atol=1e-5)
    np.testing.assert_allclose(ds.column("body_shape")[i], seq["betas"][1], atol=1e-6)
    np.testing.assert_allclose(ds.column("cam_Rt")[i], seq["cam_poses"][3, :3], atol=1e-6)
    kp = ds.column("keypoints_2d")[i]
    p2 = seq["poses2d"][1][3]
    for j, name in enumerate(OPENPOSE18):
        if p2[2, j] > 0:
            np.testing.assert_allclose(kp[INDEX[name]], p2[:, j], atol=1e-4)
    assert kp[INDEX["r_ear"], 2] == 0 and ds.column("visible")[i, INDEX["r_ear"]] == 0
    assert ds.column("subject")[i] == "downtown_test_00_actor1"


def test_pw3d_bad_pickle(tmp_path):
    (tmp_path / "sequenceFiles" / "test").mkdir(parents=True)
    (tmp_path / "sequenceFiles" / "test" / "a.pkl").write_bytes(b"not a pickle")
    with pytest.raises(SchemaError, match="no readable samples"):
        convert_pw3d(tmp_path, tmp_path / "p.h5", "test")
    assert not (tmp_path / "p.h5").exists()


# ---- MPI-INF-3DHP -----------------------------------------------------------------------------


def test_3dhp_genuine_npz_joint_order(shared_data, tmp_path):
    root = shared_data / "mmpose-samples" / "mpi_inf_3dhp"
    with open(root / "cameras_test.pkl", "rb") as f:
        cams = pickle.load(f)
    d = np.load(root / "test_3dhp_test.npz")
    for name, S, part in zip(d["imgname"], d["S"], d["part"], strict=True):
        cam = cams[name.split("_")[0]]
        uv = S[:, :2] / S[:, 2:3] * np.ravel(cam["f"]) + np.ravel(cam["c"])
        assert np.abs(uv - part[:, :2]).max() < 3.0  # the genuine 2D is the projected 3D
        y = names_to_superset(part, MPI3DHP17)[:, 1]
        # standing people: head top above head above thorax above pelvis
        assert y[INDEX["head_top"]] < y[INDEX["head"]] < y[INDEX["thorax"]] < y[INDEX["pelvis"]]
    counts = convert_spin_npz(root, tmp_path / "t.h5", npz_path=str(root / "test_3dhp_test.npz"),
                              joint_order="mpi3dhp17", crop_res=32, dataset="mpi_inf_3dhp")
    assert counts["written"] == 2


def test_3dhp_train_and_test_layouts(shared_data, tmp_path):
    rng = np.random.default_rng(1)
    n, w, h = 4, 160, 120
    a2 = np.stack([rng.uniform(30, 130, (n, 28)), rng.uniform(20, 100, (n, 28))], -1)
    a3 = rng.normal(0, 300, (n, 28, 3)) + [0, 0, 4000]
    seq = tmp_path / "S1" / "Seq1"
    (seq / "imageSequence").mkdir(parents=True)
    cell2 = np.empty((14, 1), object)
    cell3 = np.empty((14, 1), object)
    for c in range(14):
        cell2[c, 0] = a2.reshape(n, 56) + c
        cell3[c, 0] = a3.reshape(n, 84)
    scipy.io.savemat(seq / "annot.mat", {"annot2": cell2, "annot3": cell3,
                                         "frames": np.arange(n)[:, None]})
    calib = ["Skeletool Camera Calibration File V1.0"]
    for c in range(14):
        calib += [f"name          {c}", "  size        160 120",
                  "  intrinsic   400 0 80 0 0 401 60 0 0 0 1 0 0 0 0 1",
                  "  extrinsic   1 0 0 -500 0 1 0 250 0 0 1 1000 0 0 0 1"]
    (seq / "camera.calibration").write_text("\n".join(calib) + "\n")
    vw = cv2.VideoWriter(str(seq / "imageSequence" / "video_0.avi"),
                         cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h))
    for _ in range(n):
        vw.write(np.full((h, w, 3), 60, np.uint8))
    vw.release()
    counts = convert_mpi_inf_3dhp(tmp_path, tmp_path / "tr.h5", "train", crop_res=32,
                                  every_nth=2, cameras=(0, 1))
    assert counts["written"] == 2 and counts["skipped_reasons"] == {"missing video": 1}
    ds = Hdf5Dataset(tmp_path / "tr.h5")
    kp, k3 = ds.column("keypoints_2d"), ds.column("keypoints_3d")
    # 28-joint order: index 7 head_top, 4 pelvis, 14 r_shoulder, 20 l_ankle
    for j, name in ((7, "head_top"), (4, "pelvis"), (14, "r_shoulder"), (20, "l_ankle")):
        np.testing.assert_allclose(kp[:, INDEX[name], :2], a2[[0, 2], j], atol=1e-3)
        np.testing.assert_allclose(k3[:, INDEX[name], :3], a3[[0, 2], j] / 1000, atol=1e-6)
    np.testing.assert_allclose(ds.column("cam_K")[0], [[400, 0, 80], [0, 401, 60], [0, 0, 1]])
    np.testing.assert_allclose(ds.column("cam_Rt")[0][:, 3], [-0.5, 0.25, 1.0])
    assert list(ds.column("image_name")) == ["S1_Seq1_Cam0_000001.jpg", "S1_Seq1_Cam0_000003.jpg"]

    # test set: annot_data.mat is MATLAB v7.3 (HDF5)
    ts = tmp_path / "mpi_inf_3dhp_test_set" / "TS1"
    (ts / "imageSequence").mkdir(parents=True)
    t2 = np.stack([rng.uniform(30, 130, (n, 17)), rng.uniform(20, 100, (n, 17))], -1)
    with h5py.File(ts / "annot_data.mat", "w") as f:
        f["annot2"] = t2[:, None]
        f["annot3"] = (rng.normal(0, 300, (n, 17, 3)) + [0, 0, 4000])[:, None]
        f["valid_frame"] = np.array([[1], [0], [1], [1]], float)
    for i in range(n):
        cv2.imwrite(str(ts / "imageSequence" / f"img_{i + 1:06d}.jpg"),
                    np.full((h, w, 3), 60, np.uint8))
    counts = convert_mpi_inf_3dhp(
        tmp_path, tmp_path / "te.h5", "test", crop_res=32,
        cameras_path=str(shared_data / "mmpose-samples" / "mpi_inf_3dhp" / "cameras_test.pkl"))
    assert counts["written"] == 3
    assert counts["skipped_reasons"] == {"invalid frame (valid_frame = 0)": 1}
    te = Hdf5Dataset(tmp_path / "te.h5")
    np.testing.assert_allclose(te.column("keypoints_2d")[:, INDEX["head_top"], :2],
                               t2[[0, 2, 3], 0], atol=1e-3)
    assert te.column("cam_K")[0][0, 0] == pytest.approx(1500.0686, rel=1e-6)


# ---- MoSh / AMASS -----------------------------------------------------------------------------


def test_read_mosh_genuine(shared_data):
    path = shared_data / "mmpose-samples" / "mosh" / "test_mosh.npz"
    d = read_amass_npz(path)
    raw = np.load(path)
    assert d["layout"] == "mosh" and d["fps"] is None
    np.testing.assert_allclose(d["poses"], raw["pose"], rtol=1e-6)
    np.testing.assert_allclose(d["betas"], raw["shape"], rtol=1e-6)


def test_amass_layout_and_bad_files(tmp_path):
    rng = np.random.default_rng(2)
    poses = rng.normal(0, 0.2, (10, 156))
    np.savez(tmp_path / "a_poses.npz", poses=poses, betas=rng.normal(0, 1, 16),
             trans=np.zeros((10, 3)), mocap_framerate=np.array(120.0), gender="female")
    d = read_amass_npz(tmp_path / "a_poses.npz")
    assert d["layout"] == "amass" and d["fps"] == 120.0 and d["gender"] == "female"
    assert d["poses"].shape == (10, 156) and d["betas"].shape == (10, 16)
    np.savez(tmp_path / "bad.npz", poses=np.zeros((3, 10)))
    with pytest.raises(ReaderError, match=r"'poses'.*\(N, >=72\)"):
        read_amass_npz(tmp_path / "bad.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(ReaderError):
        read_amass_npz(tmp_path / "corrupt.npz")
