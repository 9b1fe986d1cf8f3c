"""Keypoint reprojection, 3D keypoint and body-parameter losses."""

from __future__ import annotations

import pytest
import roma
import torch

from texturepose.geometry.cameras import crop_perspective_project, weak_perspective_project
from texturepose.keypoints import INDEX, NUM_KEYPOINTS
from texturepose.losses.keypoints import (
    keypoint_2d_loss,
    keypoint_heatmap_loss,
    normalized_to_pixels,
    pixels_to_normalized,
)
from texturepose.losses.supervised import body_params_loss, keypoint_3d_loss


def perspective_project(points, cam):
    return crop_perspective_project(points, cam, 5000.0, 224)

K = NUM_KEYPOINTS


def test_weak_perspective_closed_form():
    pts = torch.tensor([[[1.0, 2.0, 5.0], [-0.5, 0.0, -3.0]]])
    cam = torch.tensor([[0.5, 0.1, -0.2]])
    expected = torch.tensor([[[0.55, 0.9], [-0.2, -0.1]]])  # s * (X + t)
    assert torch.allclose(weak_perspective_project(pts, cam), expected)


def test_perspective_agrees_with_weak_perspective():
    """At depth 0 of the body both cameras project identically (SPIN's equivalence); off that
    plane perspective differs by the factor t_z / (t_z + Z)."""
    cam = torch.tensor([[0.9, 0.05, -0.1], [1.2, 0.0, 0.2]])
    flat = torch.randn(2, 5, 3)
    flat[..., 2] = 0.0
    assert torch.allclose(
        perspective_project(flat, cam), weak_perspective_project(flat, cam), atol=1e-5
    )
    deep = flat.clone()
    deep[..., 2] = 0.3
    tz = 2 * 5000.0 / (224 * cam[:, 0])
    ratio = (tz / (tz + 0.3))[:, None, None]
    assert torch.allclose(
        perspective_project(deep, cam), weak_perspective_project(flat, cam) * ratio, atol=1e-5
    )
    uv = torch.tensor([[[0.0, 112.0], [224.0, 56.0]]])
    assert torch.allclose(pixels_to_normalized(uv, 224), torch.tensor([[[-1.0, 0.0], [1.0, -0.5]]]))
    assert torch.allclose(normalized_to_pixels(pixels_to_normalized(uv, 224), 224), uv)


def test_keypoint_2d_loss_closed_form_and_confidence():
    pred = torch.zeros(1, 3, 2, requires_grad=True)
    target = torch.tensor([[[1.0, 2.0, 1.0], [3.0, 0.0, 0.5], [float("nan"), 7.0, 0.0]]])
    loss = keypoint_2d_loss(pred, target)
    # (1 * (1 + 4) + 0.5 * 9 + 0) / 6 coordinates
    assert torch.isclose(loss, torch.tensor(9.5 / 6))
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert torch.equal(pred.grad[0, 2], torch.zeros(2))  # confidence 0: no gradient
    assert torch.allclose(pred.grad[0, 1], torch.tensor([-0.5 * 2 * 3 / 6, 0.0]))
    # All confidences zero: exactly zero.
    target[..., 2] = 0.0
    assert keypoint_2d_loss(pred, target) == 0.0
    # The body model's mask removes points it does not regress.
    target[..., 2] = 1.0
    target[0, 2, 0] = 0.0
    masked = keypoint_2d_loss(pred, target, mask=torch.tensor([True, False, False]))
    assert torch.isclose(masked, torch.tensor(5.0 / 6))
    with pytest.raises(ValueError, match=r"pred must be \(B, K, 2\)"):
        keypoint_2d_loss(pred, target[..., :2])


def test_keypoint_3d_loss():
    torch.manual_seed(0)
    gt = torch.randn(3, K, 3)
    target = torch.cat([gt, torch.ones(3, K, 1)], dim=-1)
    has = torch.tensor([True, True, False])
    # Translation does not matter (both are centred on the mid-hip point).
    pred = (gt + torch.tensor([1.0, -2.0, 3.0])).requires_grad_()
    assert keypoint_3d_loss(pred, target, has) < 1e-10
    # Closed form: one known point off by (0.3, 0, 0) -> 0.09 over the B*K*3 entries of the
    # two selected samples, after re-centring (the point is not a hip).
    pred2 = gt.clone()
    pred2[0, INDEX["head"], 0] += 0.3
    assert torch.isclose(keypoint_3d_loss(pred2, target, has), torch.tensor(0.09 / (2 * K * 3)))
    # The third sample is not supervised: any error there is ignored.
    pred3 = gt.clone()
    pred3[2] += torch.randn(K, 3)
    assert keypoint_3d_loss(pred3, target, has) < 1e-10
    # No sample with 3D: exact zero, graph attached, zero gradient.
    loss = keypoint_3d_loss(pred, target, torch.zeros(3, dtype=torch.bool))
    loss.backward()
    assert loss == 0.0 and torch.equal(pred.grad, torch.zeros_like(pred))
    # A sample whose hips are unknown cannot be centred: skipped.
    target[1, INDEX["l_hip"], 3] = 0.0
    pred4 = gt.clone()
    pred4[1] += torch.randn(K, 3)
    assert keypoint_3d_loss(pred4, target, has) < 1e-10
    with pytest.raises(ValueError, match="has_3d must be"):
        keypoint_3d_loss(pred, target, has[:2])


def test_body_params_loss():
    torch.manual_seed(0)
    r = roma.random_rotmat((2, 5))
    s = torch.rand(2, 3)
    r_pred, s_pred = r.clone(), s.clone()
    r_pred[0, 1] = -r_pred[0, 1]  # sum of squares 4 * ||R||^2 = 12 over 2*5*9 entries
    s_pred[1] += 0.5  # not supervised
    s_pred[0, 0] += 0.3
    pose, shape = body_params_loss(r_pred, s_pred, r, s, torch.tensor([True, False]))
    assert torch.isclose(pose, torch.tensor(12.0 / 45))
    assert torch.isclose(shape, torch.tensor(0.09 / 3))
    zero_p, zero_s = body_params_loss(r_pred, s_pred, r, s, torch.tensor([False, False]))
    assert zero_p == 0.0 and zero_s == 0.0


def test_keypoint_head_loss_is_confidence_weighted_l1():
    pred = torch.zeros(1, K, 2)
    target = torch.zeros(1, K, 3)
    target[0, 0] = torch.tensor([0.5, -0.25, 1.0])
    target[0, 1] = torch.tensor([float("nan"), 0.0, 0.0])  # unknown: no loss, no NaN
    expected = (0.5 + 0.25) / (K * 2)
    assert float(keypoint_heatmap_loss(pred, target)) == pytest.approx(expected)
    mask = torch.ones(K, dtype=torch.bool)
    mask[0] = False
    assert float(keypoint_heatmap_loss(pred, target, mask)) == 0.0
    with pytest.raises(ValueError, match="pred must be"):
        keypoint_heatmap_loss(pred[..., :1], target)


def test_heatmap_cross_entropy_against_a_numpy_gaussian():
    """The target is a Gaussian of sigma cells at the keypoint (built here in numpy, cell by
    cell): logits equal to its log give the CE its minimum, the target's entropy; any other
    map costs more; a point of confidence 0 (NaN coordinates) gives no loss and no NaN."""
    import numpy as np

    from texturepose.losses.keypoints import heatmap_cross_entropy

    h = w = 12
    gx, gy, sigma = 0.13, -0.42, 1.5
    cx = (np.arange(w) + 0.5) * 2 / w - 1
    cy = (np.arange(h) + 0.5) * 2 / h - 1
    d2 = ((cx[None, :] - gx) ** 2 + (cy[:, None] - gy) ** 2) * (w / 2) ** 2
    t = np.exp(-0.5 * d2 / sigma**2)
    t /= t.sum()
    entropy = float(-(t * np.log(t)).sum())
    target = torch.tensor([[[gx, gy, 1.0], [float("nan"), float("nan"), 0.0]]])
    best = torch.from_numpy(np.log(t)).float().expand(1, 2, h, w).clone().requires_grad_(True)
    loss = heatmap_cross_entropy(best, target, sigma=sigma)
    assert float(loss.detach()) == pytest.approx(entropy / 2, rel=1e-4)  # mean of both points
    loss.backward()
    assert torch.isfinite(best.grad).all() and best.grad[0, 1].abs().max() == 0
    noise = torch.randn(1, 2, h, w, generator=torch.Generator().manual_seed(0))
    other = best.detach() + 0.3 * noise
    assert float(heatmap_cross_entropy(other, target, sigma=sigma)) > float(loss.detach())
    with pytest.raises(ValueError, match="needs target"):
        heatmap_cross_entropy(best, target[:, :1], sigma=sigma)
