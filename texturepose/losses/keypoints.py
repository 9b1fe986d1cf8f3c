"""2D keypoint reprojection loss on normalised crop coordinates.

Normalised crop coordinates span [-1, 1] over the crop: ``x_n = 2 u / res - 1`` for a crop pixel
coordinate ``u`` (pixel centres at ``j + 0.5``, as ``data/crops.py`` and ``geometry/cameras.py``).
The projections (weak perspective, and perspective with the crop's focal length at SPIN's
equivalent depth ``t_z = 2 f / (res s)``) live in :mod:`texturepose.geometry.cameras`.
"""

from __future__ import annotations

import torch

from texturepose.geometry.cameras import weak_perspective_project
from texturepose.models.keypoint_head import cell_centres

__all__ = ["weak_perspective_project", "keypoint_2d_loss", "keypoint_heatmap_loss",
           "heatmap_cross_entropy", "pixels_to_normalized", "normalized_to_pixels"]


def pixels_to_normalized(uv: torch.Tensor, res: int) -> torch.Tensor:
    """Crop pixel coordinates -> [-1, 1]."""
    return uv * (2.0 / res) - 1.0


def normalized_to_pixels(xy: torch.Tensor, res: int) -> torch.Tensor:
    """[-1, 1] -> crop pixel coordinates."""
    return (xy + 1.0) * (res / 2.0)


def keypoint_2d_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Confidence-weighted squared error, averaged over all ``B * K * 2`` coordinates (SPIN).

    Args:
        pred: ``(B, K, 2)`` predicted keypoints, normalised crop coordinates.
        target: ``(B, K, 3)`` annotated keypoints (same coordinates) with confidence in [0, 1]
            (0: unknown; such points give neither loss nor gradient).
        mask: optional ``(K,)`` bool, the keypoints the body model regresses
            (``BodyModel.keypoint_mask``); others are ignored.
    """
    conf, residual = _confident_residual("keypoint_2d_loss", pred, target, mask)
    return (conf * residual.pow(2)).mean()


def _confident_residual(
    name: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point confidences ``(B, K, 1)`` (times ``mask``) and residuals ``pred - target``,
    after checking the shapes. Unknown points may hold NaN: they are replaced before any
    arithmetic so that neither a loss nor its gradient can pick the NaN up."""
    if pred.shape[:-1] != target.shape[:-1] or pred.shape[-1] != 2 or target.shape[-1] != 3:
        raise ValueError(
            f"{name}: pred must be (B, K, 2) and target (B, K, 3), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    conf = target[..., 2:]
    if mask is not None:
        conf = conf * mask.to(conf)[:, None]
    gt = torch.where(conf > 0, target[..., :2], torch.zeros_like(target[..., :2]))
    return conf, pred - gt


def keypoint_heatmap_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Confidence-weighted L1 error of the keypoint head's soft-argmax coordinates ``(B, K, 2)``
    against the annotations ``(B, K, 3)`` (as :func:`keypoint_2d_loss`; L1 as in integral
    regression, which converges better than L2 for soft-argmax coordinates)."""
    conf, residual = _confident_residual("keypoint_heatmap_loss", pred, target, mask)
    return (conf * residual.abs()).mean()


def heatmap_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, sigma: float = 1.0
) -> torch.Tensor:
    """Cross-entropy of the keypoint head's softmax over positions ``(B, K, H, W)`` against a
    Gaussian of ``sigma`` cells at each annotated keypoint ``(B, K, 3)`` (normalised crop
    coordinates and confidence; cell ``j`` of ``W`` centred at ``2 (j + 0.5) / W - 1``).

    The soft-argmax L1 alone is a weak signal for a flat heatmap (every cell moves the mean
    a little); a target map tells every cell where the mass belongs (Sun et al. 2018 combine
    the two). Points of confidence 0 give neither loss nor gradient; the mean is over all
    ``B * K`` points, as :func:`keypoint_heatmap_loss`'s."""
    b, k, h, w = logits.shape
    if target.shape != (b, k, 3):
        raise ValueError(f"heatmap_cross_entropy: logits (B, K, H, W) = {tuple(logits.shape)} "
                         f"needs target (B, K, 3), got {tuple(target.shape)}")
    conf = target[..., 2]
    gt = torch.where(conf[..., None] > 0, target[..., :2], torch.zeros_like(target[..., :2]))
    xs, ys = cell_centres(w, gt), cell_centres(h, gt)
    # in cells: separable Gaussian over x and y, normalised over the grid
    dx = (xs.view(1, 1, w) - gt[..., :1]) * (w / 2.0)
    dy = (ys.view(1, 1, h) - gt[..., 1:]) * (h / 2.0)
    tx = torch.softmax(-0.5 * (dx / sigma) ** 2, dim=-1)
    ty = torch.softmax(-0.5 * (dy / sigma) ** 2, dim=-1)
    log_p = logits.float().flatten(2).log_softmax(-1).view(b, k, h, w)
    ce = -(ty[..., :, None] * tx[..., None, :] * log_p).sum((-2, -1))
    return (conf * ce).mean()
