"""The synthetic dataset: stored fields agree with each other and with an independent re-render
from the stored parameters, the splits are by subject, and a seed gives the same files."""

from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from texturepose.data.codecs import decode_png
from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.geometry.crops import to_crop
from texturepose.keypoints import INDEX
from texturepose.render.rasterize import rasterize
from texturepose.synthetic import PoseClips, SynthConfig, synthesize
from texturepose.synthetic.render import CropRenderer
from texturepose.synthetic.rig import RigConfig, look_at
from texturepose.synthetic.textures import REGIONS, build_layout

CONFIG = SynthConfig(subjects_train=1, subjects_test=1, clips_per_subject=1, frames_per_clip=3,
                     frame_step=2, crop_res=64, texture_res=128, batch_size=8, seed=3,
                     rig=RigConfig(num_cameras=2), created="fixed")


def _poses(num_joints: int) -> PoseClips:
    """Plausible-ish poses: small random joint rotations, upright root."""
    import roma

    g = torch.Generator().manual_seed(0)
    rv = torch.randn(20, num_joints, 3, generator=g) * 0.25
    rv[:, 0] = 0
    rot = roma.rotvec_to_rotmat(rv).numpy().astype(np.float32)
    return PoseClips(rot, np.array(["a"] * 10 + ["b"] * 10), np.r_[np.arange(10), np.arange(10)])


@pytest.fixture(scope="module")
def generated(anny_body, tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    poses = _poses(anny_body.num_joints)
    runs = {}
    other = replace(CONFIG, seed=4, subjects_test=0)
    for name, cfg in (("a", CONFIG), ("b", CONFIG), ("c", other)):
        counts = synthesize(root / name, cfg, anny_body, poses)
        runs[name] = (root / name, counts)
    return runs


def _arrays(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f.keys()}


def test_counts_and_split_by_subject(generated):
    folder, counts = generated["a"]
    assert counts["train"] == counts["test"] == 1 * 3 * 2
    train, test = Hdf5Dataset(folder / "synthetic_train.h5"), Hdf5Dataset(folder /
                                                                          "synthetic_test.h5")
    assert set(train.column("subject")) == {"S01"} and set(test.column("subject")) == {"S02"}
    assert train.attrs["created"] == "fixed" and train.attrs["crop_res"] == 64
    assert set(train.column("camera")) == {"C1", "C2"}


def test_keypoints_are_projections_of_the_3d_joints_and_the_body(generated, anny_body):
    ds = Hdf5Dataset(generated["a"][0] / "synthetic_train.h5")
    k3 = ds.column("keypoints_3d")
    kk, rt = ds.column("cam_K"), ds.column("cam_Rt")
    proj = np.einsum("nij,nkj->nki", kk, k3[..., :3])
    uv = proj[..., :2] / proj[..., 2:]
    k2 = ds.column("keypoints_2d")
    assert np.abs(uv - k2[..., :2]).max() < 1e-2  # pixels
    assert np.array_equal(k2[..., 2], k3[..., 3])
    # The camera-frame pose reproduces the 3D joints with the camera's translation.
    with torch.no_grad():
        out = anny_body(torch.from_numpy(ds.column("body_pose")),
                        torch.from_numpy(ds.column("body_shape")))
    kp = out.keypoints.numpy() + rt[:, None, :, 3]
    assert np.abs(kp - k3[..., :3]).max() < 1e-4  # metres


def test_views_of_one_instant_share_the_pose(generated):
    ds = Hdf5Dataset(generated["a"][0] / "synthetic_train.h5")
    pose, rt, frame = ds.column("body_pose"), ds.column("cam_Rt"), ds.column("frame")
    cam = ds.column("camera")
    a, b = np.flatnonzero((frame == frame[0]) & (cam == "C1"))[0], np.flatnonzero(
        (frame == frame[0]) & (cam == "C2"))[0]
    assert np.allclose(pose[a, 1:], pose[b, 1:])
    world_a = rt[a, :, :3].T @ pose[a, 0]
    world_b = rt[b, :, :3].T @ pose[b, 0]
    assert np.allclose(world_a, world_b, atol=1e-5)
    assert not np.allclose(pose[a, 0], pose[b, 0], atol=1e-2)


def test_keypoints_inside_their_crops(generated):
    ds = Hdf5Dataset(generated["a"][0] / "synthetic_test.h5")
    for s in ds:
        assert s["image"].shape == (64, 64, 3)
        kp = to_crop(s["keypoints_2d"][:, :2], s["crop_center"], float(s["crop_size"]), 64)
        ok = s["keypoints_2d"][:, 2] > 0
        assert ok.all()
        assert (kp[ok] >= 0).all() and (kp[ok] <= 64).all()


def test_masks_match_an_independent_render(generated, anny_body):
    """Re-render each crop from the stored pose, shape, cameras and box only."""
    ds = Hdf5Dataset(generated["a"][0] / "synthetic_train.h5")
    res, ss = 64, CONFIG.supersample
    n_diff, n_px = 0, 0
    for s in ds:
        with torch.no_grad():
            out = anny_body(torch.from_numpy(s["body_pose"])[None],
                            torch.from_numpy(s["body_shape"])[None])
        v = out.vertices + torch.from_numpy(s["cam_Rt"][:, 3])
        scale = res * ss / float(s["crop_size"])
        a = np.array([[scale, 0, res * ss / 2 - scale * s["crop_center"][0]],
                      [0, scale, res * ss / 2 - scale * s["crop_center"][1]], [0, 0, 1]])
        k = torch.from_numpy(a @ s["cam_K"]).float()
        cover = rasterize(v, anny_body.faces, k[None], (res * ss, res * ss)).mask[0]
        expect = cover.float().reshape(res, ss, res, ss).mean((1, 3)).numpy() >= 0.5
        got = s["mask"] > 0
        assert set(np.unique(s["mask"])) <= {0, 255}
        n_diff += int((got != expect).sum())
        n_px += got.size
        inter, union = (got & expect).sum(), (got | expect).sum()
        assert inter / union > 0.98
        # The person fills a plausible part of its crop.
        assert 0.05 < got.mean() < 0.8
    assert n_diff / n_px < 2e-3


def test_same_seed_same_arrays_and_other_seed_differs(generated):
    for split in ("train", "test"):
        a = _arrays(generated["a"][0] / f"synthetic_{split}.h5")
        b = _arrays(generated["b"][0] / f"synthetic_{split}.h5")
        assert a.keys() == b.keys()
        for k in a:
            if a[k].dtype == object:
                assert all(np.array_equal(x, y) for x, y in zip(a[k], b[k], strict=True)), k
            else:
                assert np.array_equal(a[k], b[k]), k
        # With a fixed ``created`` attribute the files are byte-for-byte identical.
        assert (generated["a"][0] / f"synthetic_{split}.h5").read_bytes() == (
            generated["b"][0] / f"synthetic_{split}.h5").read_bytes()
    a = _arrays(generated["a"][0] / "synthetic_train.h5")
    c = _arrays(generated["c"][0] / "synthetic_train.h5")
    assert not (generated["c"][0] / "synthetic_test.h5").exists()
    assert not np.array_equal(a["keypoints_2d"], c["keypoints_2d"])
    assert not np.array_equal(a["cam_K"], c["cam_K"])
    assert not all(np.array_equal(x, y) for x, y in zip(a["image_jpeg"], c["image_jpeg"],
                                                       strict=True))


def test_self_occlusion_flags_front_and_back(anny_body):
    """The nose is visible from the front and hidden from behind; the far hip is hidden from
    the side."""
    renderer = CropRenderer(anny_body, 64, 2)
    with torch.no_grad():
        out = anny_body(anny_body.rest_rotmats(1), anny_body.mean_shape[None])
    ks, rts = [], []
    for pos in ([0, 0, 4.0], [0, 0, -4.0], [4.0, 0, 0]):  # front, back, left side
        r, t = look_at(np.array(pos, float), np.zeros(3))
        rts.append(np.concatenate([r, t[:, None]], 1))
        ks.append([[1145.0, 0, 500], [0, 1145.0, 501], [0, 0, 1]])
    res = renderer.render(out.vertices.expand(3, -1, -1), out.keypoints.expand(3, -1, -1),
                          torch.tensor(ks).float(), torch.tensor(np.array(rts)).float(),
                          (1000, 1002), torch.rand(3, 16, 16), [np.zeros((1002, 1000, 3),
                                                                         np.uint8)] * 3,
                          torch.tensor([0.0, 1.0, 0.0]), 0.4)
    nose, l_hip, r_hip = INDEX["nose"], INDEX["l_hip"], INDEX["r_hip"]
    assert res.visible[0, nose] == 1 and res.visible[1, nose] == 0
    assert res.visible[2, l_hip] == 1 and res.visible[2, r_hip] == 0
    assert res.visible[0, INDEX["l_knee"]] == 1 and res.visible[0, INDEX["r_knee"]] == 1
    # Background pixels of the crop are those of the (black) background.
    assert (res.images[0][res.masks[0] == 0] == 0).mean() > 0.9


def test_texture_layout_labels_every_texel(anny_body):
    layout = build_layout(anny_body, 64)
    assert layout.region.shape == (64, 64)
    assert set(np.unique(layout.region)) == set(range(len(REGIONS)))
    assert 0.4 < layout.surface.mean() < 0.9


def test_bad_poses_are_refused(anny_body, tmp_path):
    bad = PoseClips(np.tile(np.eye(3, dtype=np.float32), (2, 5, 1, 1)), np.array(["a", "a"]),
                    np.array([0, 1]))
    with pytest.raises(ValueError, match="joints"):
        synthesize(tmp_path, CONFIG, anny_body, bad)
    with pytest.raises(ValueError, match="one entry per pose"):
        PoseClips(bad.rotmats, np.array(["a"]), np.array([0, 1]))
    assert not list(tmp_path.iterdir())


def test_mask_png_round_trip(generated):
    with h5py.File(generated["a"][0] / "synthetic_train.h5", "r") as f:
        m = decode_png(f["mask_png"][0])
    assert m.shape == (64, 64) and m.dtype == np.uint8


def _write_mocap(path, poses, joint_names) -> None:
    """Write PoseClips through the mocap stage's own writer (the real file layout)."""
    from texturepose.mocap.poses import MocapClipPoses, write_mocap_h5

    clips = []
    for name in poses.clip_names():
        sel = poses.clip == name
        t = int(sel.sum())
        clips.append(MocapClipPoses(
            name=name, source="test", licence="CC0", skeleton="test", path=name, fps=30.0,
            sample_fps=10.0, frames=poses.frame[sel], rotmats=poses.rotmats[sel],
            shape=np.full(6, 0.5, np.float32), translation=np.zeros((t, 3), np.float32),
            fit_error_mm=np.zeros((t, 30), np.float32),
        ))
    write_mocap_h5(path, clips, body_model="anny", joint_names=tuple(joint_names))


def test_load_pose_clips(tmp_path):
    from texturepose.mocap.poses import MocapClipPoses, write_mocap_h5
    from texturepose.synthetic.generate import load_pose_clips

    def clip(name: str, t: int) -> MocapClipPoses:
        return MocapClipPoses(
            name=name, source="test", licence="CC0", skeleton="test", path=name, fps=30.0,
            sample_fps=10.0, frames=np.arange(t) * 3,
            rotmats=np.tile(np.eye(3, dtype=np.float32), (t, 24, 1, 1)),
            shape=np.full(6, 0.5, np.float32), translation=np.zeros((t, 3), np.float32),
            fit_error_mm=np.zeros((t, 30), np.float32),
        )

    path = tmp_path / "poses.h5"
    names = tuple(f"j{i}" for i in range(24))
    write_mocap_h5(path, [clip("walk", 2), clip("run", 1)], body_model="anny", joint_names=names)
    poses = load_pose_clips(path)
    assert poses.clip_names() == ["walk", "run"] and poses.licence == "CC0"
    assert poses.rotmats.shape == (3, 24, 3, 3)
    assert poses.frame.tolist() == [0, 3, 0]
    with pytest.raises(FileNotFoundError, match="mocap stage"):
        load_pose_clips(tmp_path / "absent.h5")


def test_stages_end_to_end(tmp_path, monkeypatch, anny_body):
    """stages/synthesize.py then stages/pairs.py on tiny params: files, metrics, contact sheet."""
    import json

    import pandas as pd

    import stages.pairs as pairs_stage
    import stages.synthesize as synth_stage

    params = {
        "seed": 1,
        "body": {"model": "anny"},
        "synthetic": {"subjects_train": 1, "subjects_test": 1, "clips_per_subject": 2,
                      "frames_per_clip": 2, "frame_step": 1, "cameras": 2, "crop_res": 64,
                      "texture_res": 64, "contact_sheet": 4},
        "pairs": {"datasets": ["synthetic_train"], "min_gap": 1, "max_gap": 5},
    }
    monkeypatch.setattr(synth_stage, "load_params", lambda: params)
    monkeypatch.setattr(synth_stage, "body_from_section", lambda *a, **k: anny_body)
    monkeypatch.setattr(pairs_stage, "load_params", lambda: params)
    poses = _poses(anny_body.num_joints)
    mocap = tmp_path / "anny_poses.h5"
    _write_mocap(mocap, poses, anny_body.joint_names)
    out, rep, pairs_dir = tmp_path / "processed", tmp_path / "reports", tmp_path / "pairs"
    counts = synth_stage.main(["--mocap", str(mocap), "--out-dir", str(out),
                               "--reports", str(rep)])
    assert counts["train"] == counts["test"] == 2 * 2 * 2
    metrics = json.loads((rep / "synthetic_metrics.json").read_text())
    assert metrics["images"] == 16 and metrics["images_per_second"] > 0
    sheet = rep / "figures" / "synthetic_contact_sheet.jpg"
    assert 0 < sheet.stat().st_size < 300_000
    pm = pairs_stage.main(["--in-dir", str(out), "--out-dir", str(pairs_dir),
                           "--reports", str(rep)])
    table = pd.read_parquet(pairs_dir / "synthetic_train.parquet")
    # 2 sequences x 2 frames x one camera pair; 2 sequences x 2 cameras x one frame pair.
    assert pm["datasets"]["synthetic_train"] == {"samples": 8, "multiview": 4, "temporal": 4}
    assert len(table) == 8
    assert json.loads((rep / "pairs_metrics.json").read_text())["datasets"] == pm["datasets"]
