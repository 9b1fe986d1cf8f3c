"""Metrics against closed forms and against an independent Procrustes (scipy's Kabsch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from texturepose.evaluation import metrics as M
from texturepose.keypoints import INDEX, NUM_KEYPOINTS


def random_similarity(rng: np.random.Generator, b: int):
    r = Rotation.random(b, random_state=int(rng.integers(1 << 31))).as_matrix()
    return rng.uniform(0.3, 3.0, b), r, rng.normal(size=(b, 3))


def scipy_procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Independent oracle: scipy's Kabsch rotation (proper, det +1) on centred points, then the
    least-squares scale given that rotation."""
    out = np.empty_like(x)
    for b in range(len(x)):
        x0, y0 = x[b] - x[b].mean(0), y[b] - y[b].mean(0)
        rot, _ = Rotation.align_vectors(y0, x0)
        xr = rot.apply(x0)
        s = (xr * y0).sum() / (x0**2).sum()
        out[b] = s * xr + y[b].mean(0)
    return out


def test_identical_is_zero():
    x = np.random.default_rng(0).normal(size=(4, 17, 3))
    assert np.allclose(M.mpjpe(x, x), 0)
    assert np.allclose(M.pa_mpjpe(x, x), 0, atol=1e-9)
    assert np.allclose(M.pve(x, x), 0)


def test_known_offsets_give_known_mpjpe():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(3, 5, 3))
    # Joint j moved by (j+1) cm along a random direction: MPJPE = mean(10, 20, ..., 50) mm.
    d = rng.normal(size=(3, 5, 3))
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    pred = gt + d * (np.arange(1, 6) * 0.01)[None, :, None]
    assert np.allclose(M.joint_errors(pred, gt), np.arange(10, 60, 10)[None].repeat(3, 0))
    assert np.allclose(M.mpjpe(pred, gt), 30.0)
    # Masking the 50 mm joint of sample 0 leaves mean(10..40) = 25 there.
    mask = np.ones((3, 5))
    mask[0, 4] = 0
    assert np.allclose(M.mpjpe(pred, gt, mask), [25.0, 30.0, 30.0])
    assert np.isnan(M.joint_errors(pred, gt, mask)[0, 4])


def test_pure_similarity_has_zero_pa_error_and_is_recovered():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 14, 3))
    s, r, t = random_similarity(rng, 6)
    y = M.apply_similarity(x, s, r, t)
    assert M.mpjpe(x, y).min() > 1.0  # clearly misaligned before Procrustes
    assert np.allclose(M.pa_mpjpe(x, y), 0, atol=1e-8)
    s2, r2, t2 = M.similarity_transform(x, y)
    assert np.allclose(s2, s) and np.allclose(r2, r) and np.allclose(t2, t)


def test_scale_only_closed_form():
    x = np.random.default_rng(3).normal(size=(2, 10, 3))
    x -= x.mean(1, keepdims=True)
    y = 2.0 * x  # centred: the root-free MPJPE is the mean point norm
    assert np.allclose(M.mpjpe(x, y), 1000 * np.linalg.norm(x, axis=-1).mean(1))
    assert np.allclose(M.similarity_transform(x, y)[0], 2.0)
    assert np.allclose(M.pa_mpjpe(x, y), 0, atol=1e-9)


def test_reflection_is_not_undone():
    mirror = np.diag([-1.0, 1.0, 1.0])
    # A chiral tetrahedron: its mirror image is no rotation of it, so some error must remain.
    tet = np.array([[[0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3]]], float)
    s, r, _ = M.similarity_transform(tet, tet @ mirror)
    assert np.isclose(np.linalg.det(r[0]), 1.0)
    assert M.pa_mpjpe(tet, tet @ mirror)[0] > 100
    # A planar set's mirror image IS a rotation of it (180 deg about y), so PA error is 0.
    flat = np.array([[[0, 0, 0], [1, 0, 0], [0, 2, 0], [3, 1, 0]]], float)
    assert np.allclose(M.pa_mpjpe(flat, flat @ mirror), 0, atol=1e-9)


def test_matches_scipy_on_noisy_and_mirrored_data():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 17, 3))
    s, r, t = random_similarity(rng, 8)
    y = M.apply_similarity(x, s, r, t) + rng.normal(scale=0.3, size=x.shape)
    y[::2] = y[::2] @ np.diag([-1.0, 1.0, 1.0])  # half of them mirrored
    ours = M.similarity_procrustes(x, y)
    assert np.allclose(ours, scipy_procrustes(x, y), atol=1e-8)
    assert np.allclose(np.linalg.det(M.similarity_transform(x, y)[1]), 1.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(3, 30))
def test_random_similarities_recovered(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, n, 3))
    s, r, t = random_similarity(rng, 2)
    y = M.apply_similarity(x, s, r, t)
    s2, r2, t2 = M.similarity_transform(x, y)
    assert np.allclose(s2, s, rtol=1e-7)
    assert np.allclose(r2, r, atol=1e-7)
    assert np.allclose(t2, t, atol=1e-7)


def test_weights_ignore_points():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 12, 3))
    s, r, t = random_similarity(rng, 3)
    y = M.apply_similarity(x, s, r, t)
    y[:, 0] += 50.0  # a wild point that zero weight must ignore
    w = np.ones((3, 12))
    w[:, 0] = 0
    s2, r2, _ = M.similarity_transform(x, y, w)
    assert np.allclose(s2, s) and np.allclose(r2, r)
    pa = M.pa_joint_errors(x, y, w)
    assert np.isnan(pa[:, 0]).all() and np.allclose(pa[:, 1:], 0, atol=1e-8)


def test_torch_matches_numpy_and_is_differentiable():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(4, 17, 3)), rng.normal(size=(4, 17, 3))
    xt = torch.tensor(x, requires_grad=True)
    aligned = M.similarity_procrustes(xt, torch.tensor(y))
    assert isinstance(aligned, torch.Tensor)
    assert np.allclose(aligned.detach().numpy(), M.similarity_procrustes(x, y), atol=1e-10)
    (aligned - torch.tensor(y)).norm(dim=-1).mean().backward()
    assert torch.isfinite(xt.grad).all() and xt.grad.abs().sum() > 0
    f32 = M.similarity_procrustes(xt.detach().float(), torch.tensor(y).float())
    assert f32.dtype == torch.float32


def test_pve_translation():
    v = np.random.default_rng(7).normal(size=(2, 100, 3))
    assert np.allclose(M.pve(v + np.array([0.003, 0.004, 0.0]), v), 5.0)


def test_root_conventions():
    names = ["pelvis", "r_hip", "l_hip", "head"]
    j = np.array([[[0, 1, 0], [1, 0, 0], [-1, 2, 0], [0, 5, 0]]], float)
    aligned, ok = M.align_root(j, "pelvis", names)
    assert np.allclose(aligned[0, 0], 0) and ok.all()
    aligned, _ = M.align_root(j, "mid_hip", names)
    assert np.allclose(aligned[0, 3], [0, 4, 0])  # mid-hip (0, 1, 0)
    _, ok = M.align_root(j, "mid_hip", names, mask=np.array([[1, 1, 0, 1]]))
    assert not ok[0]
    with pytest.raises(KeyError, match="root point"):
        M.align_root(j, "pelvis", ["r_hip", "l_hip", "a", "b"])


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="same shape"):
        M.mpjpe(np.zeros((2, 3, 3)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\)"):
        M.mpjpe(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), np.ones((3, 2)))


def _pck_sample() -> tuple[np.ndarray, np.ndarray]:
    """One superset 2D skeleton with both torso diagonals 100 px long."""
    gt = np.zeros((1, NUM_KEYPOINTS, 2))
    gt[0, INDEX["l_shoulder"]] = [60, 0]
    gt[0, INDEX["r_shoulder"]] = [0, 0]
    gt[0, INDEX["l_hip"]] = [60, 80]
    gt[0, INDEX["r_hip"]] = [0, 80]
    vis = np.zeros((1, NUM_KEYPOINTS))
    for n in ("l_shoulder", "r_shoulder", "l_hip", "r_hip", "r_wrist", "l_wrist", "head_top"):
        vis[0, INDEX[n]] = 1
    return gt, vis


def test_pck_torso_closed_form():
    gt, vis = _pck_sample()
    assert np.allclose(M.torso_size(gt, vis), 100.0)
    pred = gt.copy()
    pred[0, INDEX["r_wrist"]] += [5, 0]  # 0.05 torso
    pred[0, INDEX["l_wrist"]] += [0, 15]  # 0.15
    pred[0, INDEX["head_top"]] += [30, 0]  # 0.3
    pred[0, INDEX["nose"]] += [500, 0]  # invisible: must not count
    pck = M.pck_2d(pred, gt, vis, thresholds=(0.01, 0.1, 0.2, 0.5))
    assert np.allclose(pck, np.array([4, 5, 6, 7]) / 7)  # the 4 exact torso points always hit
    lsp = M.pck_2d(pred, gt, vis, (0.1,), joints=[INDEX["r_wrist"], INDEX["l_wrist"]])
    assert np.allclose(lsp, [0.5])
    # One diagonal hidden: the other one (also 100 px) is the size.
    vis2 = vis.copy()
    vis2[0, INDEX["l_hip"]] = 0
    assert np.allclose(M.torso_size(gt, vis2), 100.0)
    vis2[0, INDEX["r_hip"]] = 0
    assert np.isnan(M.torso_size(gt, vis2)).all()


def test_pck_box_norm():
    gt, vis = _pck_sample()
    pred = gt.copy()
    pred[0, INDEX["r_wrist"]] += [15, 0]  # 0.075 of a 200 px box
    hits = M.pck_hits(pred, gt, vis, (0.05, 0.1), norm="box", boxes=np.array([[0, 0, 200, 150]]))
    assert hits[0, 0, INDEX["r_wrist"]] == 0 and hits[1, 0, INDEX["r_wrist"]] == 1
    assert np.isnan(hits[0, 0, INDEX["nose"]])
    same = M.pck_hits(pred, gt, vis, (0.05, 0.1), norm="box", boxes=np.array([200.0]))
    assert np.array_equal(np.isnan(same), np.isnan(hits)) and np.nansum(same) == np.nansum(hits)
    # Without boxes: the visible keypoints' tight box, 60 x 80 -> 80 px; 15 px is 0.1875.
    tight = M.pck_hits(pred, gt, vis, (0.18, 0.19), norm="box")
    assert tight[0, 0, INDEX["r_wrist"]] == 0 and tight[1, 0, INDEX["r_wrist"]] == 1
    with pytest.raises(ValueError, match="norm must be"):
        M.pck_hits(pred, gt, vis, (0.1,), norm="head")
    with pytest.raises(ValueError, match="boxes must have shape"):
        M.pck_hits(pred, gt, vis, (0.1,), norm="box", boxes=np.zeros((1, 3)))


def _oracle_spread(x: np.ndarray, iterations: int = 3) -> float:
    """Generalised Procrustes with scipy's Kabsch (scipy_procrustes above), then the mean
    distance to the average, in mm."""
    target = np.sqrt(((x - x.mean(1, keepdims=True)) ** 2).sum(-1).mean(-1)).mean()
    mean = x[0]
    for _ in range(iterations):
        aligned = scipy_procrustes(x, np.broadcast_to(mean, x.shape).copy())
        mean = aligned.mean(0)
        mean = mean * target / np.sqrt(((mean - mean.mean(0)) ** 2).sum(-1).mean())
    aligned = scipy_procrustes(x, np.broadcast_to(mean, x.shape).copy())
    return float(np.linalg.norm(aligned - mean, axis=-1).mean() * 1000.0)


def test_pose_spread_ignores_each_poses_orientation_position_and_size():
    rng = np.random.default_rng(3)
    pose = rng.normal(size=(17, 3)) * 0.3
    s, r, t = random_similarity(rng, 32)
    one_pose = M.apply_similarity(np.broadcast_to(pose, (32, 17, 3)), s, r, t)
    assert M.pose_spread(one_pose) < 1e-6  # one pose, any orientation, position and size
    poses = pose + rng.normal(size=(32, 17, 3)) * 0.05
    moved = M.apply_similarity(poses, np.ones(32), r, t)
    assert M.pose_spread(moved) == pytest.approx(M.pose_spread(poses), rel=1e-6)
    assert M.pose_spread(2.0 * poses) == pytest.approx(2.0 * M.pose_spread(poses), rel=1e-6)


def test_pose_spread_matches_generalised_procrustes_with_scipy():
    rng = np.random.default_rng(4)
    poses = rng.normal(size=(17, 3)) * 0.3 + rng.normal(size=(24, 17, 3)) * 0.08
    assert M.pose_spread(poses) == pytest.approx(_oracle_spread(poses), rel=1e-6)


def test_pose_spread_grows_with_the_deviations_and_ignores_masked_joints():
    rng = np.random.default_rng(5)
    mean, dev = rng.normal(size=(17, 3)) * 0.3, rng.normal(size=(24, 17, 3)) * 0.01
    assert M.pose_spread(mean + 0.5 * dev) / M.pose_spread(mean + dev) == pytest.approx(0.5,
                                                                                        rel=0.02)
    wild = mean + dev
    wild[:, 3] += rng.normal(size=(24, 3)) * 2.0  # one joint everywhere
    mask = np.ones((24, 17))
    mask[:, 3] = 0
    assert M.pose_spread(wild, mask) == pytest.approx(M.pose_spread(np.delete(wild, 3, 1)),
                                                      rel=1e-6)


def test_summarise_reports_the_spread_of_predictions_against_the_truth():
    from texturepose.evaluation.evaluate import summarise

    rng = np.random.default_rng(6)
    gt = rng.normal(size=(NUM_KEYPOINTS, 3)) * 0.3 + rng.normal(size=(16, NUM_KEYPOINTS, 3)) * 0.05
    same = summarise(gt, gt).metrics
    assert same["pose_spread_vs_gt"] == pytest.approx(1.0)
    assert same["gt_pose_spread"] > 10.0
    one = summarise(np.broadcast_to(gt[0], gt.shape).copy(), gt).metrics
    assert one["pose_spread"] < 1e-6 and one["pose_spread_vs_gt"] < 1e-6
