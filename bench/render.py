"""Benchmark of the rendering path on a batch of Anny meshes, and the README pictures.

Times (median of --reps runs) rasterisation, texel visibility, texture sampling and the texture
loss for a batch of posed Anny meshes at 224 px, single-image rasterisation (what the synthetic
data generator needs), and ray-cast visibility (vectorised Moller-Trumbore in torch, every ray
against every face) on the same batch, side by side; and the rasteriser beside the frozen copy
of its previous version (``bench/_rasterize_reference.py``), interleaved in the same run, with
the differences of their outputs and gradients. Ray casting the whole batch would take
minutes, so it is timed on --ray-points vertices of the batch and scaled to all vertices (said
so in the output). Peak memory is the process's peak RSS (and CUDA peak when on a GPU).

    python bench/render.py [--batch 32] [--res 224] [--texture-res 64] [--device cpu]

Writes reports/figures/overlay.png and reports/figures/texture_map.png.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import roma
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))

# The rasteriser as it was before the speed work, timed beside the current one.
from _rasterize_reference import rasterize as rasterize_reference  # noqa: E402

from texturepose.body import build_body_model  # noqa: E402
from texturepose.geometry.cameras import (  # noqa: E402
    BODY_TO_CAMERA,
    batched_intrinsics,
    weak_to_perspective_translation,
)
from texturepose.losses.texture import texture_consistency_loss  # noqa: E402
from texturepose.render.overlay import render_overlay, render_side_view  # noqa: E402
from texturepose.render.rasterize import rasterize  # noqa: E402
from texturepose.render.texture import (  # noqa: E402
    UVAtlas,
    face_normals,
    point_visibility,
    sample_texture,
    surface_points,
)
from texturepose.render.textured import render_textured  # noqa: E402

log = logging.getLogger("bench.render")


def timed(fn, reps: int, device: torch.device) -> tuple[float, object]:
    """Median wall time of ``fn()`` over ``reps`` runs after one warm-up, and its last result."""
    out = fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def timed_pair(fn_a, fn_b, reps: int, device: torch.device) -> tuple[float, float]:
    """Median wall times of ``fn_a()`` and ``fn_b()`` called alternately (A, B, A, B, ...), so
    that load from other jobs falls on both alike."""
    fn_a(), fn_b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(reps):
        for fn, out in ((fn_a, times[0]), (fn_b, times[1])):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            out.append(time.perf_counter() - t0)
    return float(np.median(times[0])), float(np.median(times[1]))


def compare_rasterisers(verts: torch.Tensor, faces: torch.Tensor, K: torch.Tensor,
                        size: tuple[int, int]) -> dict[str, float]:
    """Differences between the previous and the current rasteriser on the same batch: fraction
    of pixels with the same face, max abs difference of depth and barycentrics where both draw
    the same face, and of the vertex gradients of a random weighting of depth and barycentrics."""
    out = {}
    grads = []
    g = torch.Generator().manual_seed(0)
    weights = torch.rand(*verts.shape[:1], *size, 4, generator=g).to(verts)
    for fn in (rasterize_reference, rasterize):
        v = verts.detach().clone().requires_grad_(True)
        frags = fn(v, faces, K, size)
        vals = torch.cat([frags.depth.unsqueeze(-1), frags.bary], -1)[frags.mask]
        (vals * weights[frags.mask]).sum().backward()
        grads.append((frags, v.grad))
    (a, ga), (b, gb) = [(f.__class__(f.face_index, f.depth.detach(), f.bary.detach()), gr)
                        for f, gr in grads]
    same = a.face_index == b.face_index
    both = same & a.mask
    out["same_face"] = float(same.float().mean())
    out["depth"] = float((a.depth[both] - b.depth[both]).abs().max()) if both.any() else 0.0
    out["bary"] = float((a.bary[both] - b.bary[both]).abs().max()) if both.any() else 0.0
    out["grad"] = float((ga - gb).abs().max())
    out["grad_scale"] = float(ga.abs().max())
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def posed_batch(body, batch: int, res: int, device: torch.device, seed: int = 0,
                yaws: list[float] | None = None, mean_shape: bool = False, pose_std: float = 0.25):
    """``batch`` Anny meshes: random shapes, random yaw, small random limb rotations, in the
    camera frame of a SPIN crop of ``res`` px."""
    g = torch.Generator().manual_seed(seed)
    rot = roma.rotvec_to_rotmat(pose_std * torch.randn(batch, body.num_joints, 3, generator=g))
    yaw = torch.zeros(batch, 3)
    yaw[:, 1] = torch.rand(batch, generator=g) * 2 * np.pi if yaws is None else torch.tensor(yaws)
    rot[:, 0] = BODY_TO_CAMERA @ roma.rotvec_to_rotmat(yaw)
    shape = torch.rand(batch, body.num_shape, generator=g)
    if mean_shape:
        shape = body.mean_shape.expand(batch, -1)
    with torch.no_grad():
        verts = body(rot, shape).vertices
    cam = torch.cat([0.9 + 0.2 * torch.rand(batch, 1, generator=g),
                     0.1 * torch.randn(batch, 2, generator=g)], 1)
    verts = verts + weak_to_perspective_translation(cam, 5000.0, res)[:, None]
    return verts.to(device), batched_intrinsics(5000.0, res, batch, device=device)


def raycast_visibility(verts: torch.Tensor, faces: torch.Tensor, idx: torch.Tensor,
                       chunk: int = 32) -> torch.Tensor:
    """Ray-cast visibility of vertices ``idx`` of one mesh ``verts (V, 3)`` (camera at origin)."""
    tri = verts[faces]
    e1, e2, t0 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], tri[:, 0]
    out = torch.zeros(len(idx), dtype=torch.bool, device=verts.device)
    for c in range(0, len(idx), chunk):
        ii = idx[c : c + chunk]
        d = verts[ii][:, None]
        p = torch.linalg.cross(d.expand(-1, len(faces), -1), e2[None].expand(len(ii), -1, -1))
        det = (e1[None] * p).sum(-1)
        inv = 1.0 / det
        s = -t0[None]
        u = (s * p).sum(-1) * inv
        q = torch.linalg.cross(s, e1[None])
        w = (d * q).sum(-1) * inv
        t = (e2[None] * q).sum(-1) * inv
        hit = (det.abs() > 1e-15) & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 1e-9) & (t < 1 - 1e-7)
        hit &= ~(faces[None] == ii[:, None, None]).any(-1)
        out[c : c + chunk] = ~hit.any(1)
    return out


def write_figures(body, atlas: UVAtlas, out_dir: Path) -> None:
    """Overlay (front + side view) of a textured render, and the texture maps of two views."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    verts, K = posed_batch(body, 2, 224, torch.device("cpu"), seed=3, yaws=[0.5, -0.6],
                           mean_shape=True, pose_std=0.12)
    g = (torch.arange(256) + 0.5) / 256
    v, u = torch.meshgrid(1 - g, g, indexing="ij")
    checker = ((u * 8).floor() + (v * 8).floor()) % 2
    texture = torch.stack([0.25 + 0.6 * u, 0.3 + 0.5 * v, 0.35 + 0.4 * checker])
    images, frags = render_textured(verts, body.faces, body.uv, body.face_uv, texture, K,
                                    (224, 224), background=0.15)
    tex, vis = sample_texture(images, verts, body.faces, K, atlas, frags)
    to_u8 = lambda x: (x.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)  # noqa: E731
    photo = to_u8(images[0])
    overlay = render_overlay(photo, verts[0], body.faces, K[0], alpha=0.6)
    side = render_side_view(verts[0], body.faces, K[0], (224, 224))
    out_dir.mkdir(parents=True, exist_ok=True)
    plt.imsave(out_dir / "overlay.png", np.concatenate([photo, overlay, side], 1))
    co = (vis[0] * vis[1]).numpy()
    panels = [to_u8(texture[:, ::2, ::2]), to_u8(tex[0] * vis[0]), to_u8(tex[1] * vis[1]),
              np.repeat((co[..., None] * 255).astype(np.uint8), 3, -1)]
    size = panels[0].shape[0]
    panels = [np.asarray(torch.nn.functional.interpolate(
        torch.from_numpy(p).permute(2, 0, 1)[None].float(), size=(size, size), mode="nearest"
    )[0].permute(1, 2, 0).byte()) for p in panels]
    plt.imsave(out_dir / "texture_map.png", np.concatenate(panels, 1))
    log.info("wrote %s and %s", out_dir / "overlay.png", out_dir / "texture_map.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--texture-res", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--pair-reps", type=int, default=9,
                    help="interleaved runs of the previous vs the current rasteriser")
    ap.add_argument("--ray-points", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--figures", type=Path, default=REPO / "reports" / "figures")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(args.device)
    body = build_body_model("anny")
    faces = body.faces.to(device)
    atlas = UVAtlas.build(body.uv, body.face_uv, body.faces, args.texture_res)
    verts, K = posed_batch(body, args.batch, args.res, device)
    images = torch.rand(args.batch, 3, args.res, args.res, device=device)
    size = (args.res, args.res)
    rss0 = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    t_rast, frags = timed(lambda: rasterize(verts, faces, K, size), args.reps, device)
    tface = atlas.texel_face.to(device)
    tbary = atlas.texel_bary.to(device)

    def texel_visibility():
        pts = surface_points(verts, faces, tface, tbary)
        normals = face_normals(verts, faces)[:, tface]
        return point_visibility(pts, frags, K, verts, faces, normals=normals)

    t_vis, _ = timed(texel_visibility, args.reps, device)
    t_tex, (tex, vis) = timed(
        lambda: sample_texture(images, verts, faces, K, atlas.to(device), frags), args.reps,
        device)
    half = args.batch // 2
    t_loss, _ = timed(lambda: texture_consistency_loss(tex[:half], vis[:half], tex[half:],
                                                       vis[half:]), args.reps, device)
    v_grad = verts.clone().requires_grad_(True)

    def forward_backward():
        t, v = sample_texture(images, v_grad, faces, K, atlas.to(device), frags)
        loss = texture_consistency_loss(t[:half], v[:half], t[half:], v[half:])
        loss.backward()
        return loss

    t_fb, _ = timed(forward_backward, args.reps, device)
    t_one, _ = timed(lambda: rasterize(verts[:1], faces, K[:1], size), args.reps * 4, device)

    # Ray-cast visibility of the same batch's vertices, timed on a sample, scaled to all.
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(verts.shape[1], generator=g)[: args.ray_points].to(device)
    t_ray_sample, _ = timed(lambda: raycast_visibility(verts[0], faces, idx), 1, device)
    n_points = verts.shape[0] * verts.shape[1]
    t_ray = t_ray_sample / len(idx) * n_points
    t_zbuf_vis, _ = timed(lambda: point_visibility(
        verts, rasterize(verts, faces, K, size), K, verts, faces), args.reps, device)

    # The previous rasteriser beside the current one, interleaved, and their differences.
    t_old, t_new = timed_pair(lambda: rasterize_reference(verts, faces, K, size),
                              lambda: rasterize(verts, faces, K, size), args.pair_reps, device)
    t_old1, t_new1 = timed_pair(lambda: rasterize_reference(verts[:1], faces, K[:1], size),
                                lambda: rasterize(verts[:1], faces, K[:1], size),
                                args.pair_reps * 4, device)
    diff = compare_rasterisers(verts, faces, K, size)

    rss1 = peak_rss_mb()
    threads = torch.get_num_threads()
    print(f"\nrender benchmark: batch {args.batch} Anny meshes ({verts.shape[1]} vertices, "
          f"{faces.shape[0]} faces) at {args.res} px, texture {args.texture_res}^2 "
          f"({len(tface)} texels), device {device}, {threads} torch threads")
    print(f"  rasterise batch            {t_rast * 1e3:9.1f} ms  ({t_rast / args.batch * 1e3:.2f} "
          f"ms/image)")
    print(f"  rasterise one image        {t_one * 1e3:9.1f} ms  ({1 / t_one:.0f} images/s)")
    print(f"  texel visibility           {t_vis * 1e3:9.1f} ms")
    print(f"  texture sampling (+vis)    {t_tex * 1e3:9.1f} ms")
    print(f"  texture loss ({half} pairs)    {t_loss * 1e3:9.1f} ms")
    print(f"  sampling+loss fwd+bwd      {t_fb * 1e3:9.1f} ms")
    print(f"  total rast+sample+loss     {(t_rast + t_tex + t_loss) * 1e3:9.1f} ms")
    print(f"rasteriser, previous vs current (interleaved, median of {args.pair_reps}):")
    print(f"  batch of {args.batch}: old {t_old * 1e3:.1f} ms, new {t_new * 1e3:.1f} ms, "
          f"ratio old/new {t_old / t_new:.2f}x")
    print(f"  one image:   old {t_old1 * 1e3:.1f} ms, new {t_new1 * 1e3:.1f} ms, "
          f"ratio old/new {t_old1 / t_new1:.2f}x (median of {args.pair_reps * 4})")
    print(f"  same face on {diff['same_face'] * 100:.4f}% of pixels; where the same face: max "
          f"|d depth| {diff['depth']:.3g}, max |d bary| {diff['bary']:.3g}; max |d grad| "
          f"{diff['grad']:.3g} (max |grad| {diff['grad_scale']:.3g})")
    print(f"vertex visibility of the whole batch ({n_points} vertices):")
    print(f"  z-buffer (rasterise+test)  {t_zbuf_vis * 1e3:9.1f} ms")
    print(f"  ray casting                {t_ray * 1e3:9.1f} ms  (timed on {len(idx)} vertices x "
          f"{faces.shape[0]} faces: {t_ray_sample:.2f} s, scaled to the batch)")
    print(f"  speed-up z-buffer vs ray casting: {t_ray / t_zbuf_vis:.0f}x")
    print(f"peak RSS {rss1:.0f} MB (at start of timing {rss0:.0f} MB)")
    if device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    if not args.no_figures:
        write_figures(body, atlas, args.figures)


if __name__ == "__main__":
    main()
