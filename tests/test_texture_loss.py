"""Texture-consistency and multi-view losses: closed forms, invariances and pose recovery."""

from __future__ import annotations

import logging
import math

import pytest
import roma
import torch

from texturepose.geometry.cameras import intrinsics, world_to_camera
from texturepose.losses.multiview import multiview_pose_loss, shape_consistency_loss
from texturepose.losses.texture import texture_consistency_loss
from texturepose.render.primitives import uv_ellipsoid
from texturepose.render.texture import UVAtlas, sample_texture
from texturepose.render.textured import render_textured

log = logging.getLogger(__name__)


def smooth_texture(res: int = 128) -> torch.Tensor:
    g = (torch.arange(res) + 0.5) / res
    v, u = torch.meshgrid(1 - g, g, indexing="ij")
    return torch.stack([
        0.5 + 0.5 * torch.sin(2 * math.pi * 2 * u),
        0.5 + 0.5 * torch.cos(2 * math.pi * 1.5 * v),
        0.5 + 0.5 * torch.sin(2 * math.pi * (u + v)),
    ])


def test_closed_form_values_and_normalisation():
    a = torch.zeros(1, 3, 2, 2)
    b = torch.zeros(1, 3, 2, 2)
    b[0, :, 0, 0] = torch.tensor([0.3, 0.6, 0.9])  # channel mean |d| = 0.6, mean d^2 = 0.42
    b[0, :, 1, 1] = 5.0  # a texel that only one image sees
    vis_a = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    vis_b = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])
    # Co-visible texels: (0,0) and (0,1), so the sum is divided by 2.
    assert torch.isclose(texture_consistency_loss(a, vis_a, b, vis_b), torch.tensor(0.3))
    assert torch.isclose(texture_consistency_loss(a, vis_a, b, vis_b, kind="l2"),
                         torch.tensor(0.21))
    charb = texture_consistency_loss(a, vis_a, b, vis_b, kind="charbonnier", eps=1e-6)
    assert torch.isclose(charb, torch.tensor(0.3), atol=1e-5)
    with pytest.raises(ValueError, match="kind"):
        texture_consistency_loss(a, vis_a, b, vis_b, kind="l3")
    with pytest.raises(ValueError, match="visibilities"):
        texture_consistency_loss(a, vis_a[0], b, vis_b)


def test_identical_inputs_give_zero_and_nothing_visible_gives_zero_with_finite_grads():
    tex = torch.rand(3, 3, 8, 8, requires_grad=True)
    vis = (torch.rand(3, 8, 8) > 0.5).float()
    assert texture_consistency_loss(tex, vis, tex, vis).item() == 0.0
    other = torch.rand(3, 3, 8, 8, requires_grad=True)
    none = torch.zeros(3, 8, 8)
    loss = texture_consistency_loss(tex, vis, other, none)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(tex.grad).all() and torch.isfinite(other.grad).all()
    # One pair with nothing co-visible contributes 0 to the batch mean, no NaN.
    nan_tex = torch.full((1, 3, 4, 4), float("nan"))
    zero = texture_consistency_loss(nan_tex, torch.zeros(1, 4, 4), nan_tex, torch.zeros(1, 4, 4))
    assert zero.item() == 0.0


def test_visibility_is_constant_and_target_can_be_detached():
    tex_i = torch.rand(2, 3, 4, 4, requires_grad=True)
    tex_j = torch.rand(2, 3, 4, 4, requires_grad=True)
    vis = torch.rand(2, 4, 4, requires_grad=True)
    texture_consistency_loss(tex_i, vis, tex_j, vis, detach_target=True).backward()
    assert vis.grad is None and tex_j.grad is None and tex_i.grad.abs().sum() > 0


def test_multiview_losses():
    g = torch.Generator().manual_seed(0)
    a = roma.random_rotmat((4, 5), generator=g)
    b = a.clone()
    b[:, 0] = roma.random_rotmat(4, generator=g)  # different global orientations only
    assert multiview_pose_loss(a, b).item() == 0.0
    b[1, 2] = torch.eye(3)
    expected = (a[1, 2] - torch.eye(3)).square().sum() / (4 * 9) / 4
    assert torch.isclose(multiview_pose_loss(a, b), expected)
    w = torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert multiview_pose_loss(a, b, weight=w).item() == 0.0
    s1, s2 = torch.zeros(2, 3), torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.6]])
    assert torch.isclose(shape_consistency_loss(s1, s2), torch.tensor(0.15 / 2))
    assert shape_consistency_loss(s1, s2, weight=torch.zeros(2)).item() == 0.0
    with pytest.raises(ValueError, match="rotmats"):
        multiview_pose_loss(a, b[:, :3])


class TwoViews:
    """An ellipsoid with a smooth UV texture seen by two calibrated cameras 70 degrees apart."""

    def __init__(self, res: int = 96):
        self.mesh = uv_ellipsoid(20, 40, (0.45, 0.8, 0.3))
        self.res = res
        self.K = intrinsics(150.0, res)[None].expand(2, 3, 3)
        self.R = roma.rotvec_to_rotmat(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.2, 0.0]]))
        self.t = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]])
        self.atlas = UVAtlas.build(self.mesh.uv, self.mesh.face_uv, self.mesh.faces, 64)
        self.images, _ = render_textured(self.to_cameras(torch.zeros(3)), self.mesh.faces,
                                         self.mesh.uv, self.mesh.face_uv, smooth_texture(),
                                         self.K, (res, res))

    def to_cameras(self, rotvec: torch.Tensor) -> torch.Tensor:
        world = self.mesh.vertices @ roma.rotvec_to_rotmat(rotvec).T
        return world_to_camera(world.expand(2, -1, -1), self.R, self.t)

    def loss(self, rotvec: torch.Tensor) -> torch.Tensor:
        tex, vis = sample_texture(self.images, self.to_cameras(rotvec), self.mesh.faces, self.K,
                                  self.atlas)
        return texture_consistency_loss(tex[:1], vis[:1], tex[1:], vis[1:])


def test_loss_rises_with_a_pose_perturbation():
    views = TwoViews()
    losses = [views.loss(torch.tensor([0.0, a, 0.0])).item() for a in (0.0, 0.1, 0.25)]
    log.info("texture loss at 0 / 0.1 / 0.25 rad: %s", losses)
    assert losses[0] < losses[1] < losses[2]
    assert losses[0] < 0.5 * losses[2]


def test_gradient_descent_on_texture_loss_recovers_the_rotation():
    views = TwoViews()
    rotvec = torch.tensor([0.08, 0.22, -0.06], requires_grad=True)
    start = rotvec.detach().norm().item()
    opt = torch.optim.Adam([rotvec], lr=0.01)
    for _ in range(40):
        opt.zero_grad()
        loss = views.loss(rotvec)
        loss.backward()
        assert torch.isfinite(rotvec.grad).all()
        opt.step()
    end = roma.rotvec_to_rotmat(rotvec.detach())
    err = math.degrees(roma.rotmat_geodesic_distance(end, torch.eye(3)).item())
    log.info("texture-loss descent: rotation error %.2f deg -> %.2f deg", math.degrees(start), err)
    assert err < 0.4 * math.degrees(start)
