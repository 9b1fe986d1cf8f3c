"""Full-supervision terms for samples that have them: 3D keypoints and body-model parameters.

Each term averages over the samples whose ``has_*`` flag is set and is an exact zero, still
attached to the graph, when no sample of the batch has the annotation.
"""

from __future__ import annotations

import torch

from texturepose.keypoints import INDEX

#: 3D keypoints are compared after centring on the mid-hip point (SPIN's pelvis).
HIPS = (INDEX["r_hip"], INDEX["l_hip"])


def _flags(has: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    if has.shape != (batch,):
        raise ValueError(f"{name} must be (B,) = ({batch},), got {tuple(has.shape)}")
    return has.bool()


def keypoint_3d_loss(
    pred: torch.Tensor, target: torch.Tensor, has_3d: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Confidence-weighted squared error of mid-hip-centred 3D keypoints (metres^2).

    Args:
        pred: ``(B, K, 3)`` predicted keypoints (camera orientation, any translation).
        target: ``(B, K, 4)`` annotated 3D keypoints + confidence.
        has_3d: ``(B,)`` flags. Samples whose two hips are not both known are left out.
        mask: optional ``(K,)`` bool, the keypoints the body model regresses.
    """
    if pred.shape[:-1] != target.shape[:-1] or pred.shape[-1] != 3 or target.shape[-1] != 4:
        raise ValueError(
            f"keypoint_3d_loss: pred must be (B, K, 3) and target (B, K, 4), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    sel = _flags(has_3d, pred.shape[0], "has_3d")
    conf = target[..., 3]
    sel = sel & (conf[:, HIPS[0]] > 0) & (conf[:, HIPS[1]] > 0)
    if not sel.any():
        return pred[:0].sum()  # zero, attached to the graph, NaN-proof
    p, t, c = pred[sel], target[sel, :, :3], conf[sel]
    if mask is not None:
        c = c * mask.to(c)
    p = p - p[:, list(HIPS), :].mean(dim=1, keepdim=True)
    t = t - t[:, list(HIPS), :].mean(dim=1, keepdim=True)
    t = torch.where(c[..., None] > 0, t, torch.zeros_like(t))  # unknown points may hold NaN
    return (c[..., None] * (p - t).pow(2)).mean()


def body_params_loss(
    pred_rotmats: torch.Tensor,
    pred_shape: torch.Tensor,
    target_rotmats: torch.Tensor,
    target_shape: torch.Tensor,
    has_body: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error of rotation matrices ``(B, J, 3, 3)`` and of shapes ``(B, S)`` over
    the samples with ``has_body``. Returns ``(pose_loss, shape_loss)``."""
    if pred_rotmats.shape != target_rotmats.shape or pred_shape.shape != target_shape.shape:
        raise ValueError(
            f"body_params_loss: predicted {tuple(pred_rotmats.shape)}/{tuple(pred_shape.shape)} "
            f"and target {tuple(target_rotmats.shape)}/{tuple(target_shape.shape)} differ"
        )
    sel = _flags(has_body, pred_rotmats.shape[0], "has_body")
    if not sel.any():
        zero = pred_rotmats[:0].sum() + pred_shape[:0].sum()
        return zero, zero
    pose = (pred_rotmats[sel] - target_rotmats[sel]).pow(2).mean()
    shape = (pred_shape[sel] - target_shape[sel]).pow(2).mean()
    return pose, shape
