"""Optional test-time refinement: fit the regressed body to the keypoint head's own 2D output.

The keypoint head localises joints better than the IEF's mesh reproduces them (it is trained
directly on the 2D keypoints; the mesh has to go through the body model). A few Adam steps on pose,
shape and camera, from the regressor's estimate, minimise the confidence-weighted distance between
the mesh's projected keypoints and the head's, plus a penalty on moving away from the regressor's
estimate (meant to keep its 3D knowledge and correct only what the image shows; on the synthetic
default PA-MPJPE still got worse: docs/learning.md). No ground truth is used: only the network's
own outputs. ``model``-independent; off by default: an evaluation set's ``refine_steps`` (reported
as its own set, docs/evaluation.md) and ``texturepose predict --refine-steps`` switch it on.
"""

from __future__ import annotations

import torch

from texturepose.body.base import BodyModel
from texturepose.geometry.cameras import crop_perspective_project
from texturepose.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix


@torch.enable_grad()
def refine_to_keypoints(
    body: BodyModel,
    rotmats: torch.Tensor,
    shape: torch.Tensor,
    cam: torch.Tensor,
    keypoints_2d: torch.Tensor,
    confidence: torch.Tensor,
    focal: torch.Tensor | float,
    res: int,
    steps: int = 30,
    lr: float = 0.01,
    stay: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refined ``(rotmats (B, J, 3, 3), shape (B, S), cam (B, 3))``.

    ``keypoints_2d (B, K, 2)`` and ``confidence (B, K)``: the keypoint head's output, in
    normalised crop coordinates; ``focal``: the crops' focal lengths (see
    ``geometry.cameras.crop_focal``); ``stay``: weight of ``||x - x_regressed||^2`` on the 6D
    rotations and shape, relative to the 2D term's scale (squared normalised coordinates).
    """
    x0 = matrix_to_rot6d(rotmats.detach())
    s0 = shape.detach()
    x6 = x0.clone().requires_grad_(True)
    s = s0.clone().requires_grad_(True)
    c = cam.detach().clone().requires_grad_(True)
    w = (confidence.detach() * body.keypoint_mask.to(confidence))[..., None]
    target = keypoints_2d.detach()
    opt = torch.optim.Adam([x6, s, c], lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        kp = body.keypoints(rot6d_to_matrix(x6), s)
        proj = crop_perspective_project(kp, c, focal, res)
        data = (w * (proj - target).square()).sum((1, 2)) / w.sum((1, 2)).clamp(min=1e-6)
        move = (x6 - x0).square().flatten(1).mean(1) + (s - s0).square().mean(1)
        (data + stay * move).sum().backward()
        opt.step()
    with torch.no_grad():
        return rot6d_to_matrix(x6), s.detach(), c.detach()
