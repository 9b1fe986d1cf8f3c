"""Small textured meshes with known geometry (tests, benchmarks, examples)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class UVMesh:
    vertices: torch.Tensor  # (V, 3)
    faces: torch.Tensor  # (F, 3) int64, outward normals by the right-hand rule
    uv: torch.Tensor  # (V, 2), one UV per vertex
    face_uv: torch.Tensor  # (F, 3) int64 (here equal to faces)


def uv_ellipsoid(
    n_lat: int = 24,
    n_lon: int = 48,
    radii: tuple[float, float, float] = (1.0, 1.0, 1.0),
    dtype: torch.dtype = torch.float32,
) -> UVMesh:
    """Latitude/longitude ellipsoid centred at the origin, axis along y, with the UV map
    ``u = longitude / 2 pi``, ``v = 1 - latitude_index / n_lat`` (north pole at v = 1).

    The seam column and the pole rows are duplicated vertices (an open grid that closes in 3D),
    so the UV map is one rectangle covering the whole texture.
    """
    i = torch.arange(n_lat + 1, dtype=torch.float64)
    j = torch.arange(n_lon + 1, dtype=torch.float64)
    theta = (i / n_lat * math.pi)[:, None]  # from the north pole (+y)
    phi = (j / n_lon * 2 * math.pi)[None, :]
    x = radii[0] * torch.sin(theta) * torch.cos(phi)
    y = radii[1] * torch.cos(theta) * torch.ones_like(phi)
    z = -radii[2] * torch.sin(theta) * torch.sin(phi)
    vertices = torch.stack([x, y, z], dim=-1).reshape(-1, 3)
    uv = torch.stack(torch.broadcast_tensors(j[None, :] / n_lon, 1 - i[:, None] / n_lat), dim=-1)
    idx = torch.arange((n_lat + 1) * (n_lon + 1)).reshape(n_lat + 1, n_lon + 1)
    a, b = idx[:-1, :-1].flatten(), idx[:-1, 1:].flatten()
    c, d = idx[1:, :-1].flatten(), idx[1:, 1:].flatten()
    faces = torch.cat([torch.stack([a, c, b], -1), torch.stack([b, c, d], -1)])
    # Orient outwards: the signed volume (sum of v0 . (v1 x v2)) of a closed surface is positive.
    tri = vertices[faces]
    if torch.linalg.det(tri).sum() < 0:
        faces = faces[:, [0, 2, 1]]
    return UVMesh(vertices.to(dtype), faces, uv.reshape(-1, 2).to(dtype), faces.clone())
