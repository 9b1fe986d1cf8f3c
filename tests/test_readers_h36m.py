"""Human3.6M: the camera model against mmpose's genuine samples, the SPIN-style npz reader, and
the original-layout reader on a fixture (.cdf written with cdflib, mp4 with OpenCV) built from a
genuine frame's joints."""

from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.datasets.cameras import camera_matrices, project_h36m
from texturepose.datasets.h36m import convert_h36m, protocol_mask
from texturepose.datasets.spin_npz import convert_spin_npz
from texturepose.geometry.crops import to_crop
from texturepose.keypoints import H36M32_TO_17, subset_indices

H17 = subset_indices("h36m17")


@pytest.fixture(scope="module")
def h36m(shared_data):
    root = shared_data / "mmpose-samples" / "h36m"
    with open(root / "cameras.pkl", "rb") as f:
        cams = pickle.load(f)
    return root, cams, np.load(root / "test_h36m_body3d.npz"), np.load(root / "test_h36m.npz")


def _cam_of(name: str) -> tuple[str, str]:
    base = name.split("/")[-1]
    return base.split("_")[0], base.split(".")[1].split("_")[0]


def test_projection_matches_genuine_2d(h36m):
    _, cams, body3d, _ = h36m
    for name, S, part in zip(body3d["imgname"], body3d["S"], body3d["part"], strict=True):
        cam = cams[_cam_of(name)]
        uv = project_h36m(S[:, :3], cam["f"], cam["c"], cam["k"], cam["p"])
        np.testing.assert_allclose(uv, part[:, :2], atol=1e-3)
        # the distortion matters: without it the points are off by about a pixel or more
        assert np.abs(project_h36m(S[:, :3], cam["f"], cam["c"]) - part[:, :2]).max() > 0.5


def test_extrinsics_match_genuine_world_joints(h36m):
    root, cams, body3d, _ = h36m
    coco = json.loads((root / "h36m_coco.json").read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    names = [n.split("/")[-1] for n in body3d["imgname"]]
    for ann in coco["annotations"]:
        fname = files[ann["image_id"]]
        world = np.array(ann["keypoints_3d"]).reshape(-1, 4)[:, :3]
        K, Rt = camera_matrices(cams[_cam_of(fname)])
        cam_pts = world @ Rt[:, :3].T + Rt[:, 3]
        np.testing.assert_allclose(cam_pts, body3d["S"][names.index(fname), :, :3], atol=1e-5)
        f = np.ravel(cams[_cam_of(fname)]["f"])
        assert K[0, 0] == pytest.approx(f[0]) and K[2, 2] == 1


def test_spin_npz_reader(h36m, tmp_path):
    root, cams, body3d, spin = h36m
    counts = convert_spin_npz(root, tmp_path / "h.h5", npz_path=str(root / "test_h36m.npz"),
                              cameras_path=str(root / "cameras.pkl"), dataset="h36m", crop_res=64)
    assert counts["written"] == 4
    ds = Hdf5Dataset(tmp_path / "h.h5")
    assert ds.attrs["body_model"] == "smpl"
    kp = ds.column("keypoints_2d")
    part = spin["part"]
    np.testing.assert_allclose(kp[:, :24, :2][part[..., 2] > 0], part[..., :2][part[..., 2] > 0],
                               atol=1e-3)
    np.testing.assert_allclose(ds.column("keypoints_3d")[:, :24], spin["S"], atol=1e-5)
    expect = Rotation.from_rotvec(spin["pose"].reshape(-1, 3)).as_matrix().reshape(4, 24, 3, 3)
    np.testing.assert_allclose(ds.column("body_pose"), expect, atol=1e-5)
    np.testing.assert_allclose(ds.column("body_shape"), spin["shape"], atol=1e-6)
    np.testing.assert_allclose(ds.column("crop_size"), 200 * spin["scale"], rtol=1e-6)
    assert list(ds.column("subject")) == ["S1", "S5", "S7", "S8"]
    assert list(ds.column("camera")) == ["54138969", "54138969", "55011271", "55011271"]
    assert list(ds.column("frame")) == [0, 2060, 395, 25]
    assert ds.column("sequence")[0] == "S1_Directions_1"
    assert ds.column("cam_K")[0][0, 2] == pytest.approx(np.ravel(cams[("S1", "54138969")]["c"])[0])
    # the 17-joint npz lands on the superset's H36M joints
    convert_spin_npz(root, tmp_path / "b.h5", npz_path=str(root / "test_h36m_body3d.npz"),
                     crop_res=32)
    b = Hdf5Dataset(tmp_path / "b.h5")
    np.testing.assert_allclose(b.column("keypoints_2d")[:, H17, :2], body3d["part"][..., :2],
                               atol=1e-3)


# ---- the original layout, as a fixture built from a genuine frame ---------------------------

W, H, NF = 1000, 1002, 5


def _write_cdf(path, data):
    from cdflib.cdfwrite import CDF

    path.parent.mkdir(parents=True, exist_ok=True)
    c = CDF(str(path), cdf_spec={"Majority": "row_major"}, delete=True)
    c.write_var({"Variable": "Pose", "Data_Type": CDF.CDF_DOUBLE, "Num_Elements": 1,
                 "Rec_Vary": True, "Dim_Sizes": list(data.shape[1:])}, var_attrs={},
                var_data=data)
    c.close()


def _write_video(path, points, n=NF):
    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 50, (W, H))
    for _ in range(n):
        frame = np.zeros((H, W, 3), np.uint8)
        for x, y in points:
            cv2.circle(frame, (int(round(x)), int(round(y))), 7, (255, 255, 255), -1)
        vw.write(frame)
    vw.release()


def _seq(root, subject, action, cam_id, cam, world17, d2=None, width=96, video_frames=NF):
    R, T = np.asarray(cam["R"]), np.ravel(cam["T"])
    xc = (world17 - T) @ R  # R.T (X - T): the pickle's R is camera-to-world
    j32 = np.repeat(xc[:1], 32, 0)
    j32[list(H36M32_TO_17)] = xc
    pose = np.repeat(j32[None] * 1000.0, NF, 0).reshape(1, NF, 96)[..., :width]
    stem = f"{action}.{cam_id}"
    _write_cdf(root / subject / "MyPoseFeatures" / "D3_Positions_mono" / f"{stem}.cdf", pose)
    if d2 is not None:
        p32 = np.repeat(d2[:1], 32, 0)
        p32[list(H36M32_TO_17)] = d2
        _write_cdf(root / subject / "MyPoseFeatures" / "D2_Positions" / f"{stem}.cdf",
                   np.repeat(p32[None], NF, 0).reshape(1, NF, 64))
    uv = project_h36m(xc, cam["f"], cam["c"], cam["k"], cam["p"])
    if video_frames:
        _write_video(root / subject / "Videos" / f"{stem}.mp4", uv, video_frames)
    return xc, uv


@pytest.fixture(scope="module")
def h36m_root(h36m, tmp_path_factory):
    src, cams, body3d, _ = h36m
    root = tmp_path_factory.mktemp("h36m")
    S, part = body3d["S"][0, :, :3], body3d["part"][0, :, :2]  # S1, camera 54138969
    c1, c4 = cams[("S1", "54138969")], cams[("S1", "60457274")]
    world = S @ np.asarray(c1["R"]).T + np.ravel(c1["T"])
    fixture_cams = {("S1", "54138969"): c1, ("S9", "54138969"): c1, ("S9", "60457274"): c4,
                    ("S9", "58860488"): c1}
    with open(root / "cameras.pkl", "wb") as f:
        pickle.dump(fixture_cams, f)
    info = {"world": world, "part": part, "cams": fixture_cams}
    info["S1"] = _seq(root, "S1", "Directions 1", "54138969", c1, world, d2=part)
    _seq(root, "S9", "Walking", "54138969", c1, world)
    info["S9p2"] = _seq(root, "S9", "Walking", "60457274", c4, world)
    # broken sequences of the test subjects: each must be skipped with its reason
    _seq(root, "S9", "Eating", "55011271", c1, world)  # no camera parameters
    _seq(root, "S9", "Posing", "54138969", c1, world, width=90)  # wrong Pose width
    _seq(root, "S9", "Sitting", "54138969", c1, world, video_frames=0)  # no video
    _seq(root, "S9", "Smoking", "58860488", c1, world, video_frames=2)  # video ends early
    return root, info


def test_original_layout_train(h36m_root, tmp_path):
    root, info = h36m_root
    counts = convert_h36m(root, tmp_path / "t.h5", "train", crop_res=96, every_nth=2)
    assert counts["written"] == 3 and counts["skipped"] == 0
    # the stored 2D (D2_Positions, genuine) and our projection of the 3D agree
    assert counts["max_2d_disagreement_px"] < 1e-3
    ds = Hdf5Dataset(tmp_path / "t.h5")
    assert list(ds.column("frame")) == [0, 2, 4]
    assert ds.column("image_name")[0] == "S1_Directions_1.54138969_000001.jpg"
    assert set(ds.column("subject")) == {"S1"} and set(ds.column("camera")) == {"54138969"}
    kp = ds.column("keypoints_2d")
    np.testing.assert_allclose(kp[:, H17, :2], np.repeat(info["part"][None], 3, 0), atol=1e-3)
    xc, _ = info["S1"]
    np.testing.assert_allclose(ds.column("keypoints_3d")[:, H17, :3], np.repeat(xc[None], 3, 0),
                               atol=1e-6)
    Rt = ds.column("cam_Rt")[0]
    np.testing.assert_allclose(info["world"] @ Rt[:, :3].T + Rt[:, 3], xc, atol=1e-4)
    # the joints land on the disks drawn at them in the video frames
    s = ds[1]
    uv = np.round(to_crop(s["keypoints_2d"][H17, :2], s["crop_center"], s["crop_size"], 96))
    uv = uv.astype(int)
    assert (s["image"][uv[:, 1], uv[:, 0]].mean(-1) > 128).mean() > 0.9
    assert s["image"][2, 2].mean() < 40  # background corner


def test_original_layout_protocols(h36m_root, tmp_path):
    root, _ = h36m_root
    c1 = convert_h36m(root, tmp_path / "p1.h5", "test_p1", crop_res=32, every_nth=2)
    assert c1["written"] == 3 + 3 + 1  # Walking x 2 cameras, Smoking's 2-frame video: frame 0
    assert c1["skipped_reasons"] == {"no camera parameters": 1, "unreadable pose file": 1,
                                     "missing video": 1, "video frame missing": 2}
    p1 = Hdf5Dataset(tmp_path / "p1.h5")
    assert set(p1.column("camera")) == {"54138969", "60457274", "58860488"}
    assert protocol_mask(p1.column("subject"), p1.column("camera"), 1).all()
    c2 = convert_h36m(root, tmp_path / "p2.h5", "test_p2", crop_res=32, every_nth=2)
    assert c2["written"] == 3 and c2["skipped"] == 0
    p2 = Hdf5Dataset(tmp_path / "p2.h5")
    assert set(p2.column("camera")) == {"60457274"} and p2.attrs["protocol"] == 2
    m2 = protocol_mask(p1.column("subject"), p1.column("camera"), 2)
    assert m2.sum() == 3
    assert not protocol_mask(["S1", "S9"], ["60457274", "54138969"], 2).any()
