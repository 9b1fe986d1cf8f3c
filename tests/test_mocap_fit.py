"""Fitting the body model to mocap joints: known-pose recovery, a genuine clip, the HDF5 file."""

from __future__ import annotations

import numpy as np
import pytest
import roma
import torch

from texturepose.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
from texturepose.keypoints import INDEX
from texturepose.mocap.fit import (
    FitConfig,
    fit_bvh_clip,
    fit_clips,
    fit_keypoints,
    kabsch,
    read_clip_targets,
    sample_frames,
    weighted_kabsch,
)
from texturepose.mocap.lm import KinematicKeypoints, open_keypoint_path
from texturepose.mocap.poses import MocapClipPoses, MocapFileError, read_mocap_h5, write_mocap_h5
from texturepose.mocap.skeletons import SKELETONS

#: The keypoints a BVH rig gives (the cgspeed map): what the fit sees in practice.
BVH_POINTS = sorted(SKELETONS[0].keypoints)


def _random_pose(body, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    aa = torch.randn(n, body.num_joints, 3, generator=g) * 0.25
    aa[:, 0] = torch.randn(n, 3, generator=g)  # any global orientation
    shape = 0.3 + 0.4 * torch.rand(body.num_shape, generator=g)
    return roma.rotvec_to_rotmat(aa), shape


def test_kabsch_recovers_a_rigid_motion():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(3, 6, 3, generator=g)
    r = roma.random_rotmat(3, generator=g)
    t = torch.randn(3, 3, generator=g)
    rr, tt = kabsch(src, src @ r.transpose(1, 2) + t[:, None])
    torch.testing.assert_close(rr, r, atol=1e-5, rtol=0)
    torch.testing.assert_close(tt, t, atol=1e-5, rtol=0)


def test_sample_frames():
    np.testing.assert_array_equal(sample_frames(100, 60, 10, 0), np.arange(1, 100, 6))
    f = sample_frames(1000, 120, 10, 5)
    assert len(f) == 5 and f[0] == 1 and f[-1] == 997


def test_fast_keypoints_match_the_full_model(anny_body):
    """AnnyKeypointPath (no skinning) against the full model: values and gradients, for one
    shape per sample, one shared shape and per-clip shapes picked by an index."""
    rot, shape = _random_pose(anny_body, 3, seed=2)
    shapes = torch.stack([shape, 1.0 - shape])
    index = torch.tensor([1, 0, 1])
    target = torch.randn(3, 30, 3, generator=torch.Generator().manual_seed(5)) * 0.1
    grads = []
    for fn in (lambda r, s: anny_body.keypoints(r, s, index),
               lambda r, s: anny_body(r, s[index]).keypoints):
        x = matrix_to_rot6d(rot).requires_grad_(True)
        s = shapes.clone().requires_grad_(True)
        kp = fn(rot6d_to_matrix(x), s)
        ((kp - target) ** 2).sum().backward()
        grads.append((kp.detach(), x.grad, s.grad))
    (kp_f, gx_f, gs_f), (kp_m, gx_m, gs_m) = grads
    torch.testing.assert_close(kp_f, kp_m, atol=1e-4, rtol=0)
    torch.testing.assert_close(gx_f, gx_m, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(gs_f, gs_m, atol=2e-3, rtol=1e-3)
    with torch.no_grad():  # a shared (S,) shape and per-sample (B, S) shapes agree too
        torch.testing.assert_close(anny_body.keypoints(rot, shape.expand(3, -1)),
                                   anny_body(rot, shape.expand(3, -1)).keypoints, atol=1e-4,
                                   rtol=0)
        torch.testing.assert_close(anny_body._keypoint_path(rot, shape),
                                   anny_body(rot, shape.expand(3, -1)).keypoints, atol=1e-4,
                                   rtol=0)


def test_weighted_kabsch_ignores_zero_weight_points():
    g = torch.Generator().manual_seed(1)
    src = torch.randn(2, 6, 3, generator=g)
    r = roma.random_rotmat(2)
    dst = src @ r.transpose(1, 2) + torch.tensor([0.3, -1.0, 2.0])
    dst[:, -1] += 5.0  # an outlier, weighted out
    w = torch.ones(2, 6)
    w[:, -1] = 0.0
    rr, tt = weighted_kabsch(src, dst, w)
    torch.testing.assert_close(rr, r, atol=1e-5, rtol=0)
    torch.testing.assert_close(tt, torch.tensor([0.3, -1.0, 2.0]).expand(2, 3), atol=1e-5,
                               rtol=0)


def test_batched_fit_recovers_two_clips_with_their_own_shapes(anny_body):
    """The batched method fits every clip at once, one shape each, as well as clip by clip."""
    mask = np.zeros(30, bool)
    mask[[INDEX[n] for n in BVH_POINTS]] = True
    clips, shapes = [], []
    for seed in (3, 4):
        rot, shape = _random_pose(anny_body, 3, seed=seed)
        with torch.no_grad():
            kp = anny_body(rot, shape.expand(3, -1)).keypoints + torch.tensor([0.5, 0.95, -2.0])
        clips.append(kp.numpy())
        shapes.append(shape)
    cfg = FitConfig(method="batched", iters_shape=60, iters=250)
    batched = fit_clips(anny_body, clips, [mask, mask], cfg)
    one_by_one = fit_clips(anny_body, clips, [mask, mask], FitConfig(method="clip",
                                                                     iters_shape=60, iters=250))
    for res, ref in zip(batched, one_by_one, strict=True):
        assert res.rotmats.shape == (3, anny_body.num_joints, 3, 3)
        assert res.summary()["mean_mm"] < 6.0, res.summary()
        assert res.summary()["mean_mm"] < ref.summary()["mean_mm"] + 2.0
    assert not np.allclose(batched[0].shape, batched[1].shape, atol=1e-3)
    with pytest.raises(ValueError, match="too few keypoints"):
        fit_clips(anny_body, clips[:1], [np.zeros(30, bool)], cfg)


def test_lm_jacobian_matches_autograd(anny_body):
    """The ``lm`` method's analytic keypoint Jacobian (left rotation-vector updates of every
    joint) against autograd through the keypoint path, per-clip shapes picked by an index."""
    rot, shape = _random_pose(anny_body, 3, seed=6)
    shapes = torch.stack([shape, 1.0 - shape])
    index = torch.tensor([0, 1, 1])
    kin = KinematicKeypoints(open_keypoint_path(anny_body), shapes)
    kp, state = kin.forward(rot, index)
    with torch.no_grad():
        torch.testing.assert_close(kp, anny_body.keypoints(rot, shapes, index), atol=1e-5,
                                   rtol=0)
    jac = kin.jacobian(state, torch.arange(30))  # (B, K, 3, J, 3)

    def keypoints(e: torch.Tensor) -> torch.Tensor:
        return anny_body.keypoints(roma.rotvec_to_rotmat(e) @ rot, shapes, index)

    full = torch.autograd.functional.jacobian(keypoints, torch.zeros(3, anny_body.num_joints, 3))
    expect = torch.stack([full[b, :, :, b] for b in range(3)])  # frames are independent
    torch.testing.assert_close(jac, expect, atol=1e-4, rtol=1e-3)


def test_lm_fits_a_genuine_clip_as_well_as_batched(anny_body):
    """On an embedded CMU clip, the default ``lm`` method reaches the fit error of the older
    batched L-BFGS (on the same frames) with far fewer iterations."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "assets/mocap/cmu/cmu_02_03.bvh.gz"
    targets, mask, _ = read_clip_targets(path, 10.0, 6)
    old = fit_clips(anny_body, [targets], [mask], FitConfig(method="batched", iters_shape=40,
                                                            shape_frames=4, iters=200))[0]
    new = fit_clips(anny_body, [targets], [mask], FitConfig(method="lm", iters_shape=40,
                                                            shape_frames=4, iters=30))[0]
    s_old, s_new = old.summary(), new.summary()
    assert s_new["mean_mm"] < 25.0, s_new  # rig pivots vs Anny's joint centres: ~1-2 cm
    assert s_new["mean_mm"] <= s_old["mean_mm"] + 0.5, (s_new, s_old)
    assert s_new["p95_mm"] <= s_old["p95_mm"] + 1.0, (s_new, s_old)
    assert new.rotmats.shape == (len(targets), anny_body.num_joints, 3, 3)
    np.testing.assert_allclose(new.rotmats @ new.rotmats.swapaxes(-1, -2),
                               np.broadcast_to(np.eye(3), new.rotmats.shape), atol=1e-4)


@pytest.mark.parametrize("method, iters_shape, iters", [("lm", 100, 30), ("batched", 50, 200)])
def test_fit_recovers_a_known_pose(anny_body, method, iters_shape, iters):
    """Pose the body, keep only the keypoints a BVH rig gives, add a translation, fit back
    (the default lm method with params.yaml's iterations, and the older batched L-BFGS)."""
    torch.manual_seed(0)
    rot, shape = _random_pose(anny_body, 2, seed=3)
    with torch.no_grad():
        kp = anny_body(rot, shape.expand(2, -1)).keypoints + torch.tensor([0.5, 0.95, -2.0])
    mask = np.zeros(kp.shape[1], bool)
    mask[[INDEX[n] for n in BVH_POINTS]] = True
    res = fit_keypoints(anny_body, kp.numpy(), mask,
                        FitConfig(method=method, iters_shape=iters_shape, iters=iters))
    s = res.summary()
    assert s["mean_mm"] < 5.0, s
    assert s["p95_mm"] < 15.0, s
    assert np.isnan(res.errors_mm[:, ~res.mask]).all()
    # The shape is found from 2 frames up to what the rig's points cannot tell apart; the fitted
    # body must at least reproduce the true one's bone lengths (thigh, shin, upper arm).
    with torch.no_grad():
        fitted = anny_body(rot, torch.from_numpy(res.shape).expand(2, -1)).keypoints
    for a, b in (("l_hip", "l_knee"), ("l_knee", "l_ankle"), ("l_shoulder", "l_elbow")):
        ia, ib = INDEX[a], INDEX[b]
        true_len = (kp[:, ia] - kp[:, ib]).norm(dim=-1)
        fit_len = (fitted[:, ia] - fitted[:, ib]).norm(dim=-1)
        assert float((true_len - fit_len).abs().max()) < 0.01, (a, b)


def test_genuine_clip_fits(anny_body, shared_data):
    path = shared_data / "mocap/cmu/iclone_cc_rig/cmu_02_03.bvh"  # run/jog, CC rig
    res, info = fit_bvh_clip(path, anny_body, target_fps=10, max_frames=3,
                             config=FitConfig(iters_shape=30, iters=80))  # fmt: skip
    assert info["skeleton"] == "character_creator"
    assert len(info["frames"]) == 3 and res.rotmats.shape == (3, anny_body.num_joints, 3, 3)
    s = res.summary()
    # BVH pivots are not Anny's joint centres (e.g. CC's thigh pivot vs Anny's hip): centimetres.
    assert s["mean_mm"] < 40.0, s
    lo, hi = 0.0, 1.0
    assert ((res.shape >= lo) & (res.shape <= hi)).all()


def test_mocap_h5_roundtrip(tmp_path):
    rng = np.random.default_rng(0)

    def clip(name: str, n: int) -> MocapClipPoses:
        return MocapClipPoses(
            name=name, source="bandai-namco-1", licence="CC BY-NC 4.0 (non-commercial)",
            skeleton="bandai_namco", path=f"x/{name}.bvh", fps=30.0, sample_fps=10.0,
            frames=np.arange(n) * 3 + 1,
            rotmats=roma.random_rotmat(n * 2).reshape(n, 2, 3, 3).numpy(),
            shape=rng.random(6).astype(np.float32), translation=rng.random((n, 3)),
            fit_error_mm=rng.random((n, 30)).astype(np.float32),
        )  # fmt: skip

    clips = [clip("a", 3), clip("b", 2)]
    path = tmp_path / "m.h5"
    write_mocap_h5(path, clips, body_model="anny", joint_names=("root", "x"))
    data = read_mocap_h5(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.h5"]  # no temporary left
    np.testing.assert_allclose(data["rotmats"][3:], clips[1].rotmats, atol=1e-6)
    assert list(data["clip_name"]) == ["a", "a", "a", "b", "b"]
    np.testing.assert_array_equal(data["frame"], [1, 4, 7, 1, 4])
    np.testing.assert_allclose(data["shape"][4], clips[1].shape)
    assert data["clips"]["licence"][0].startswith("CC BY-NC")
    assert data["joint_names"] == ("root", "x")
    with pytest.raises(MocapFileError, match="rotmats"):
        write_mocap_h5(tmp_path / "bad.h5", clips, body_model="anny", joint_names=("root",))
    assert not (tmp_path / "bad.h5").exists()
    (tmp_path / "trunc.h5").write_bytes(path.read_bytes()[:500])
    with pytest.raises(MocapFileError, match="rerun the mocap stage"):
        read_mocap_h5(tmp_path / "trunc.h5")


def test_smpl_npz_poses(shared_data):
    from texturepose.mocap.poses import smpl_poses_from_npz

    path = shared_data / "mmpose-samples/mosh/test_mosh.npz"
    rot, betas, _ = smpl_poses_from_npz(path, "smpl", 24, 10)
    raw = np.load(path)["pose"].reshape(-1, 24, 3)
    assert rot.shape == (len(raw), 24, 3, 3) and betas.shape == (len(raw), 10)
    expect = roma.rotvec_to_rotmat(torch.from_numpy(raw)).numpy()  # independent conversion
    np.testing.assert_allclose(rot, expect, atol=1e-5)  # MoSh layout: no frame change
    with pytest.raises(NotImplementedError, match="SMPL model file"):
        smpl_poses_from_npz(path, "anny", 24, 6)


def test_stage_skips_bad_clips_and_reports(shared_data, tmp_path, anny_body, monkeypatch):
    """The stage end to end on one genuine clip, one truncated and one unknown-skeleton file."""
    import json

    import yaml

    import stages.mocap as stage
    from texturepose import body as body_pkg

    bad = tmp_path / "bad"
    bad.mkdir()
    text = (shared_data / "mocap/bandai-namco-1/data/dataset-1_bow_active_001.bvh").read_text()
    (bad / "truncated.bvh").write_text(text[: len(text) // 2])
    (bad / "unknown.bvh").write_text(
        "HIERARCHY\nROOT a\n{\n OFFSET 0 0 0\n CHANNELS 3 Xrotation Yrotation Zrotation\n"
        " End Site\n {\n  OFFSET 0 1 0\n }\n}\nMOTION\nFrames: 1\nFrame Time: 0.1\n0 0 0\n"
    )
    params = {
        "seed": 0,
        "body": {"model": "anny"},
        "mocap": {
            "sources": [
                {"name": "cmu", "licence": "CMU terms",
                 "glob": str(shared_data / "mocap/cmu/iclone_cc_rig/cmu_02_03.bvh")},
                {"name": "bad", "licence": "none", "glob": str(bad / "*.bvh")},
            ],
            "fps": 10, "max_frames_per_clip": 2,
            "out": str(tmp_path / "anny_poses.h5"),
            "metrics": str(tmp_path / "metrics.json"),
            "fit": {"iters_shape": 10, "shape_frames": 2, "iters": 20},
        },
    }  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(body_pkg, "build_body_model", lambda *a, **k: anny_body)
    stage.main(["--params", str(tmp_path / "params.yaml")])
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["clips_used"] == 1 and m["clips_skipped"] == 2
    assert m["skipped_by_reason"] == {"BvhError": 1, "UnknownSkeletonError": 1}
    assert m["frames"] == 2 and m["fit_error_mean_mm"] > 0
    data = read_mocap_h5(tmp_path / "anny_poses.h5")
    assert data["rotmats"].shape == (2, anny_body.num_joints, 3, 3)
    assert list(data["clips"]["licence"]) == ["CMU terms"]
