"""Texture maps: a UV atlas of texels and per-image texture sampling with visibility.

Texel convention: an ``R x R`` texture image whose texel ``(row r, column c)`` has its centre at
``u = (c + 0.5) / R``, ``v = 1 - (r + 0.5) / R`` (v points up, row 0 is the top of the map, as in
image files of UV textures). The atlas is built once per body model by rasterising the UV
triangles (no perspective): each texel inside a UV triangle records that face and its
barycentrics, so the texel's 3D point on any posed mesh is the barycentric blend of the face's
vertices.

Sampling: the texels' 3D points are projected with the camera and the image is read with
``grid_sample`` (bilinear, ``align_corners=False``, matching the pixel-centre convention of
:mod:`texturepose.geometry.cameras`). The colours are differentiable with respect to the
vertices (pose, shape) and the camera; visibility is not.

Visibility of a texel (see :func:`point_visibility`): its point must project inside the image,
face the camera (``cos > min_cos`` between its face normal and the direction to the camera), and
pass a depth test against the rasterised surface: the depth of the face rasterised at the
point's pixel, evaluated on that face's plane at the point's exact sub-pixel position, must not
be nearer than the point's depth by more than ``depth_tol`` metres.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from texturepose.files import atomic_path
from texturepose.geometry.cameras import pixel_rays, project
from texturepose.render.rasterize import Fragments, rasterize

log = logging.getLogger(__name__)

#: Default depth-test tolerance (metres): about the thickness below which surfaces merge.
DEFAULT_DEPTH_TOL = 0.01


@dataclass
class UVAtlas:
    """Texels of an ``R x R`` texture map that lie on the surface.

    face_index: (R, R) int64, face under each texel (-1 outside every UV triangle).
    bary: (R, R, 3) float32 barycentrics of the texel centre in that face.
    num_faces: F of the mesh topology the atlas was built for.
    """

    face_index: torch.Tensor
    bary: torch.Tensor
    num_faces: int

    @property
    def resolution(self) -> int:
        return int(self.face_index.shape[0])

    @property
    def mask(self) -> torch.Tensor:
        """(R, R) bool, texels on the surface."""
        return self.face_index >= 0

    @property
    def texel_index(self) -> torch.Tensor:
        """(N,) flat indices (row-major) of the surface texels."""
        return self.mask.flatten().nonzero().squeeze(1)

    @property
    def texel_face(self) -> torch.Tensor:
        return self.face_index.flatten()[self.texel_index]

    @property
    def texel_bary(self) -> torch.Tensor:
        return self.bary.reshape(-1, 3)[self.texel_index]

    def to(self, device: torch.device | str) -> UVAtlas:
        return UVAtlas(self.face_index.to(device), self.bary.to(device), self.num_faces)

    @classmethod
    def build(
        cls, uv: torch.Tensor, face_uv: torch.Tensor, faces: torch.Tensor, resolution: int
    ) -> UVAtlas:
        """Rasterise the UV triangles ``face_uv`` (indices into ``uv (T, 2)`` in [0, 1]) at
        ``resolution``; ``faces`` (F, 3) is the matching 3D topology (same face order)."""
        if face_uv.shape != faces.shape:
            raise ValueError(
                f"face_uv {tuple(face_uv.shape)} and faces {tuple(faces.shape)} must both be "
                "(F, 3) with the same face order"
            )
        if uv.dim() != 2 or uv.shape[1] != 2:
            raise ValueError(f"uv must be (T, 2), got {tuple(uv.shape)}")
        r = int(resolution)
        uv = uv.detach().to(torch.float64).cpu()
        # UV triangles as a "mesh" at unit depth seen by an identity camera: screen = texel units.
        ones = torch.ones(len(uv), dtype=uv.dtype)
        verts = torch.stack([uv[:, 0] * r, (1.0 - uv[:, 1]) * r, ones], dim=-1)
        frags = rasterize(verts[None], face_uv.cpu().long(), torch.eye(3, dtype=uv.dtype), (r, r),
                          cull_backfaces=False)
        atlas = cls(frags.face_index[0], frags.bary[0].float(), int(faces.shape[0]))
        log.info("UV atlas %dx%d: %d surface texels (%.1f%%)", r, r, int(atlas.mask.sum()),
                 100.0 * float(atlas.mask.float().mean()))
        return atlas

    def save(self, path: str | os.PathLike) -> None:
        """Write an .npz atomically (temporary file, then rename)."""
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, face_index=self.face_index.cpu().numpy().astype(np.int32),
                                bary=self.bary.cpu().numpy().astype(np.float32),
                                num_faces=np.int64(self.num_faces))

    @classmethod
    def load(cls, path: str | os.PathLike, num_faces: int | None = None) -> UVAtlas:
        """Read an atlas written by :meth:`save`; ``num_faces`` checks it matches the mesh."""
        path = Path(path)
        try:
            with np.load(path) as z:
                face_index, bary, nf = z["face_index"], z["bary"], int(z["num_faces"])
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(
                f"{path}: not a UV atlas .npz (expected arrays face_index, bary, num_faces): {e}. "
                "Delete it to rebuild it with UVAtlas.build(...).save(path)."
            ) from e
        r = face_index.shape[0]
        if face_index.shape != (r, r) or bary.shape != (r, r, 3):
            raise ValueError(f"{path}: face_index {face_index.shape} / bary {bary.shape} are not "
                             f"(R, R) / (R, R, 3); delete the file to rebuild it")
        if num_faces is not None and nf != num_faces:
            raise ValueError(f"{path}: atlas built for {nf} faces, the mesh has {num_faces}; "
                             "delete the file to rebuild it for this body model")
        return cls(torch.from_numpy(face_index.astype(np.int64)), torch.from_numpy(bary), nf)


def surface_points(
    vertices: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor, bary: torch.Tensor
) -> torch.Tensor:
    """Points ``(B, N, 3)`` at barycentrics ``bary (N, 3)`` of faces ``face_idx (N,)``."""
    corners = vertices[:, faces[face_idx]]  # (B, N, 3, 3)
    return (corners * bary.to(vertices)[None, :, :, None]).sum(dim=2)


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit outward normals ``(B, F, 3)`` (right-hand rule on the vertex order)."""
    v = vertices[:, faces]
    n = torch.cross(v[:, :, 1] - v[:, :, 0], v[:, :, 2] - v[:, :, 0], dim=-1)
    return F.normalize(n, dim=-1)


@torch.no_grad()
def point_visibility(
    points_cam: torch.Tensor,
    fragments: Fragments | torch.Tensor,
    K: torch.Tensor,
    vertices_cam: torch.Tensor | None = None,
    faces: torch.Tensor | None = None,
    depth_tol: float = DEFAULT_DEPTH_TOL,
    normals: torch.Tensor | None = None,
    min_cos: float = 0.0,
) -> torch.Tensor:
    """Visibility of camera-frame points ``(B, N, 3)`` on a rasterised surface: (B, N) bool.

    With ``normals (B, N, 3)`` (outward, camera frame), a point must also face the camera:
    ``cos > min_cos`` between its normal and the direction to the camera. This is what rejects
    the far side of thin parts (fingers, ears), which the depth test alone cannot within
    ``depth_tol``.

    With :class:`Fragments` (and the mesh), the reference depth is that of the face rasterised at
    the point's pixel, evaluated on the face's plane at the point's exact projection, so a point
    on the visible surface passes with an error far below a pixel's depth range even on slanted
    surfaces. With a depth map ``(B, H, W)`` only, the pixel's own depth is the reference (use a
    larger ``depth_tol`` then). Points outside the image or over background are not visible.
    """
    if K.dim() == 2:
        K = K.expand(points_cam.shape[0], 3, 3)
    depth_map = fragments.depth if isinstance(fragments, Fragments) else fragments
    batch, height, width = depth_map.shape
    uv = project(points_cam, K)
    ix, iy = torch.floor(uv[..., 0]).long(), torch.floor(uv[..., 1]).long()
    inside = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height) & (points_cam[..., 2] > 0)
    flat = iy.clamp(0, height - 1) * width + ix.clamp(0, width - 1)
    ref = depth_map.reshape(batch, -1).gather(1, flat).to(points_cam)
    if isinstance(fragments, Fragments) and vertices_cam is not None and faces is not None:
        face = fragments.face_index.reshape(batch, -1).gather(1, flat)
        bidx = torch.arange(batch, device=face.device)[:, None, None]
        tri = vertices_cam[bidx, faces[face.clamp(min=0)]]  # (B, N, 3, 3)
        n = torch.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :], dim=-1)
        ray = pixel_rays(uv, K).to(points_cam)  # z = 1, so the ray parameter is the depth
        n_dot_ray = (n * ray).sum(-1)
        plane = (n * tri[..., 0, :]).sum(-1) / n_dot_ray
        # Near-grazing faces make the plane ill-conditioned: keep the pixel depth there.
        cos = n_dot_ray.abs() / (n.norm(dim=-1) * ray.norm(dim=-1)).clamp(min=1e-12)
        ok = (cos > 0.1) & torch.isfinite(plane) & (plane > 0) & (face >= 0)
        ref = torch.where(ok, plane, ref)
    visible = inside & torch.isfinite(ref) & (points_cam[..., 2] <= ref + depth_tol)
    if normals is not None:
        visible &= facing_cosine(points_cam, normals) > min_cos
    return visible


def facing_cosine(points_cam: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Cosine between outward normals and the direction from the points to the camera centre."""
    return -(F.normalize(normals, dim=-1) * F.normalize(points_cam, dim=-1)).sum(-1)


def sample_texture(
    image: torch.Tensor,
    vertices_cam: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    atlas: UVAtlas,
    fragments_or_depth: Fragments | torch.Tensor | None = None,
    depth_tol: float = DEFAULT_DEPTH_TOL,
    min_cos: float = 0.0,
    grazing_power: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Texture map of each image through its mesh.

    Args:
        image: (B, C, H, W) float images (any value range).
        vertices_cam: (B, V, 3) camera-frame vertices; gradients flow to them through the
            sampling positions.
        faces: (F, 3) int64, the topology the atlas was built for.
        K: (B, 3, 3) or (3, 3) intrinsics (pixels of ``image``).
        atlas: the body model's :class:`UVAtlas`.
        fragments_or_depth: rasterisation of the same meshes at the image size (computed here
            when None), or just a depth map (B, H, W) (cruder test, see point_visibility).
        depth_tol: depth-test tolerance in metres.
        min_cos: texels whose face normal makes ``cos <= min_cos`` with the direction to the
            camera are not visible (0: back-facing and exactly grazing ones).
        grazing_power: when > 0, visibility becomes the weight ``cos ** grazing_power`` so that
            texels seen at grazing angles (stretched, blurred samples) count less.

    Returns:
        texture (B, C, R, R) (zeros off the surface) and visibility (B, R, R) in [0, 1]
        (float; 0/1 unless ``grazing_power > 0``), detached.
    """
    batch, channels, height, width = image.shape
    if vertices_cam.shape[0] != batch:
        raise ValueError(f"image batch {batch} != vertices batch {vertices_cam.shape[0]}")
    if faces.shape[0] != atlas.num_faces:
        raise ValueError(f"atlas built for {atlas.num_faces} faces, mesh has {faces.shape[0]}; "
                         "build the atlas from this body model's uv/face_uv/faces")
    device = vertices_cam.device
    faces = faces.to(device=device, dtype=torch.int64)
    K = K.to(vertices_cam)
    if K.dim() == 2:
        K = K.expand(batch, 3, 3)
    if fragments_or_depth is None:
        fragments_or_depth = rasterize(vertices_cam.detach(), faces, K, (height, width))
    texel = atlas.texel_index.to(device)
    tface, tbary = atlas.texel_face.to(device), atlas.texel_bary.to(device)
    points = surface_points(vertices_cam, faces, tface, tbary)  # (B, N, 3)
    uv = project(points, K)
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=uv.dtype, device=device)
    grid = (uv * scale - 1.0).unsqueeze(1).to(image.dtype)  # (B, 1, N, 2)
    colours = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)[:, :, 0]  # (B, C, N)
    with torch.no_grad():
        normal = face_normals(vertices_cam.detach(), faces)[:, tface]
        vis = point_visibility(points.detach(), fragments_or_depth, K, vertices_cam.detach(),
                               faces, depth_tol, normal, min_cos).to(image.dtype)
        if grazing_power > 0:
            cos = facing_cosine(points.detach(), normal).to(image.dtype)
            vis = vis * cos.clamp(min=0) ** grazing_power
    r = atlas.resolution
    texture = _scatter_texels(colours, texel, r)
    visibility = image.new_zeros(batch, r * r)
    visibility[:, texel] = vis
    return texture, visibility.view(batch, r, r)


def _scatter_texels(values: torch.Tensor, texel: torch.Tensor, r: int) -> torch.Tensor:
    """(B, C, N) texel values -> (B, C, R, R) map, zeros off the surface (differentiable)."""
    batch, channels, _ = values.shape
    out = values.new_zeros(batch, channels, r * r)
    out = out.index_copy(2, texel, values)
    return out.view(batch, channels, r, r)
