"""Shaded mesh overlays for reports and the demo, drawn with the same rasteriser.

Lambert shading with smooth (area-weighted) vertex normals and a light at the camera, plus an
ambient term, alpha-blended over the image where the mesh covers it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from texturepose.render.rasterize import interpolate_vertex_attributes, rasterize

DEFAULT_COLOR = (0.65, 0.74, 0.86)  # light blue (RGB, 0..1)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals ``(B, V, 3)`` of ``vertices (B, V, 3)``."""
    tri = vertices[:, faces]
    n = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    vn = torch.zeros_like(vertices).index_add_(1, faces.flatten(), n.repeat_interleave(3, dim=1))
    return F.normalize(vn, dim=-1)


@torch.no_grad()
def render_overlay(
    image: np.ndarray,
    vertices_cam: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    K: torch.Tensor | np.ndarray,
    color: tuple[float, float, float] = DEFAULT_COLOR,
    alpha: float = 0.85,
    ambient: float = 0.35,
) -> np.ndarray:
    """Draw the mesh ``vertices_cam (V, 3)`` (camera frame) shaded over ``image`` (H, W, 3) uint8
    (RGB); returns a new uint8 image. ``K`` is (3, 3) in pixels of ``image``."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    v = torch.as_tensor(vertices_cam, dtype=torch.float32)[None]
    f = torch.as_tensor(faces, dtype=torch.int64)
    k = torch.as_tensor(K, dtype=torch.float32)
    height, width = image.shape[:2]
    frags = rasterize(v, f, k, (height, width))
    normal = F.normalize(interpolate_vertex_attributes(frags, f, vertex_normals(v, f)), dim=-1)
    # Light at the camera: shade by the normal's cosine with the direction to the camera.
    points = interpolate_vertex_attributes(frags, f, v)
    cos = (-(normal * F.normalize(points, dim=-1)).sum(-1)).clamp(min=0)
    shade = (ambient + (1.0 - ambient) * cos)[0, ..., None]  # (H, W, 1)
    rgb = shade * torch.tensor(color)
    mask = frags.mask[0, ..., None].float() * alpha
    out = torch.from_numpy(image).float() / 255.0
    out = out * (1 - mask) + rgb * mask
    return (out.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


@torch.no_grad()
def render_side_view(
    vertices_cam: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    K: torch.Tensor | np.ndarray,
    image_size: tuple[int, int],
    angle_deg: float = 90.0,
    background: int = 255,
    color: tuple[float, float, float] = DEFAULT_COLOR,
) -> np.ndarray:
    """The mesh turned by ``angle_deg`` about the vertical (camera y) axis through its centre,
    drawn on a plain background of size ``image_size (H, W)``: a side view of a prediction."""
    v = torch.as_tensor(vertices_cam, dtype=torch.float32)
    centre = v.mean(dim=0, keepdim=True)
    a = math.radians(angle_deg)
    rot = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0],
                        [-math.sin(a), 0.0, math.cos(a)]])
    turned = (v - centre) @ rot.T + centre
    canvas = np.full((int(image_size[0]), int(image_size[1]), 3), background, dtype=np.uint8)
    return render_overlay(canvas, turned, faces, K, color=color, alpha=1.0)
