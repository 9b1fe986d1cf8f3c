"""2D keypoint reprojection loss on normalised crop coordinates.

Normalised crop coordinates span [-1, 1] over the crop: ``x_n = 2 u / res - 1`` for a crop pixel
coordinate ``u`` (pixel centres at ``j + 0.5``, as ``data/crops.py`` and ``geometry/cameras.py``).
The network's weak-perspective camera ``(s, tx, ty)`` projects camera-oriented body points as
``x_n = s (X + tx)``, ``y_n = s (Y + ty)`` (SPIN); the perspective option puts the body at SPIN's
equivalent depth ``t_z = 2 f / (res s)`` and projects with focal length ``f``.
"""

from __future__ import annotations

import torch

from texturepose.geometry.cameras import (
    SPIN_FOCAL_224,
    intrinsics,
    project,
    weak_to_perspective_translation,
)


def weak_perspective_project(points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """``(B, K, 3)`` camera-oriented points and ``(B, 3)`` cameras -> ``(B, K, 2)`` in [-1, 1]."""
    return cam[:, None, :1] * (points[..., :2] + cam[:, None, 1:])


def perspective_project(
    points: torch.Tensor, cam: torch.Tensor, focal: float = SPIN_FOCAL_224, res: int = 224
) -> torch.Tensor:
    """Perspective projection at SPIN's equivalent depth, in normalised crop coordinates."""
    t = weak_to_perspective_translation(cam, focal, res)
    k = intrinsics(focal, res, dtype=points.dtype, device=points.device)
    return pixels_to_normalized(project(points + t[:, None, :], k), res)


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
    if pred.shape[:-1] != target.shape[:-1] or pred.shape[-1] != 2 or target.shape[-1] != 3:
        raise ValueError(
            f"keypoint_2d_loss: pred must be (B, K, 2) and target (B, K, 3), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    conf = target[..., 2:]
    if mask is not None:
        conf = conf * mask.to(conf)[:, None]
    # Unknown points may hold NaN: replace them before any arithmetic so that neither the loss
    # nor the gradient can pick the NaN up.
    gt = torch.where(conf > 0, target[..., :2], torch.zeros_like(target[..., :2]))
    return (conf * (pred - gt).pow(2)).mean()
