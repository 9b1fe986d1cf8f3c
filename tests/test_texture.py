"""UV atlas, texture sampling and visibility against closed forms and ray casting."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import roma
import torch
import torch.nn.functional as F

from texturepose.geometry.cameras import (
    BODY_TO_CAMERA,
    batched_intrinsics,
    intrinsics,
    project,
    weak_to_perspective_translation,
)
from texturepose.render.overlay import render_overlay, render_side_view, vertex_normals
from texturepose.render.primitives import uv_ellipsoid
from texturepose.render.rasterize import rasterize
from texturepose.render.texture import UVAtlas, point_visibility, sample_texture
from texturepose.render.textured import render_textured

log = logging.getLogger(__name__)


def smooth_texture(res: int = 256) -> torch.Tensor:
    """A smooth colour pattern in UV space, (3, res, res), row 0 = top (v = 1)."""
    g = (torch.arange(res) + 0.5) / res
    v, u = torch.meshgrid(1 - g, g, indexing="ij")
    blue = 0.5 + 0.5 * torch.sin(2 * math.pi * 2 * u) * torch.cos(2 * math.pi * 2 * v)
    return torch.stack([u, v, blue])


def anny_views(body, yaws, s: float = 1.0, res: int = 224):
    """Anny (rest pose, mean shape) turned by ``yaws`` (rad) about its vertical axis, placed in
    the camera frame by SPIN's weak-perspective conversion."""
    n = len(yaws)
    rot = body.rest_rotmats(n)
    rot[:, 0] = BODY_TO_CAMERA @ roma.rotvec_to_rotmat(
        torch.stack([torch.zeros(n), torch.tensor(yaws), torch.zeros(n)], -1))
    with torch.no_grad():
        verts = body(rot, body.mean_shape.expand(n, -1)).vertices
    t = weak_to_perspective_translation(torch.tensor([[s, 0.0, 0.05]]).expand(n, 3))
    return verts + t[:, None], batched_intrinsics(5000.0 * res / 224, res, n)


def raycast_visible(v: np.ndarray, faces: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Oracle: a vertex is visible when the segment from the camera centre (origin) to it hits
    no face other than those around it (Moller-Trumbore, numpy float64, chunked)."""
    tri = v[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    out = np.zeros(len(idx), bool)
    for c in range(0, len(idx), 64):
        ii = idx[c : c + 64]
        d = v[ii]
        p = np.cross(d[:, None], e2[None])
        det = (e1[None] * p).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / det
            s = -tri[None, :, 0]
            u = (s * p).sum(-1) * inv
            q = np.cross(s, e1[None])
            w = (d[:, None] * q).sum(-1) * inv
            t = (e2[None] * q).sum(-1) * inv
            hit = (np.abs(det) > 1e-15) & (u >= 0) & (w >= 0) & (u + w <= 1)
            hit &= (t > 1e-9) & (t < 1 - 1e-7)
        hit &= ~(faces[None] == ii[:, None, None]).any(-1)
        out[c : c + 64] = ~hit.any(1)
    return out


def test_atlas_texels_map_back_to_their_uv(tmp_path):
    mesh = uv_ellipsoid(8, 16)
    r = 32
    atlas = UVAtlas.build(mesh.uv, mesh.face_uv, mesh.faces, r)
    # The ellipsoid's UV map is the full square: every texel is on the surface.
    assert atlas.mask.all()
    # Closed form: the texel's barycentric blend of its face's UVs is the texel centre.
    uv = (mesh.uv[mesh.face_uv[atlas.texel_face]] * atlas.texel_bary[..., None]).sum(1)
    rows, cols = atlas.texel_index // r, atlas.texel_index % r
    centre = torch.stack([(cols + 0.5) / r, 1 - (rows + 0.5) / r], -1)
    assert torch.allclose(uv, centre, atol=1e-5)
    path = tmp_path / "atlas.npz"
    atlas.save(path)
    again = UVAtlas.load(path, num_faces=len(mesh.faces))
    assert torch.equal(again.face_index, atlas.face_index)
    assert torch.equal(again.bary, atlas.bary)
    assert [p.name for p in tmp_path.iterdir()] == ["atlas.npz"]  # no temporary left
    with pytest.raises(ValueError, match="atlas built for"):
        UVAtlas.load(path, num_faces=7)
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(ValueError, match=r"bad\.npz.*face_index"):
        UVAtlas.load(bad)


def test_convex_visibility_is_front_facing():
    # Closed form for a convex body: a surface point is visible exactly when it faces the camera.
    mesh = uv_ellipsoid(24, 48, (0.6, 0.8, 0.5))
    verts = (mesh.vertices @ roma.rotvec_to_rotmat(torch.tensor([0.3, 0.5, 0.1])).T
             + torch.tensor([0.1, 0.0, 4.0]))[None]
    K = intrinsics(120.0, 96)
    frags = rasterize(verts, mesh.faces, K, (96, 96))
    # The depth test alone (no normals): the far side is hidden by the near side.
    vis = point_visibility(verts, frags, K, verts, mesh.faces)[0]
    cos = -(vertex_normals(verts, mesh.faces)[0] * F.normalize(verts[0], dim=-1)).sum(-1)
    # Away from the silhouette: not grazing and no background pixel within 2 pixels.
    uv = project(verts, K)[0].long().clamp(0, 95)
    near_bg = F.max_pool2d((~frags.mask).float()[:, None], 5, 1, 2)[0, 0] > 0
    away = (cos.abs() > 0.15) & ~near_bg[uv[:, 1], uv[:, 0]]
    assert away.sum() > 300
    assert (vis == (cos > 0))[away].float().mean() >= 0.99


def test_visibility_agrees_with_ray_casting_on_anny(anny_body):
    verts, K = anny_views(anny_body, [0.6])
    faces = anny_body.faces
    frags = rasterize(verts, faces, K, (224, 224))
    rng = np.random.default_rng(0)
    idx = rng.choice(verts.shape[1], 900, replace=False)
    normals = vertex_normals(verts, faces)[:, idx]
    ours = point_visibility(verts[:, idx], frags, K, verts, faces, normals=normals)[0].numpy()
    oracle = raycast_visible(verts[0].double().numpy(), faces.numpy(), idx)
    # Away from silhouettes: not grazing, and no depth jump (> 5 cm) within 2 pixels.
    cos = -(normals[0] * F.normalize(verts[0, idx], dim=-1)).sum(-1)
    depth = frags.depth.clamp(max=1e3)[:, None]
    jump = (F.max_pool2d(depth, 5, 1, 2) + F.max_pool2d(-depth, 5, 1, 2))[0, 0]
    uv = project(verts[:, idx], K)[0].long()
    inside = (uv >= 0).all(-1) & (uv < 224).all(-1)
    uvc = uv.clamp(0, 223)
    away = (cos.abs() > 0.2) & inside & (jump[uvc[:, 1], uvc[:, 0]] < 0.05)
    away = away.numpy()
    agree = (ours == oracle)[away].mean()
    log.info("visibility vs ray casting: %.4f agree on %d vertices away from silhouettes, %.4f "
             "on all %d", agree, away.sum(), (ours == oracle).mean(), len(idx))
    assert away.sum() > 150 and oracle[away].any() and not oracle[away].all()
    assert agree >= 0.95


def test_texture_recovered_from_a_rendered_image(anny_body):
    verts, K = anny_views(anny_body, [0.0, 2.5], res=448)
    faces = anny_body.faces
    texture = smooth_texture()
    image, frags = render_textured(verts, faces, anny_body.uv, anny_body.face_uv, texture, K,
                                   (448, 448))
    r = 128
    atlas = UVAtlas.build(anny_body.uv, anny_body.face_uv, faces, r)
    got, vis = sample_texture(image, verts, faces, K, atlas, frags)
    truth = F.interpolate(texture[None], size=(r, r), mode="area")[0]
    err = (got - truth).abs().mean(1)[vis > 0]
    log.info("texture recovery: %d visible texels, mean abs error %.4f, median %.5f, p90 %.4f",
             len(err), err.mean(), err.median(), err.quantile(0.9))
    assert len(err) > 0.25 * atlas.mask.sum()
    assert err.median() < 0.005 and err.mean() < 0.03
    # Invisible and off-surface texels carry no weight; textures are zero off the surface.
    assert (vis[:, ~atlas.mask] == 0).all() and (got[:, :, ~atlas.mask] == 0).all()
    # Grazing weights lie in [0, 1] and only lower the binary visibility.
    _, soft = sample_texture(image, verts, faces, K, atlas, frags, grazing_power=1.0)
    assert (soft <= vis).all() and (soft >= 0).all() and (soft[vis > 0] < 1).any()


def test_sampling_is_differentiable_in_the_vertices():
    mesh = uv_ellipsoid(12, 24, (0.6, 0.8, 0.5))
    verts = (mesh.vertices + torch.tensor([0.0, 0.0, 3.0]))[None]
    K = intrinsics(60.0, 48)
    image, _ = render_textured(verts, mesh.faces, mesh.uv, mesh.face_uv, smooth_texture(64), K,
                               (48, 48))
    atlas = UVAtlas.build(mesh.uv, mesh.face_uv, mesh.faces, 32)
    v = verts.clone().requires_grad_(True)
    tex, vis = sample_texture(image, v, mesh.faces, K, atlas)
    assert not vis.requires_grad
    (tex * vis[:, None]).sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="atlas built for"):
        sample_texture(image, v, mesh.faces[:-1], K, atlas)


def test_overlay_draws_only_where_the_mesh_is(anny_body):
    verts, K = anny_views(anny_body, [0.3])
    image = np.full((224, 224, 3), 40, np.uint8)
    out = render_overlay(image, verts[0], anny_body.faces, K[0])
    mask = rasterize(verts, anny_body.faces, K, (224, 224)).mask[0].numpy()
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[~mask] == 40).all() and (out[mask].astype(int).sum(-1) > 3 * 40).mean() > 0.99
    side = render_side_view(verts[0], anny_body.faces, K[0], (224, 224))
    assert (side != 255).any(-1).sum() > 500
    with pytest.raises(ValueError, match="uint8"):
        render_overlay(image.astype(float), verts[0], anny_body.faces, K[0])
