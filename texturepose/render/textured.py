"""Render meshes with a UV texture map (synthetic images, texture-recovery checks).

The texture follows the texel convention of :mod:`texturepose.render.texture` (v up, row 0 at
the top); per-pixel UVs are interpolated with perspective-correct barycentrics and looked up
bilinearly. No shading: the image colour is the albedo (what texture consistency assumes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from texturepose.render.rasterize import Fragments, interpolate_vertex_attributes, rasterize


def uv_to_grid(uv: torch.Tensor) -> torch.Tensor:
    """UV in [0, 1] (v up) -> ``grid_sample`` coordinates of a texture image (row 0 at top)."""
    return torch.stack([2.0 * uv[..., 0] - 1.0, 1.0 - 2.0 * uv[..., 1]], dim=-1)


def render_textured(
    vertices_cam: torch.Tensor,
    faces: torch.Tensor,
    uv: torch.Tensor,
    face_uv: torch.Tensor,
    texture: torch.Tensor,
    K: torch.Tensor,
    image_size: tuple[int, int],
    background: float | torch.Tensor = 0.0,
    fragments: Fragments | None = None,
) -> tuple[torch.Tensor, Fragments]:
    """Images ``(B, C, H, W)`` of textured meshes and their fragments.

    Args:
        vertices_cam: (B, V, 3) camera-frame vertices.
        faces: (F, 3) vertex indices; face_uv: (F, 3) indices into ``uv (T, 2)``.
        texture: (B, C, R, R) or shared (C, R, R).
        K: (B, 3, 3) or (3, 3).
        background: a value or a (B, C, H, W) image shown where no face is.
    """
    batch = vertices_cam.shape[0]
    if fragments is None:
        fragments = rasterize(vertices_cam, faces, K, image_size)
    if texture.dim() == 3:
        texture = texture.unsqueeze(0).expand(batch, -1, -1, -1)
    pix_uv = interpolate_vertex_attributes(fragments, face_uv, uv.to(vertices_cam))
    colour = F.grid_sample(texture, uv_to_grid(pix_uv).to(texture), mode="bilinear",
                           padding_mode="border", align_corners=False)
    mask = fragments.mask.unsqueeze(1)
    if not torch.is_tensor(background):
        background = torch.full_like(colour, float(background))
    return torch.where(mask, colour, background.to(colour)), fragments
