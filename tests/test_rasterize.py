"""The z-buffer rasteriser against brute-force ray casting through every pixel centre."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texturepose.geometry.cameras import batched_intrinsics, intrinsics, pixel_rays, project
from texturepose.render.primitives import uv_ellipsoid
from texturepose.render.rasterize import interpolate_vertex_attributes, rasterize


def raycast_pixels(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, h: int, w: int):
    """Oracle: Moller-Trumbore ray of each pixel centre against every face (numpy, float64).
    Returns the nearest hit's face (-1 none) and depth; ignores facing (no culling)."""
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    d = np.stack([(jj - K[0, 2]) / K[0, 0], (ii - K[1, 2]) / K[1, 1], np.ones_like(jj)], -1)
    d = d.reshape(-1, 3)
    tri = vertices[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = np.cross(d[:, None], e2[None])
    det = (e1[None] * p).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        s = -tri[None, :, 0]
        u = (s * p).sum(-1) * inv
        q = np.cross(s, e1[None])
        v = (d[:, None] * q).sum(-1) * inv
        t = (e2[None] * q).sum(-1) * inv
        hit = (np.abs(det) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    t = np.where(hit, t, np.inf)
    face = np.where(hit.any(1), t.argmin(1), -1)
    return face.reshape(h, w), t.min(1).reshape(h, w)


def two_ellipsoids() -> tuple[torch.Tensor, torch.Tensor]:
    """An ellipsoid partly hiding another one: occlusion, silhouettes and varied face sizes."""
    a = uv_ellipsoid(12, 24, (0.5, 0.7, 0.4), dtype=torch.float64)
    b = uv_ellipsoid(10, 20, (0.6, 0.4, 0.5), dtype=torch.float64)
    va = a.vertices + torch.tensor([-0.2, 0.1, 3.0], dtype=torch.float64)
    vb = b.vertices + torch.tensor([0.35, -0.1, 3.8], dtype=torch.float64)
    faces = torch.cat([a.faces, b.faces + len(va)])
    return torch.cat([va, vb])[None], faces


def test_matches_raycast_oracle():
    verts, faces = two_ellipsoids()
    h, w = 40, 52  # non-square on purpose
    K = intrinsics((40.0, 42.0), (w, h), cx=27.0, cy=19.0, dtype=torch.float64)
    frags = rasterize(verts, faces, K, (h, w))
    ref_face, ref_depth = raycast_pixels(verts[0].numpy(), faces.numpy(), K.numpy(), h, w)
    ours = frags.face_index[0].numpy()
    assert ((ours >= 0) == (ref_face >= 0)).mean() >= 0.99
    same = (ours == ref_face) & (ours >= 0)
    # Pixels on a shared edge may go to either face; everything else must agree.
    assert same.sum() >= 0.97 * (ref_face >= 0).sum()
    hit = ours >= 0
    depth = frags.depth[0].numpy()
    # Ray parameter t with d_z = 1 is the depth itself.
    assert np.allclose(depth[hit], ref_depth[hit], rtol=1e-4, atol=1e-6)
    assert np.isinf(depth[~hit]).all() and (frags.bary[0][~torch.from_numpy(hit)] == 0).all()


def test_barycentrics_give_the_point_seen_through_the_pixel_centre():
    verts, faces = two_ellipsoids()
    K = batched_intrinsics(30.0, 32, 1, dtype=torch.float64)
    frags = rasterize(verts, faces, K, (32, 32))
    pts = interpolate_vertex_attributes(frags, faces, verts)[frags.mask]  # (n, 3)
    assert torch.allclose(frags.bary[frags.mask].sum(-1), torch.ones(len(pts), dtype=pts.dtype))
    ii, jj = frags.mask[0].nonzero().T
    centres = torch.stack([jj + 0.5, ii + 0.5], -1).to(pts)
    assert torch.allclose(project(pts[None], K)[0], centres, atol=1e-6)
    assert torch.allclose(pts[:, 2], frags.depth[frags.mask], atol=1e-9)


def test_culling_keeps_the_nearest_surface_of_closed_meshes():
    verts, faces = two_ellipsoids()
    K = intrinsics(40.0, 48, dtype=torch.float64)
    culled = rasterize(verts, faces, K, (48, 48), cull_backfaces=True)
    full = rasterize(verts, faces, K, (48, 48), cull_backfaces=False)
    assert (culled.face_index == full.face_index).float().mean() >= 0.995
    inside_out = rasterize(verts, faces[:, [0, 2, 1]], K, (48, 48), cull_backfaces=True)
    # Reversed winding: only the far (inner) sides are kept, so the nearest face never wins.
    assert inside_out.mask.any()
    assert (inside_out.depth[inside_out.mask] > full.depth[inside_out.mask]).float().mean() > 0.99


def brute_coverage(p: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pixel centres inside a 2D triangle by sign tests (closed form), (h, w) bool."""
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    q = np.stack([jj, ii], -1)

    def edge(a, b):
        return (b[0] - a[0]) * (q[..., 1] - a[1]) - (b[1] - a[1]) * (q[..., 0] - a[0])

    e = np.stack([edge(p[0], p[1]), edge(p[1], p[2]), edge(p[2], p[0])])
    return (e >= 0).all(0) | (e <= 0).all(0)


def test_large_triangles_and_chunking():
    # Two triangles larger than the image (big buckets); a tiny max_candidates forces chunks.
    z = 2.0
    verts = torch.tensor(
        [[[-3.0, -2.0, z], [1.5, -1.0, z], [0.5, 2.5, z], [0.2, 0.1, z - 0.5], [0.6, 0.15, z - 0.5],
          [0.3, 0.5, z - 0.5]]], dtype=torch.float64)
    faces = torch.tensor([[0, 2, 1], [3, 5, 4]])
    K = intrinsics(40.0, (80, 64), dtype=torch.float64)
    a = rasterize(verts, faces, K, (64, 80), cull_backfaces=False)
    b = rasterize(verts, faces, K, (64, 80), cull_backfaces=False, max_candidates=500)
    assert torch.equal(a.face_index, b.face_index)
    p = project(verts, K)[0].numpy()
    cov0, cov1 = brute_coverage(p[:3], 64, 80), brute_coverage(p[3:], 64, 80)
    expect = np.where(cov1, 1, np.where(cov0, 0, -1))  # face 1 is nearer
    assert (a.face_index[0].numpy() == expect).mean() >= 0.998


def test_batch_equals_separate_calls_and_behind_camera_is_dropped():
    verts, faces = two_ellipsoids()
    moved = verts + torch.tensor([0.3, 0.0, 0.5], dtype=torch.float64)
    behind = verts - torch.tensor([0.0, 0.0, 10.0], dtype=torch.float64)
    K = batched_intrinsics(40.0, 40, 3, dtype=torch.float64)
    batch = rasterize(torch.cat([verts, moved, behind]), faces, K, (40, 40))
    for i, v in enumerate([verts, moved]):
        single = rasterize(v, faces, K[:1], (40, 40))
        assert torch.equal(batch.face_index[i], single.face_index[0])
        assert torch.allclose(batch.depth[i], single.depth[0])
    assert not batch.mask[2].any()


def test_depth_and_barycentrics_are_differentiable():
    # Directional derivatives from autograd against central finite differences (float64).
    verts, faces = two_ellipsoids()
    K = intrinsics(30.0, 24, dtype=torch.float64)
    face = rasterize(verts, faces, K, (24, 24)).face_index
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(2, 24, 24, 4, generator=g, dtype=torch.float64)

    def f(v):
        out = rasterize(v, faces, K, (24, 24))
        assert torch.equal(out.face_index, face)  # perturbations too small to change coverage
        vals = torch.cat([out.depth[out.mask][:, None], out.bary[out.mask]], -1)
        return (vals * weights[0, ..., :4][out.mask[0]]).sum()

    v = verts.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(v), v)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    for _ in range(3):
        d = torch.randn(verts.shape, generator=g, dtype=torch.float64)
        eps = 1e-6
        fd = (f(verts + eps * d) - f(verts - eps * d)) / (2 * eps)
        assert torch.isclose((grad * d).sum(), fd, rtol=1e-4, atol=1e-6)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="vertices_cam"):
        rasterize(torch.zeros(5, 3), torch.zeros(1, 3, dtype=torch.long), torch.eye(3), (4, 4))
    with pytest.raises(ValueError, match="faces"):
        rasterize(torch.zeros(1, 5, 3), torch.zeros(3, dtype=torch.long), torch.eye(3), (4, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    verts, faces = two_ellipsoids()
    K = intrinsics(40.0, 48, dtype=torch.float64)
    cpu = rasterize(verts.float(), faces, K, (48, 48))
    gpu = rasterize(verts.float().cuda(), faces.cuda(), K.cuda(), (48, 48))
    assert (gpu.face_index.cpu() == cpu.face_index).float().mean() > 0.999
    same = gpu.face_index.cpu() == cpu.face_index
    assert torch.allclose(gpu.depth.cpu()[same], cpu.depth[same], rtol=1e-5)


def test_pixel_rays_through_pixel_centres_hit_the_rasterised_depth():
    verts, faces = two_ellipsoids()
    K = intrinsics(30.0, 20, dtype=torch.float64)
    frags = rasterize(verts, faces, K, (20, 20))
    ii, jj = frags.mask[0].nonzero().T
    uv = torch.stack([jj + 0.5, ii + 0.5], -1).to(verts)[None]
    pts = pixel_rays(uv, K) * frags.depth[frags.mask][None, :, None]
    assert torch.allclose(pts, interpolate_vertex_attributes(frags, faces, verts)[frags.mask][None])


def _reference_rasterize():
    """The rasteriser before the speed work (``bench/_rasterize_reference.py``, frozen)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "_rasterize_reference.py"
    spec = importlib.util.spec_from_file_location("_rasterize_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rasterize


def _assert_same_fragments(verts, faces, K, size, **kwargs):
    weights = torch.rand(verts.shape[0], *size, 4, generator=torch.Generator().manual_seed(1),
                         dtype=verts.dtype)
    outs = []
    for fn in (_reference_rasterize(), rasterize):
        v = verts.clone().requires_grad_(True)
        frags = fn(v, faces, K, size, **kwargs)
        vals = torch.cat([frags.depth.unsqueeze(-1), frags.bary], -1)[frags.mask]
        (vals * weights[frags.mask]).sum().backward()
        outs.append((frags, v.grad))
    (old, g_old), (new, g_new) = outs
    assert new.face_index.dtype == torch.int64 and new.depth.dtype == verts.dtype
    # Same arithmetic, reorganised: the same face per pixel and the same bits.
    assert torch.equal(old.face_index, new.face_index)
    assert torch.equal(old.depth, new.depth) and torch.equal(old.bary, new.bary)
    # Gradients: the same terms summed in another order.
    tol = 1e-5 if verts.dtype == torch.float32 else 1e-10
    assert torch.isfinite(g_new).all()
    assert torch.allclose(g_old, g_new, rtol=tol, atol=tol * float(g_old.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cull", [True, False])
def test_matches_the_previous_rasteriser(dtype, cull):
    verts, faces = two_ellipsoids()
    g = torch.Generator().manual_seed(0)
    batch = torch.cat([verts, verts + 0.05 * torch.randn(3, *verts.shape[1:], generator=g,
                                                         dtype=verts.dtype)])
    batch[2, :7, 2] = -1.0  # a few vertices behind the camera: their faces are dropped
    batch[3, 5] = float("nan")  # a non-finite vertex: its faces are dropped
    K = batched_intrinsics(40.0, (52, 40), 4, dtype=dtype)
    _assert_same_fragments(batch.to(dtype), faces, K, (40, 52), cull_backfaces=cull)


def test_matches_the_previous_rasteriser_with_large_faces_and_chunks():
    z = 2.0
    verts = torch.tensor(
        [[[-3.0, -2.0, z], [1.5, -1.0, z], [0.5, 2.5, z], [0.2, 0.1, z - 0.5], [0.6, 0.15, z - 0.5],
          [0.3, 0.5, z - 0.5]]], dtype=torch.float64)
    faces = torch.tensor([[0, 2, 1], [3, 5, 4]])
    K = intrinsics(40.0, (80, 64), dtype=torch.float64)
    _assert_same_fragments(verts, faces, K, (64, 80), cull_backfaces=False, max_candidates=500)


@pytest.mark.parametrize("rect_min_faces", [0, 1 << 30])
def test_matches_the_previous_rasteriser_with_both_bucket_shapes(rect_min_faces, monkeypatch):
    # Rectangular buckets (many faces) and square ones (few) give the same fragments.
    import texturepose.render.rasterize as module

    monkeypatch.setattr(module, "_RECT_MIN_FACES", rect_min_faces)
    mesh = uv_ellipsoid(30, 60, (0.5, 0.8, 0.3), dtype=torch.float32)
    g = torch.Generator().manual_seed(2)
    verts = mesh.vertices + torch.tensor([0.0, 0.0, 3.0])
    verts = verts + 0.1 * torch.randn(6, 1, 3, generator=g)
    K = batched_intrinsics(120.0, 96, 6)
    _assert_same_fragments(verts, mesh.faces, K, (96, 96))
