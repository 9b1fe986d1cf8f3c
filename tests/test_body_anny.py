"""Anny wrapper: conventions and agreement with Anny's own forward."""

import numpy as np
import pytest
import torch

from texturepose.keypoints import INDEX


def test_rest_pose_equals_anny_native_output(anny_body):
    b = 2
    shape = torch.rand(b, anny_body.num_shape)
    ours = anny_body(anny_body.rest_rotmats(b), shape)
    native = anny_body.native(None, shape)["vertices"]  # Anny's own call, its own frame
    expected = native @ anny_body.to_canonical.T
    assert ours.vertices.dtype == torch.float32
    assert ours.vertices.shape == (b, anny_body.num_vertices, 3)
    torch.testing.assert_close(ours.vertices, expected, atol=1e-5, rtol=0)


def test_canonical_frame_is_y_up_facing_z_left_at_plus_x(anny_body):
    out = anny_body(anny_body.rest_rotmats(1), anny_body.mean_shape[None])
    k = out.keypoints[0]
    assert k[INDEX["head_top"], 1] > k[INDEX["pelvis"], 1] > k[INDEX["l_ankle"], 1]  # Y up
    assert k[INDEX["nose"], 2] > k[INDEX["head"], 2] - 0.05  # face towards +Z
    assert k[INDEX["l_big_toe"], 2] > k[INDEX["l_heel"], 2]  # feet point to +Z
    assert k[INDEX["l_shoulder"], 0] > 0 > k[INDEX["r_shoulder"], 0]  # left at +X


def test_global_orientation_rotates_the_whole_body(anny_body):
    rot = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # 90 deg about Y
    pose = anny_body.rest_rotmats(1)
    shape = anny_body.mean_shape[None]
    rest = anny_body(pose, shape).vertices[0]
    pose[0, 0] = rot
    turned = anny_body(pose, shape).vertices[0]
    torch.testing.assert_close(turned, rest @ rot.T, atol=1e-4, rtol=0)


def test_mirrored_pose_gives_mirrored_keypoints(anny_body):
    from texturepose.keypoints import FLIP_PERMUTATION

    g = torch.Generator().manual_seed(1)
    import roma

    pose = roma.rotvec_to_rotmat(0.3 * torch.randn(1, anny_body.num_joints, 3, generator=g))
    shape = anny_body.mean_shape[None]
    kp = anny_body(pose, shape).keypoints[0]
    kp_m = anny_body(anny_body.flip_pose(pose), shape).keypoints[0]
    mirrored = kp[torch.as_tensor(FLIP_PERMUTATION)] * torch.tensor([-1.0, 1.0, 1.0])
    # Anny's mesh is nearly but not exactly symmetric: a centimetre is the tolerance.
    assert (kp_m - mirrored).norm(dim=-1).max() < 0.02


def test_keypoint_regressors_are_convex_combinations(anny_body):
    w = anny_body.keypoint_weights.numpy()
    assert np.all(w >= -1e-6)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-4)
    assert anny_body.keypoint_mask.all()


def test_faces_uvs_and_parts_are_consistent(anny_body):
    f = anny_body.faces
    assert f.min() >= 0 and f.max() < anny_body.num_vertices
    assert anny_body.face_uv.shape == f.shape
    assert 0 <= anny_body.uv.min() and anny_body.uv.max() <= 1
    parts = anny_body.face_parts
    assert parts.shape == (f.shape[0],)
    assert set(parts.unique().tolist()) == set(range(len(anny_body.part_names)))


def _random_pose(body, batch: int, seed: int) -> torch.Tensor:
    import roma

    g = torch.Generator().manual_seed(seed)
    return roma.rotvec_to_rotmat(torch.randn(batch, body.num_joints, 3, generator=g) * 0.5)


def test_fast_keypoint_path_matches_the_full_model_and_its_gradients(anny_body):
    # Oracle: the full skinned mesh regressed to keypoints (the model's own forward).
    rot = _random_pose(anny_body, 3, 0).requires_grad_(True)
    shape = anny_body.sample_shapes(3, seed=1).requires_grad_(True)
    fast = anny_body.keypoints(rot, shape)
    full = anny_body(rot, shape).keypoints
    torch.testing.assert_close(fast, full, atol=1e-4, rtol=0)  # 0.1 mm: float32 noise
    w = torch.randn_like(full)
    g_fast = torch.autograd.grad((fast * w).sum(), (rot, shape))
    g_full = torch.autograd.grad((full * w).sum(), (rot, shape))
    for a, b in zip(g_fast, g_full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_fast_keypoint_path_indexes_shared_shapes(anny_body):
    rot = _random_pose(anny_body, 4, 2)
    shapes = anny_body.sample_shapes(2, seed=3)
    index = torch.tensor([1, 0, 1, 1])
    torch.testing.assert_close(anny_body.keypoints(rot, shapes, index),
                               anny_body(rot, shapes[index]).keypoints, atol=1e-4, rtol=0)


def test_sampled_shapes_are_seeded_bounded_and_varied(anny_body):
    a, b = anny_body.sample_shapes(64, seed=5), anny_body.sample_shapes(64, seed=5)
    torch.testing.assert_close(a, b)
    assert a.shape == (64, anny_body.num_shape)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0  # Anny phenotypes live in [0, 1]
    assert float(a.std(0).max()) > 0.05  # a population, not one body
    heights = anny_body(anny_body.rest_rotmats(64), a).vertices[..., 1]
    span = heights.amax(1) - heights.amin(1)
    assert 1.3 < float(span.min()) and float(span.max()) < 2.2, span  # adult statures (m)


def test_fast_keypoint_path_falls_back_to_the_full_model_when_its_check_fails(
        anny_body, monkeypatch, caplog):
    import texturepose.body.anny_model as am

    saved = anny_body.fast_keypoints, anny_body._keypoint_path
    monkeypatch.setattr(am, "FAST_KEYPOINT_TOLERANCE", -1.0)  # no path can pass
    anny_body.fast_keypoints, anny_body._keypoint_path = None, None
    try:
        rot = _random_pose(anny_body, 2, 4)
        shape = anny_body.sample_shapes(2, seed=6)
        got = anny_body.keypoints(rot, shape)
        assert anny_body.fast_keypoints is False and "using the full model" in caplog.text
        torch.testing.assert_close(got, anny_body(rot, shape).keypoints)
    finally:
        anny_body.fast_keypoints, anny_body._keypoint_path = saved


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message only exists without CUDA")
def test_building_anny_on_a_cpu_machine_prints_no_cuda_driver_warning(tmp_path):
    """Warp's native "could not load the CUDA driver" line is silenced on CPU machines, and
    stderr works again afterwards (Python's and the file descriptor's)."""
    import os
    import subprocess
    import sys

    code = ("import os, sys\n"
            "from texturepose.body import body_from_section\n"
            "body_from_section({'model': 'anny'}, None)\n"
            "print('after-python', file=sys.stderr, flush=True)\n"
            "os.write(2, b'after-fd\\n')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Warp CUDA warning" not in out.stderr and "Warp CUDA warning" not in out.stdout
    assert "after-python" in out.stderr and "after-fd" in out.stderr
