"""Consistency between predictions that must agree (TexturePose section 3.3).

Views of one instant share the body pose (every joint but the global orientation, which differs
with the camera) and the shape; frames of one person share the shape. The penalties are mean
squared differences, on rotation matrices for the pose (smooth, no angle wrap-around), as for
SPIN's pose losses.
"""

from __future__ import annotations

import torch


def _weighted_mean(per_pair: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return per_pair.mean()
    weight = weight.to(per_pair)
    return (per_pair * weight).sum() / weight.sum().clamp(min=1e-8)


def multiview_pose_loss(
    rotmats_a: torch.Tensor, rotmats_b: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared difference of the body-joint rotations ``(B, J, 3, 3)`` of two views,
    excluding joint 0 (global orientation). ``weight (B,)`` selects/weights pairs (a pair of
    weight 0 contributes nothing; all-zero weights give 0)."""
    if rotmats_a.shape != rotmats_b.shape or rotmats_a.dim() != 4 or rotmats_a.shape[-2:] != (3, 3):
        raise ValueError(f"rotmats must both be (B, J, 3, 3), got {tuple(rotmats_a.shape)} and "
                         f"{tuple(rotmats_b.shape)}")
    per_pair = (rotmats_a[:, 1:] - rotmats_b[:, 1:]).square().flatten(1).mean(1)
    return _weighted_mean(per_pair, weight)


def shape_consistency_loss(
    shape_a: torch.Tensor, shape_b: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared difference of shape parameters ``(B, S)`` of two images of one person."""
    if shape_a.shape != shape_b.shape or shape_a.dim() != 2:
        raise ValueError(f"shapes must both be (B, S), got {tuple(shape_a.shape)} and "
                         f"{tuple(shape_b.shape)}")
    return _weighted_mean((shape_a - shape_b).square().mean(1), weight)
