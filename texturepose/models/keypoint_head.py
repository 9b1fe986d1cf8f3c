"""A 2D keypoint head on the backbone's feature maps: heatmaps and soft-argmax coordinates.

Regressing a pose from one pooled feature vector learns slowly (issue "The regressor must
learn"): every image gives the network a handful of numbers of gradient. Heatmaps over a
stride-8 grid give dense, spatial gradients from the same 2D keypoints, and their soft-argmax
("integral regression", Sun et al. 2018) gives differentiable coordinates that the IEF head then
reads. The decoder is a small feature pyramid: the stride-32 and stride-16 maps are projected to
``width`` channels, upsampled and added to the stride-8 map (and, with ``stride`` 4, that sum to
the stride-4 map: at 96 px a 24 x 24 grid instead of 12 x 12), then two 3x3 convolutions.

Coordinates are normalised crop coordinates in [-1, 1] with pixel centres at ``j + 0.5``
(as in :mod:`texturepose.losses.keypoints`): heatmap cell ``j`` of ``W`` sits at
``x = 2 (j + 0.5) / W - 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: the heatmap strides the head can give, and the backbone maps each one uses (coarse first)
STRIDE_MAPS = {8: ("s32", "s16", "s8"), 4: ("s32", "s16", "s8", "s4")}


class KeypointHead(nn.Module):
    """Feature maps ``{"s4", "s8", "s16", "s32"}`` -> keypoint logits ``(B, K, H/s, W/s)``.

    Args:
        map_channels: channels of the backbone's maps.
        num_keypoints: K (the keypoint superset).
        width: channels of the decoder.
        stride: the heatmaps' stride, 8 or 4 (``model.head_stride``).
    """

    def __init__(self, map_channels: dict[str, int], num_keypoints: int, width: int = 96,
                 stride: int = 8):
        super().__init__()
        if stride not in STRIDE_MAPS:
            raise ValueError(f"keypoint head stride {stride!r} must be one of "
                             f"{sorted(STRIDE_MAPS)}")
        self.maps = STRIDE_MAPS[stride]
        self.lateral = nn.ModuleDict(
            {name: nn.Conv2d(map_channels[name], width, 1) for name in self.maps}
        )
        self.smooth = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
        )
        # No bias: a softmax over positions ignores a per-channel constant.
        self.logits = nn.Conv2d(width, num_keypoints, 1, bias=False)

    def forward(self, maps: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.lateral[self.maps[0]](maps[self.maps[0]])
        for name in self.maps[1:]:
            lateral = self.lateral[name](maps[name])
            x = lateral + F.interpolate(x, size=lateral.shape[-2:], mode="nearest")
        return self.logits(self.smooth(x))


def cell_centres(n: int, like: torch.Tensor) -> torch.Tensor:
    """``(n,)`` normalised crop coordinates of the centres of ``n`` heatmap cells along one
    axis (``2 (j + 0.5) / n - 1``), with ``like``'s dtype and device."""
    return (torch.arange(n, dtype=like.dtype, device=like.device) + 0.5) * (2.0 / n) - 1.0


def soft_argmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, K, H, W)`` logits -> expected positions ``(B, K, 2)`` in normalised crop
    coordinates (x, y) and a confidence ``(B, K)``: the peak probability times the cell count
    (1 for a flat map, larger for a sharp one), squashed to [0, 1) by ``1 - 1/c``."""
    b, k, h, w = logits.shape
    prob = logits.float().flatten(2).softmax(-1).view(b, k, h, w)
    xs, ys = cell_centres(w, prob), cell_centres(h, prob)
    x = (prob.sum(2) * xs).sum(-1)
    y = (prob.sum(3) * ys).sum(-1)
    peak = prob.flatten(2).amax(-1) * (h * w)
    return torch.stack([x, y], dim=-1), 1.0 - 1.0 / peak.clamp(min=1.0)
