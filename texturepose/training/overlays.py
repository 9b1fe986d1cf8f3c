"""Example overlays for MLflow: predicted meshes drawn over the training crops, plus side views."""

from __future__ import annotations

import numpy as np
import torch

from texturepose.body.base import BodyModel
from texturepose.geometry.cameras import SPIN_FOCAL_224, perspective_vertices
from texturepose.render.overlay import render_overlay, render_side_view


@torch.no_grad()
def overlay_grid(
    images: torch.Tensor,
    body: BodyModel,
    rotmats: torch.Tensor,
    shape: torch.Tensor,
    cam: torch.Tensor,
    focal: torch.Tensor | None = None,
    focal_224: float = SPIN_FOCAL_224,
    count: int = 4,
) -> np.ndarray:
    """``(2 H, n W, 3)`` uint8: the first ``n`` crops with their predicted mesh (top row) and
    the mesh turned 90 degrees (bottom row). ``images`` are (N, 3, H, W) floats in [0, 1];
    ``focal`` the crops' focal lengths (see ``geometry.cameras.crop_focal``)."""
    n = min(count, len(images))
    res = int(images.shape[-1])
    dev = body.faces.device
    vertices = body(rotmats[:n].float().to(dev), shape[:n].float().to(dev)).vertices.cpu()
    f = None if focal is None else focal[:n].float().cpu()
    verts, k, _ = perspective_vertices(vertices, cam[:n].float().cpu(), res, f, focal_224)
    faces = body.faces.cpu()
    top, bottom = [], []
    for i in range(n):  # a handful of images, for a picture
        img = (images[i].float().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5)
        img = img.astype(np.uint8)
        top.append(render_overlay(img, verts[i], faces, k[i]))
        bottom.append(render_side_view(verts[i], faces, k[i], (res, res)))
    return np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)
