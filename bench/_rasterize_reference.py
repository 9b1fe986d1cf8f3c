"""Frozen copy of ``texturepose.render.rasterize.rasterize`` as of 2026-12-01, before the speed
work of the "Speed" issue: ``bench/render.py`` times it beside the current rasteriser and checks
that both give the same fragments. Not used by the library; do not edit.

A vectorised z-buffer rasteriser in plain PyTorch (CPU and CUDA, same code).

Algorithm (no Python loop over faces or pixels):

1. Project the vertices, drop faces that are behind the near plane, back-facing (optional),
   degenerate, or that cover no pixel centre (their bounding box in pixel-centre terms is empty).
2. Group the remaining faces by the size of their pixel bounding box into a few square buckets
   (1, 2, 3, 4, 6, 8, 12, ... pixels). For each bucket, every face tests every pixel centre of
   its ``S x S`` box at once with precomputed edge-function planes (barycentrics are affine in
   screen space) and computes its depth from the affine plane of ``1/z``.
3. A candidate's depth (float32 bits, which order like the numbers for positive values) and its
   face index are packed into one int64 key; ``scatter_reduce(amin)`` keeps, per pixel, the
   nearest face. Large buckets are processed in chunks so memory stays bounded.
4. For the covered pixels only, perspective-correct barycentrics and depth are recomputed from
   the winning face; this step is differentiable with respect to the vertices (the face index
   is not).

Conventions: OpenCV camera frame (x right, y down, z forward); pixel ``(i, j)`` has its centre at
``(j + 0.5, i + 0.5)`` and is covered when its centre lies inside the projected triangle (edges
inclusive, with a tolerance of 1e-6 in barycentric units so that shared edges leave no cracks).
A face is front-facing when its vertices appear clockwise in the image (counter-clockwise seen
from outside in a y-up frame, i.e. outward normals by the right-hand rule); faces with a vertex
at ``z <= znear`` are dropped, not clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from texturepose.geometry.cameras import project

_KEY_EMPTY = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF
# Square bucket sides (pixels); larger boxes use successive powers of two.
_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_INSIDE_EPS = 1e-6


@dataclass
class Fragments:
    """Per-pixel rasterisation result for a batch.

    face_index: (B, H, W) int64, index into ``faces`` of the visible face, -1 for background.
    depth: (B, H, W) camera-frame z of the visible surface, ``inf`` for background.
    bary: (B, H, W, 3) perspective-correct barycentrics of the pixel centre in the visible face
        (zeros for background); interpolating vertex positions with them gives the 3D point
        seen through the pixel centre.
    """

    face_index: torch.Tensor
    depth: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool, pixels covered by the mesh."""
        return self.face_index >= 0


def _bucket_sides(max_side: int) -> torch.Tensor:
    sides = list(_BUCKETS)
    while sides[-1] < max_side:
        sides.append(sides[-1] * 2)
    return torch.tensor(sides)


def _face_planes(p: torch.Tensor, inv_z: torch.Tensor, area: torch.Tensor):
    """Affine planes in screen space: barycentric ``b_i = a_i x + b_i y + c_i`` (``(n, 3)`` each)
    and inverse depth ``1/z = a x + b y + c`` (``(n,)`` each), for faces ``p (n, 3, 2)``."""
    x, y = p[..., 0], p[..., 1]
    x1, y1 = x.roll(-1, dims=1), y.roll(-1, dims=1)  # vertex i+1
    x2, y2 = x.roll(-2, dims=1), y.roll(-2, dims=1)  # vertex i+2
    a = -(y2 - y1) / area[:, None]
    b = (x2 - x1) / area[:, None]
    c = ((y2 - y1) * x1 - (x2 - x1) * y1) / area[:, None]
    return a, b, c, (a * inv_z).sum(1), (b * inv_z).sum(1), (c * inv_z).sum(1)


@torch.no_grad()
def _zbuffer(
    xy: torch.Tensor,
    z: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    cull_backfaces: bool,
    znear: float,
    max_candidates: int,
) -> torch.Tensor:
    """Face index (B, H, W) of the nearest face at each pixel centre, -1 where none."""
    batch, num_faces = xy.shape[0], faces.shape[0]
    device = xy.device
    p = xy[:, faces].float()  # (B, F, 3, 2)
    fz = z[:, faces].float()  # (B, F, 3)
    area = (p[..., 1, 0] - p[..., 0, 0]) * (p[..., 2, 1] - p[..., 0, 1]) - (
        p[..., 1, 1] - p[..., 0, 1]
    ) * (p[..., 2, 0] - p[..., 0, 0])
    lo = torch.ceil(p.amin(dim=2) - 0.5).clamp(min=0)  # first covered pixel centre, (B, F, 2)
    hi = torch.floor(p.amax(dim=2) - 0.5)
    hi[..., 0].clamp_(max=width - 1)
    hi[..., 1].clamp_(max=height - 1)
    keep = (fz > znear).all(dim=-1) & (hi >= lo).all(dim=-1) & (area.abs() > 1e-12)
    keep &= torch.isfinite(p).all(dim=-1).all(dim=-1)
    if cull_backfaces:
        keep &= area < 0  # clockwise in the y-down image = facing the camera
    flat = keep.flatten().nonzero().squeeze(1)
    buf = torch.full((batch * height * width,), _KEY_EMPTY, dtype=torch.int64, device=device)
    if flat.numel() > 0:
        b_idx = torch.div(flat, num_faces, rounding_mode="floor")
        f_idx = flat - b_idx * num_faces
        p, fz, area = p.flatten(0, 1)[flat], fz.flatten(0, 1)[flat], area.flatten()[flat]
        lo, hi = lo.flatten(0, 1)[flat].long(), hi.flatten(0, 1)[flat].long()
        planes = _face_planes(p, 1.0 / fz, area)
        side = (hi - lo + 1).amax(dim=1)
        sides = _bucket_sides(int(side.max())).to(device)
        bucket = torch.searchsorted(sides, side)
        order = torch.argsort(bucket)
        counts = torch.bincount(bucket, minlength=len(sides)).tolist()
        start = 0
        for k, count in enumerate(counts):
            if count == 0:
                continue
            s = int(sides[k])
            chunk = max(1, max_candidates // (s * s))
            for c0 in range(start, start + count, chunk):
                sel = order[c0 : min(c0 + chunk, start + count)]
                _scatter_bucket(
                    buf, s, sel, b_idx, f_idx, lo, hi, planes, height, width
                )
            start += count
    face = torch.where(buf == _KEY_EMPTY, -1, buf & _LOW32)
    return face.view(batch, height, width)


def _scatter_bucket(buf, s, sel, b_idx, f_idx, lo, hi, planes, height, width) -> None:
    """Test the ``s x s`` pixel centres of the faces ``sel``; keep the nearest per pixel."""
    ar = torch.arange(s, device=buf.device)
    px = lo[sel, 0, None, None] + ar[None, None, :]  # (n, 1, s)
    py = lo[sel, 1, None, None] + ar[None, :, None]  # (n, s, 1)
    xc, yc = px.float() + 0.5, py.float() + 0.5
    a, b, c, ia, ib, ic = (t[sel] for t in planes)
    inside = (px <= hi[sel, 0, None, None]) & (py <= hi[sel, 1, None, None])
    for i in range(3):  # the three edge functions
        bi = a[:, i, None, None] * xc + (b[:, i, None, None] * yc + c[:, i, None, None])
        inside &= bi >= -_INSIDE_EPS
    inv_z = ia[:, None, None] * xc + (ib[:, None, None] * yc + ic[:, None, None])
    depth = (1.0 / inv_z).float()
    inside &= inv_z > 0
    key = (depth.view(torch.int32).to(torch.int64) << 32) | f_idx[sel, None, None]
    key = torch.where(inside, key, _KEY_EMPTY)
    pix = (b_idx[sel, None, None] * height + py.clamp(max=height - 1)) * width + px.clamp(
        max=width - 1
    )
    buf.scatter_reduce_(0, pix.flatten(), key.flatten(), reduce="amin")


def rasterize(
    vertices_cam: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    image_size: tuple[int, int],
    cull_backfaces: bool = True,
    znear: float = 1e-3,
    max_candidates: int = 1 << 22,
) -> Fragments:
    """Rasterise a batch of meshes sharing one topology.

    Args:
        vertices_cam: (B, V, 3) camera-frame vertices (OpenCV frame, see module doc).
        faces: (F, 3) int64 vertex indices.
        K: (B, 3, 3) or (3, 3) intrinsics in pixels.
        image_size: (H, W).
        cull_backfaces: skip faces seen from behind (closed meshes: the result is the same,
            only faster).
        znear: faces with any vertex nearer than this (metres) are dropped.
        max_candidates: bound on (face, pixel) candidates tested at once (memory).

    Returns:
        :class:`Fragments`; ``depth`` and ``bary`` are differentiable w.r.t. ``vertices_cam``.
    """
    if vertices_cam.dim() != 3 or vertices_cam.shape[-1] != 3:
        raise ValueError(f"vertices_cam must be (B, V, 3), got {tuple(vertices_cam.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    height, width = int(image_size[0]), int(image_size[1])
    faces = faces.to(device=vertices_cam.device, dtype=torch.int64)
    K = K.to(vertices_cam)
    if K.dim() == 2:
        K = K.expand(vertices_cam.shape[0], 3, 3)
    xy = project(vertices_cam.detach(), K)
    face_index = _zbuffer(
        xy, vertices_cam[..., 2].detach(), faces, height, width, cull_backfaces, znear,
        max_candidates,
    )
    bary, depth = _pixel_barycentrics(vertices_cam, faces, K, face_index)
    return Fragments(face_index=face_index, depth=depth, bary=bary)


def _pixel_barycentrics(vertices_cam, faces, K, face_index):
    """Perspective-correct barycentrics and depth at covered pixel centres (differentiable)."""
    batch, height, width = face_index.shape
    flat = face_index.flatten()
    fg = (flat >= 0).nonzero().squeeze(1)
    b = torch.div(fg, height * width, rounding_mode="floor")
    rem = fg - b * height * width
    yc = torch.div(rem, width, rounding_mode="floor").to(vertices_cam.dtype) + 0.5
    xc = (rem % width).to(vertices_cam.dtype) + 0.5
    v = vertices_cam[b[:, None], faces[flat[fg]]]  # (n, 3, 3)
    p = project(v, K[b])  # each covered pixel's triangle, (n, 3, 2)
    x, y = p[..., 0], p[..., 1]
    x1, y1 = x.roll(-1, dims=1), y.roll(-1, dims=1)
    x2, y2 = x.roll(-2, dims=1), y.roll(-2, dims=1)
    edge = (x2 - x1) * (yc[:, None] - y1) - (y2 - y1) * (xc[:, None] - x1)  # (n, 3)
    w = edge / v[..., 2]  # screen barycentrics (unnormalised) divided by depth
    wsum = w.sum(dim=1, keepdim=True)
    bary_fg = w / wsum
    depth_fg = (edge.sum(dim=1, keepdim=True) / wsum).squeeze(1)
    bary = torch.zeros(batch * height * width, 3, dtype=vertices_cam.dtype,
                       device=vertices_cam.device).index_put((fg,), bary_fg)
    depth = torch.full((batch * height * width,), float("inf"), dtype=vertices_cam.dtype,
                       device=vertices_cam.device).index_put((fg,), depth_fg)
    return bary.view(batch, height, width, 3), depth.view(batch, height, width)


def interpolate_vertex_attributes(
    fragments: Fragments, faces: torch.Tensor, attributes: torch.Tensor
) -> torch.Tensor:
    """Interpolate per-vertex ``attributes (B, V, C)`` (or shared ``(V, C)``) at the pixels:
    ``(B, H, W, C)``, zeros for background. ``faces`` indexes the attribute rows, so UVs with
    their own topology pass ``face_uv`` here."""
    face_index = fragments.face_index
    batch = face_index.shape[0]
    if attributes.dim() == 2:
        attributes = attributes.unsqueeze(0).expand(batch, -1, -1)
    faces = faces.to(face_index.device)
    safe = face_index.clamp(min=0)
    corner = faces[safe]  # (B, H, W, 3)
    bidx = torch.arange(batch, device=face_index.device)[:, None, None, None]
    vals = attributes[bidx, corner]  # (B, H, W, 3, C)
    out = (fragments.bary.unsqueeze(-1).to(vals) * vals).sum(dim=-2)
    return out * fragments.mask.unsqueeze(-1)
