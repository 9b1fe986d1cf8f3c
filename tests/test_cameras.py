"""Cameras against closed forms and OpenCV's projectPoints (an independent implementation)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import roma
import torch

from texturepose.geometry.cameras import (
    BODY_TO_CAMERA,
    batched_intrinsics,
    camera_to_world,
    crop_focal,
    crop_perspective_project,
    intrinsics,
    perspective_vertices,
    pixel_rays,
    project,
    weak_to_perspective_translation,
    world_to_camera,
)


def test_weak_perspective_matches_perspective_at_depth_zero():
    g = torch.Generator().manual_seed(0)
    cam = torch.rand(5, 3, generator=g) * torch.tensor([1.0, 0.4, 0.4]) + torch.tensor(
        [0.5, -0.2, -0.2]
    )
    pts = torch.rand(5, 7, 3, generator=g) - 0.5
    pts[..., 2] = 0.0
    t = weak_to_perspective_translation(cam, focal=5000.0, res=224)
    assert torch.allclose(t[:, 2], 2 * 5000.0 / (224 * cam[:, 0]))
    uv = project(pts + t[:, None], batched_intrinsics(5000.0, 224, 5))
    # SPIN weak perspective: normalised coords s (X + t), crop spans [-1, 1].
    weak = (cam[:, None, :1] * (pts[..., :2] + cam[:, None, 1:]) + 1) * 224 / 2
    assert torch.allclose(uv, weak, atol=1e-3)


def test_weak_perspective_rejects_bad_shape_and_zero_scale():
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        weak_to_perspective_translation(torch.zeros(3))
    t = weak_to_perspective_translation(torch.zeros(1, 3))
    assert torch.isfinite(t).all()


def test_project_and_extrinsics_match_opencv():
    rng = np.random.default_rng(1)
    pts = rng.uniform(-1, 1, (50, 3))
    rvec = rng.normal(size=3) * 0.5
    tvec = np.array([0.1, -0.2, 5.0])
    K = intrinsics((900.0, 850.0), (320, 240), cx=170.0, cy=110.0, dtype=torch.float64)
    ref, _ = cv2.projectPoints(pts, rvec, tvec, K.numpy(), None)
    R = roma.rotvec_to_rotmat(torch.from_numpy(rvec))[None]
    cam = world_to_camera(torch.from_numpy(pts)[None], R, torch.from_numpy(tvec)[None])
    uv = project(cam, K)
    assert np.allclose(uv[0].numpy(), ref[:, 0], atol=1e-6)
    back = camera_to_world(cam, R, torch.from_numpy(tvec)[None])
    assert np.allclose(back[0].numpy(), pts, atol=1e-9)


def test_intrinsics_defaults_and_rays_invert_projection():
    K = intrinsics(5000.0, 224)
    assert K[0, 2] == 112 and K[1, 2] == 112 and K[0, 0] == 5000 and K[2, 2] == 1
    Kb = batched_intrinsics(torch.tensor([500.0, 600.0]), (64, 48), 2)
    assert Kb.shape == (2, 3, 3) and Kb[1, 0, 0] == 600 and Kb[0, 1, 2] == 24
    pts = torch.rand(2, 9, 3) + torch.tensor([0.0, 0.0, 2.0])
    rays = pixel_rays(project(pts, Kb), Kb)
    assert torch.allclose(rays * pts[..., 2:], pts, atol=1e-5)


def test_body_to_camera_puts_head_up_and_front_towards_camera():
    # Canonical body frame: Y up, facing +Z. Head above the feet, nose in front of the face.
    head, foot, nose = torch.tensor([[0.0, 0.8, 0.0], [0.0, -0.9, 0.0], [0.0, 0.7, 0.1]])
    R = BODY_TO_CAMERA
    assert torch.isclose(torch.linalg.det(R), torch.tensor(1.0))
    t = torch.tensor([0.0, 0.0, 10.0])
    p = torch.stack([head, foot, nose]) @ R.T + t
    uv = project(p[None], intrinsics(1000.0, 224))[0]
    assert uv[0, 1] < uv[1, 1]  # head higher in the image (smaller v)
    assert p[2, 2] < t[2]  # the nose is nearer the camera than the body centre


def test_crop_perspective_projection_matches_pixel_projection():
    """Normalised crop coordinates of the per-sample perspective camera equal the pixels of
    ``project`` with intrinsics (f, f, res/2, res/2), mapped by x_n = 2 u / res - 1."""
    g = torch.Generator().manual_seed(3)
    cam = torch.rand(4, 3, generator=g) * torch.tensor([0.5, 0.2, 0.2]) + torch.tensor(
        [0.7, -0.1, -0.1])
    pts = torch.rand(4, 9, 3, generator=g) - 0.5
    focal = torch.tensor([300.0, 450.0, 120.0, 2857.0])
    xy = crop_perspective_project(pts, cam, focal, 128)
    t = weak_to_perspective_translation(cam, focal, 128)
    uv = project(pts + t[:, None], batched_intrinsics(focal, 128, 4))
    torch.testing.assert_close(xy, uv * (2 / 128) - 1, atol=1e-5, rtol=0)
    # A float focal gives the same as a tensor of equal values.
    torch.testing.assert_close(crop_perspective_project(pts, cam, 300.0, 128),
                               crop_perspective_project(pts, cam, torch.full((4,), 300.0), 128))


def test_crop_focal_takes_known_focals_and_spin_elsewhere():
    assert crop_focal(None, 224) == pytest.approx(5000.0)
    assert crop_focal(0.0, 112) == pytest.approx(2500.0)
    assert crop_focal(310.0, 128) == pytest.approx(310.0)
    f = crop_focal(torch.tensor([0.0, 300.0]), 128, 5000.0)
    torch.testing.assert_close(f, torch.tensor([5000.0 * 128 / 224, 300.0]))
    verts = torch.zeros(2, 5, 3)
    cam = torch.tensor([[0.9, 0.0, 0.0], [0.9, 0.0, 0.0]])
    v, k, used = perspective_vertices(verts, cam, 128, torch.tensor([0.0, 300.0]))
    assert k.shape == (2, 3, 3) and float(k[1, 0, 0]) == pytest.approx(300.0)
    assert float(v[1, 0, 2]) == pytest.approx(2 * 300.0 / (128 * 0.9))
