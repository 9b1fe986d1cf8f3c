"""A vectorised z-buffer rasteriser in plain PyTorch (CPU and CUDA, same code).

Algorithm (no Python loop over faces or pixels):

1. Project the vertices, then drop faces that are behind the near plane or not finite (their
   corners become NaN, which fails every test), back-facing (optional), degenerate, or that
   cover no pixel centre (their bounding box in pixel-centre terms is empty), all before any
   binning. Per-face arrays are corner-major ``(3, F*B)`` so these tests run on contiguous rows.
2. Group the remaining faces by the size of their pixel bounding box into a few buckets
   (sides 1, 2, 3, 4, 6, 8, 12, ... pixels; square for few faces, separate widths and heights
   for many). For each bucket, every face tests every pixel centre of its box at once with
   precomputed edge-function planes (barycentrics are affine in screen space) and computes its
   depth from the affine plane of ``1/z``.
3. A candidate's depth (float32 bits, which order like the numbers for positive values) and its
   face index are packed into one int64 key; ``scatter_reduce(amin)`` keeps, per pixel, the
   nearest face. Large buckets are processed in chunks so memory stays bounded.
4. For the covered pixels only, perspective-correct barycentrics and depth are recomputed from
   the winning face; this step is differentiable with respect to the vertices (the face index
   is not).

The speed work of 2026-12-01 (``bench/render.py`` times it beside the frozen previous version,
``bench/_rasterize_reference.py``) reorganised the work but not the arithmetic: on the CPU the
same face wins every pixel and depth and barycentrics are the same bits (``tests/test_rasterize.py``
checks it); vertex gradients agree to float rounding.

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
# Keys at or above this are empty: a tested pixel centre outside its face gets the high word
# 0x7FFFFFFF, above the bits of every positive float32 depth (at most 0x7F800000, +inf).
_KEY_MISS = 0x7FFFFFFF << 32
_LOW32 = 0xFFFFFFFF
# Bucket sides (pixels); larger boxes use successive powers of two.
_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
# From this many faces on, buckets have their own width and height (on Anny 40% fewer pixel
# centres to test than square ones, but about 5 times as many buckets, each a fixed cost of a
# few dozen small ops: square buckets are faster for one image, rectangles for a batch).
_RECT_MIN_FACES = 1 << 16
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


@torch.no_grad()
def _zbuffer(
    xy: torch.Tensor,
    z: torch.Tensor,
    faces_t: torch.Tensor,
    height: int,
    width: int,
    cull_backfaces: bool,
    znear: float,
    max_candidates: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Face index (B, H, W) of the nearest face at each pixel centre (-1 where none), and the
    flat indices of the covered pixels, for faces ``faces_t (3, F)`` (contiguous).

    Per-face arrays are corner-major ``(3, F, B)``: gathering a face's corners copies rows of B
    contiguous floats, and every reduction over corners runs on contiguous rows (the former
    ``(B, F, 3, 2)`` layout and its strided reductions took half of the time).
    """
    batch = z.shape[0]
    device = xy.device
    x = xy[..., 0].float().t().contiguous()  # (V, B)
    y = xy[..., 1].float().t().contiguous()
    zf = z.float().t().contiguous()
    # A vertex behind the near plane or not finite turns its faces' coordinates NaN, and every
    # test below is False on NaN: one pass over vertices replaces three over face corners.
    x.masked_fill_(~((zf > znear) & torch.isfinite(x) & torch.isfinite(y)), float("nan"))
    corners = faces_t.view(-1)  # (3F,)

    def gather(t: torch.Tensor) -> torch.Tensor:  # (V, B) -> (3, F*B), index f*B + b
        # One image: a flat gather (row gathers of one element each are 5x slower).
        return (t.view(-1) if batch == 1 else t).index_select(0, corners).view(3, -1)

    cx, cy = gather(x), gather(y)
    # In-place arithmetic on the (F*B,) temporaries: fresh large buffers cost page faults.
    area = (cx[1] - cx[0]).mul_(cy[2] - cy[0]).sub_((cy[1] - cy[0]).mul_(cx[2] - cx[0]))
    lox = cx.amin(0).sub_(0.5).ceil_().clamp_(min=0)  # first covered pixel centre
    loy = cy.amin(0).sub_(0.5).ceil_().clamp_(min=0)
    hix = cx.amax(0).sub_(0.5).floor_().clamp_(max=width - 1)
    hiy = cy.amax(0).sub_(0.5).floor_().clamp_(max=height - 1)
    keep = area < -1e-12 if cull_backfaces else area.abs() > 1e-12
    keep &= hix >= lox
    keep &= hiy >= loy
    flat = keep.nonzero().squeeze(1)
    buf = torch.full((batch * height * width,), _KEY_EMPTY, dtype=torch.int64, device=device)
    if flat.numel() > 0:
        box = torch.stack([t.index_select(0, flat) for t in (lox, loy, hix, hiy)])  # (4, n)
        size = (box[2:] - box[:2]).long() + 1  # (2, n) box width and height
        if flat.numel() < _RECT_MIN_FACES:
            size = size.amax(0, keepdim=True).expand(2, -1).contiguous()
        sides = _bucket_sides(int(size.max()))
        # Side -> bucket lookup (a gather, cheaper than searchsorted).
        lut = torch.searchsorted(sides, torch.arange(sides[-1] + 1), out_int32=True)
        bx, by = lut.to(device).index_select(0, size.view(-1)).view(2, -1)
        ns = len(sides)
        bucket = by * ns + bx
        order = torch.argsort(bucket)  # int32 keys: sorted about 10x faster than int64 ones
        flat = flat.index_select(0, order)
        box = box.index_select(1, order)
        counts = torch.bincount(bucket, minlength=ns * ns).tolist()
        f_idx = torch.div(flat, batch, rounding_mode="floor")
        b_idx = flat - f_idx * batch
        # Depths of the kept faces' corners only (their vertex rows in the (V, B) layout).
        vid = faces_t.index_select(1, f_idx).mul_(batch).add_(b_idx)
        pz = zf.view(-1).index_select(0, vid.view(-1)).view(3, -1)
        planes = _face_planes(cx.index_select(1, flat), cy.index_select(1, flat), 1.0 / pz,
                              area.index_select(0, flat))
        sides = sides.tolist()
        start = 0
        for k, count in enumerate(counts):
            if count == 0:
                continue
            sy, sx = sides[k // ns], sides[k % ns]
            chunk = max(1, max_candidates // (sx * sy))
            for c0 in range(start, start + count, chunk):
                c1 = min(c0 + chunk, start + count)
                _scatter_bucket(buf, sx, sy, box[:, c0:c1], [t[..., c0:c1] for t in planes],
                                b_idx[c0:c1], f_idx[c0:c1], height, width)
            start += count
    miss = buf >= _KEY_MISS
    face = buf.bitwise_and_(_LOW32).masked_fill_(miss, -1)  # in place: no new B*H*W buffers
    return face.view(batch, height, width), miss.logical_not_().nonzero().squeeze(1)


def _face_planes(x: torch.Tensor, y: torch.Tensor, inv_z: torch.Tensor, area: torch.Tensor
                 ) -> tuple[torch.Tensor, ...]:
    """Affine planes in screen space: barycentric ``b_i = a_i x + b_i y + c_i`` (``(3, n)``
    each) and inverse depth ``1/z = a x + b y + c`` (``(n,)`` each), for corners ``(3, n)``."""
    x1, y1 = x.roll(-1, 0), y.roll(-1, 0)  # vertex i+1
    x2, y2 = x.roll(-2, 0), y.roll(-2, 0)  # vertex i+2
    a = -(y2 - y1) / area
    b = (x2 - x1) / area
    c = ((y2 - y1) * x1 - (x2 - x1) * y1) / area
    return a, b, c, (a * inv_z).sum(0), (b * inv_z).sum(0), (c * inv_z).sum(0)


def _scatter_bucket(buf: torch.Tensor, sx: int, sy: int, box: torch.Tensor,
                    planes: list[torch.Tensor], b_idx: torch.Tensor, f_idx: torch.Tensor,
                    height: int, width: int) -> None:
    """Test the ``sy x sx`` pixel centres of a bucket's faces; keep the nearest per pixel."""
    a, b, c, ia, ib, ic = planes
    col = box[0, :, None] + torch.arange(sx, device=buf.device, dtype=box.dtype)  # (n, sx)
    row = box[1, :, None] + torch.arange(sy, device=buf.device, dtype=box.dtype)  # (n, sy)
    # Centres past the box (or the image) become NaN so that every test fails there: the
    # bounds cost a pass over (n, s) instead of one over (n, s, s).
    xc = (col + 0.5).masked_fill_(col > box[2, :, None], float("nan"))[:, None, :]
    yc = (row + 0.5).masked_fill_(row > box[3, :, None], float("nan"))[:, :, None]
    edge = None
    for i in range(3):  # the three edge functions, each tested against the tolerance at once
        e = a[i, :, None, None] * xc + (b[i, :, None, None] * yc + c[i, :, None, None])
        edge = e if edge is None else torch.minimum(edge, e, out=edge)
    inv_z = ia[:, None, None] * xc + (ib[:, None, None] * yc + ic[:, None, None])
    inside = (edge >= -_INSIDE_EPS).logical_and_(inv_z > 0)
    bits = torch.reciprocal(inv_z).view(torch.int32)  # depth; positive floats order as ints
    key = torch.where(inside, bits, 0x7FFFFFFF).long().bitwise_left_shift_(32)
    key.bitwise_or_(f_idx[:, None, None])
    pix = ((b_idx[:, None] * height + row.long().clamp_(max=height - 1)) * width)[:, :, None]
    pix = pix + col.long().clamp_(max=width - 1)[:, None, :]
    buf.scatter_reduce_(0, pix.view(-1), key.view(-1), reduce="amin")


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
    # Corner-major faces, made contiguous once (each gather from a transposed view copied it;
    # stacking the columns is 3x faster than a transposed copy).
    faces_t = torch.stack(faces.to(device=vertices_cam.device, dtype=torch.int64).unbind(1))
    K = K.to(vertices_cam)
    if K.dim() == 2:
        K = K.expand(vertices_cam.shape[0], 3, 3)
    xy = project(vertices_cam.detach(), K)
    face_index, fg = _zbuffer(
        xy, vertices_cam[..., 2].detach(), faces_t, height, width, cull_backfaces, znear,
        max_candidates,
    )
    # The barycentrics project every vertex once (fewer points than the covered pixels'
    # corners). Non-finite vertices belong to no drawn face; zeroing them keeps their NaN out of
    # the other vertices' gradients.
    uv = project(vertices_cam.nan_to_num(0.0, 0.0, 0.0), K)
    bary, depth = _pixel_barycentrics(vertices_cam, uv, faces_t, face_index, fg)
    return Fragments(face_index=face_index, depth=depth, bary=bary)


def _pixel_barycentrics(vertices_cam: torch.Tensor, uv: torch.Tensor, faces_t: torch.Tensor,
                        face_index: torch.Tensor, fg: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Perspective-correct barycentrics and depth at the covered pixel centres ``fg`` (flat
    indices), differentiable, from the projected vertices ``uv (B, V, 2)``."""
    batch, height, width = face_index.shape
    num_vertices = vertices_cam.shape[1]
    dtype, device = vertices_cam.dtype, vertices_cam.device
    b = torch.div(fg, height * width, rounding_mode="floor")
    rem = fg - b * height * width
    yc = torch.div(rem, width, rounding_mode="floor").to(dtype) + 0.5
    xc = (rem % width).to(dtype) + 0.5
    # Each covered pixel's triangle, corner-major (3, n), gathered from per-vertex u, v, z.
    vid = faces_t.index_select(1, face_index.view(-1).index_select(0, fg))
    vid = (vid + b * num_vertices).view(-1)
    x, y, zc = (t.reshape(-1).index_select(0, vid).view(3, -1)
                for t in (uv[..., 0], uv[..., 1], vertices_cam[..., 2]))
    x1, y1 = x.roll(-1, 0), y.roll(-1, 0)
    x2, y2 = x.roll(-2, 0), y.roll(-2, 0)
    edge = (x2 - x1) * (yc - y1) - (y2 - y1) * (xc - x1)  # (3, n)
    w = edge / zc  # screen barycentrics (unnormalised) divided by depth
    wsum = w.sum(dim=0)
    depth_fg = edge.sum(dim=0) / wsum
    # In-place copies into fresh buffers (autograd records them): an out-of-place index_put
    # copied the whole (B*H*W, 3) buffer once more.
    bary = torch.zeros(batch * height * width, 3, dtype=dtype, device=device)
    bary.index_copy_(0, fg, (w / wsum).t())
    depth = torch.full((batch * height * width,), float("inf"), dtype=dtype, device=device)
    depth.index_copy_(0, fg, depth_fg)
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
