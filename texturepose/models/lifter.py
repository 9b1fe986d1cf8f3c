"""A 2D-to-3D pose lifter: keypoints of one image -> every joint's rotation, mocap-trained.

Why: from 2D keypoints alone the depth of each limb is ambiguous, and an image regressor trained
with 2D losses for minutes on a CPU learnt little of the 3D articulation (docs/learning.md). The
same mocap poses that feed the adversarial prior say which 3D pose a 2D skeleton most likely
comes from: a small residual MLP (Martinez et al., ICCV 2017) trained on random views of them
(:mod:`texturepose.training.lift`) gives the IEF a start that already has the articulation, and
the image terms correct it. It sees no image and no ground truth of any training crop.

Input: the keypoint superset in normalised crop coordinates with a weight each (the keypoint
head's confidence, or visibility), centred on their weighted mean and scaled to unit RMS radius,
so the crop's framing does not matter. Output: 6D rotations of every joint (the global one in
the camera frame), added to the mean pose's.
"""

from __future__ import annotations

import torch
from torch import nn


def normalize_keypoints(kp2d: torch.Tensor, weight: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """``(B, K, 2)`` keypoints, ``(B, K)`` weights, ``(K,)`` bool mask of the keypoints the body
    model regresses -> ``(B, 3K)``: the weighted-centred, unit-RMS-radius coordinates (zero
    where the weight is) and the weights."""
    w = weight * mask.to(weight.dtype)
    total = w.sum(1, keepdim=True).clamp(min=1e-6)
    centre = (kp2d * w[..., None]).sum(1, keepdim=True) / total[..., None]
    d2 = ((kp2d - centre) ** 2).sum(-1)
    radius = ((d2 * w).sum(1, keepdim=True) / total).sqrt().clamp(min=1e-6)
    x = (kp2d - centre) / radius[..., None] * w[..., None]
    return torch.cat([x.flatten(1), w], dim=1)


class PoseLifter(nn.Module):
    """``(B, K, 2)`` keypoints and ``(B, K)`` weights -> ``(B, J, 6)`` rotations.

    Args:
        num_keypoints: K, the superset size.
        num_joints: J, the body model's regressed joints.
        mean_rot6d: ``(J*6,)`` the mean pose (the output at initialisation).
        keypoint_mask: ``(K,)`` bool, the keypoints the body model regresses (default all;
            :func:`~texturepose.training.lift.fit_lifter` sets the body model's, and the
            state dict keeps it).
        hidden: width of the residual blocks.
        blocks: residual blocks of two linear layers each.
    """

    def __init__(self, num_keypoints: int, num_joints: int, mean_rot6d: torch.Tensor,
                 keypoint_mask: torch.Tensor | None = None, hidden: int = 1024,
                 blocks: int = 2):
        super().__init__()
        if mean_rot6d.numel() != num_joints * 6:
            raise ValueError(f"mean_rot6d has {mean_rot6d.numel()} values, expected "
                             f"{num_joints * 6} for {num_joints} joints")
        if keypoint_mask is None:
            keypoint_mask = torch.ones(num_keypoints, dtype=torch.bool)
        if keypoint_mask.shape != (num_keypoints,):
            raise ValueError(f"keypoint_mask must be ({num_keypoints},), got "
                             f"{tuple(keypoint_mask.shape)}")
        self.num_joints = num_joints
        self.register_buffer("mean_rot6d", mean_rot6d.detach().float().reshape(1, -1).clone())
        self.register_buffer("keypoint_mask", keypoint_mask.detach().bool().clone())
        self.inp = nn.Linear(3 * num_keypoints, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                          nn.ReLU())
            for _ in range(blocks)
        )
        self.out = nn.Linear(hidden, num_joints * 6)
        # a tiny last layer: an untrained lifter answers the mean pose
        nn.init.xavier_uniform_(self.out.weight, gain=0.01)
        nn.init.zeros_(self.out.bias)

    def forward(self, kp2d: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.inp(normalize_keypoints(kp2d, weight, self.keypoint_mask)))
        for block in self.blocks:
            x = x + block(x)
        return (self.mean_rot6d + self.out(x)).view(-1, self.num_joints, 6)


#: the weak-perspective scale's range (the mean camera's is 0.9: the body fills the crop)
SCALE_RANGE = (0.25, 4.0)


def fit_weak_camera(points: torch.Tensor, kp2d: torch.Tensor,
                    weight: torch.Tensor) -> torch.Tensor:
    """The weak-perspective camera ``(B, 3)`` = ``(s, tx, ty)`` whose projection
    ``s (X + t)`` of ``points (B, K, 3)`` is closest to ``kp2d (B, K, 2)`` in weighted least
    squares (closed form; the scale clamped to ``SCALE_RANGE``), so the IEF starts with the
    lifted pose placed on the person."""
    w = weight[..., None]
    total = w.sum(1, keepdim=True).clamp(min=1e-6)
    p = points[..., :2]
    p_mean = (p * w).sum(1, keepdim=True) / total
    q_mean = (kp2d * w).sum(1, keepdim=True) / total
    pc, qc = p - p_mean, kp2d - q_mean
    s = (w * pc * qc).sum((1, 2)) / (w * pc * pc).sum((1, 2)).clamp(min=1e-9)
    # a sane range: an untrained head's keypoints all lie near the centre
    s = s.clamp(min=SCALE_RANGE[0], max=SCALE_RANGE[1])
    t = q_mean[:, 0] / s[:, None] - p_mean[:, 0]
    return torch.cat([s[:, None], t], dim=1)
