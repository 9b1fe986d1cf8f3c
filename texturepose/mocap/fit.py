"""Fit a body model to motion-capture joint positions: per-frame pose, per-clip shape.

Targets are superset keypoints ``(T, K, 3)`` in metres in a Y-up world (see
:func:`texturepose.mocap.skeletons.mocap_keypoints`). Per frame we optimise one 6D rotation per
body joint and a translation; per clip one shape vector (no free scale: a taller actor gets a
taller shape).

Three methods (``FitConfig.method``):

* ``lm`` (the default): like ``batched`` below, but the poses are fitted by Levenberg-Marquardt,
  every frame its own 75-parameter problem (a rotation vector per joint and the translation),
  all frames in one batch (:mod:`texturepose.mocap.lm`). The keypoints' Jacobian is analytic:
  a joint's rotation turns every point below it about the joint's pivot, so an iteration is one
  forward pass of the keypoint path with no backward pass, and frames converge in tens of
  iterations instead of hundreds of L-BFGS evaluations; each frame stops on its own
  (``tol``) and drops out of the batch. The shape phase starts from LM-bent limbs on the mean
  shape, then L-BFGS fits shape and pose together as in ``batched``.
* ``batched``: every frame of every clip in one optimisation. First each clip's
  shape, with the poses, on ``shape_frames`` frames spread over the clip (all clips together);
  then every frame's pose with the shapes fixed. The problem is a sum of independent per-frame
  terms, so one L-BFGS run over all of them converges like one run per frame while each
  evaluation is one batched keypoint pass (:meth:`BodyModel.keypoints`, Anny's skinning-free
  path) instead of hundreds of small ones: ``bench/mocap.py`` measures both methods.
* ``clip``: clip by clip, in chunks of ``chunk`` frames in time order, each chunk starting from
  the previous chunk's last pose (the method before the batched one; kept for comparison).

Initialisation: the global orientation and translation of every frame come from a Kabsch
alignment of the rest body's torso keypoints to the frame's, so the optimiser only has to bend
limbs. A small prior pulls non-root joints towards rest: twists that no keypoint sees stay near
rest instead of drifting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from texturepose.body.base import BodyModel
from texturepose.geometry.rotations import (
    matrix_to_rot6d,
    rot6d_to_matrix,
)
from texturepose.keypoints import INDEX
from texturepose.mocap.lm import KinematicKeypoints, lm_poses, open_keypoint_path

log = logging.getLogger(__name__)

TORSO = ("pelvis", "l_hip", "r_hip", "l_shoulder", "r_shoulder", "thorax", "spine", "neck")
METHODS = ("lm", "batched", "clip")


@dataclass
class FitConfig:
    """Optimisation settings (params.yaml ``mocap.fit``)."""

    method: str = "lm"  # see the module docstring
    iters_shape: int = 60  # evaluations fitting shape + pose on the shape frames
    shape_frames: int = 8  # frames per clip that the shape is fitted on
    # True: the body's keypoint path (BodyModel.keypoints: skinning-free for Anny); False: the
    # full model (slower; for comparison in bench/mocap.py).
    fast_keypoints: bool = True
    # Torch threads while fitting (0: leave torch's setting).
    threads: int = 1
    iters: int = 150  # evaluations fitting the poses, shapes fixed (lm: iterations at most)
    optimizer: str = "lbfgs"  # "lbfgs" (fewer model evaluations) or "adam"
    # ``lm`` only: a frame stops when an accepted step lowers its cost by less than this
    # fraction; the starting Levenberg-Marquardt damping (relative to the Hessian's diagonal).
    tol: float = 1e-4
    lm_damping: float = 0.1
    lr: float = 0.05  # Adam only
    chunk: int = 32  # frames per optimisation batch of the ``clip`` method
    pose_prior: float = 1e-4  # weight of sum_j ||R_j - I||^2 (non-root joints), in m^2 units
    shape_prior: float = 1e-4  # weight of ||shape - mean_shape||^2

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"mocap.fit.method = {self.method!r} must be one of {METHODS}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"mocap.fit.optimizer = {self.optimizer!r} must be lbfgs or adam")


@dataclass
class FitResult:
    rotmats: np.ndarray  # (T, J, 3, 3) float32
    shape: np.ndarray  # (S,) float32
    translation: np.ndarray  # (T, 3) float32, body frame origin in the mocap world
    errors_mm: np.ndarray  # (T, K) per-keypoint error; NaN where not fitted
    mask: np.ndarray  # (K,) keypoints used

    def summary(self) -> dict[str, float]:
        e = self.errors_mm[:, self.mask]
        return {"mean_mm": float(np.mean(e)), "p95_mm": float(np.percentile(e, 95))}


def weighted_kabsch(src: torch.Tensor, dst: torch.Tensor,
                    w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`kabsch` with per-point weights ``w (B, N)`` (0 leaves a point out)."""
    w = w[..., None] / w.sum(1, keepdim=True)[..., None].clamp(min=1e-12)
    cs, cd = (w * src).sum(1, keepdim=True), (w * dst).sum(1, keepdim=True)
    h = ((src - cs) * w).transpose(1, 2) @ (dst - cd)
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    e = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    r = vt.transpose(1, 2) @ e @ u.transpose(1, 2)
    return r, cd[:, 0] - (r @ cs[:, 0, :, None])[..., 0]


def kabsch(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotations ``(B, 3, 3)`` and translations ``(B, 3)`` with ``dst ~ R @ src + t``.

    ``src``, ``dst``: ``(B, N, 3)``. Reflections are excluded (det R = +1)."""
    return weighted_kabsch(src, dst, torch.ones_like(src[..., 0]))


#: ``(rotmats (B, J, 3, 3), shapes (C, S), shape_index (B,)) -> keypoints (B, K, 3)``
KeypointFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def keypoint_fn(body: BodyModel, fast: bool = True) -> KeypointFn:
    """Keypoints of ``body`` for per-clip shapes: its keypoint path, or the full model."""
    if fast:
        return body.keypoints
    return lambda rot, shapes, index: body(rot, shapes[index]).keypoints


def usable_keypoints(body: BodyModel, mask: np.ndarray) -> np.ndarray:
    """The keypoints a clip can be fitted on (mapped by its rig and regressed by the body);
    raises ``ValueError`` when they are too few (6, of which 3 torso points)."""
    use = np.asarray(mask, bool) & body.keypoint_mask.cpu().numpy().astype(bool)
    torso = [INDEX[n] for n in TORSO if use[INDEX[n]]]
    if use.sum() < 6 or len(torso) < 3:
        raise ValueError(
            f"too few keypoints to fit: {int(use.sum())} usable (need 6), torso points "
            f"{len(torso)} (need 3 of {TORSO})"
        )
    return use


def fit_keypoints(
    body: BodyModel, targets: np.ndarray, mask: np.ndarray, config: FitConfig | None = None
) -> FitResult:
    """Fit ``body`` to one clip's ``targets`` (T, K, 3) metres, Y up, on keypoints ``mask``
    (K,). Returns rotations in the body's convention (first joint = global orientation), the
    clip's shape, per-frame translations and per-keypoint errors in mm."""
    return fit_clips(body, [targets], [mask], config)[0]


def fit_clips(
    body: BodyModel,
    targets: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    config: FitConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[FitResult]:
    """Fit ``body`` to several clips (``targets[c]`` ``(T_c, K, 3)``, ``masks[c]`` ``(K,)``),
    one shape per clip, with ``config.method``. Raises ``ValueError`` for a clip that cannot
    be fitted (check clips with :func:`usable_keypoints` first to skip them instead)."""
    cfg = config or FitConfig()
    for t in targets:
        if t.ndim != 3 or t.shape[1:] != (len(body.keypoint_mask), 3) or len(t) == 0:
            raise ValueError(f"targets must be (T>0, {len(body.keypoint_mask)}, 3), got "
                             f"{t.shape}")
    uses = [usable_keypoints(body, m) for m in masks]
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        if cfg.method == "clip":
            return [_fit_clip_chunks(body, t, u, cfg) for t, u in zip(targets, uses, strict=True)]
        return _fit_batched(body, targets, uses, cfg, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _fit_batched(body: BodyModel, targets: Sequence[np.ndarray], uses: list[np.ndarray],
                 cfg: FitConfig, progress: Callable[[str], None] | None) -> list[FitResult]:
    dev, dtype = body.mean_shape.device, body.mean_shape.dtype
    fn = keypoint_fn(body, cfg.fast_keypoints)
    counts = [len(t) for t in targets]
    tgt = torch.as_tensor(np.concatenate(targets), dtype=dtype, device=dev)
    w = torch.as_tensor(np.repeat(np.stack(uses), counts, 0), dtype=dtype, device=dev)
    clip_of = torch.repeat_interleave(torch.arange(len(targets), device=dev),
                                      torch.as_tensor(counts, device=dev))
    bounds = body.shape_bounds
    shapes = body.mean_shape.expand(len(targets), -1).clone()
    # 1. Shapes with the poses of a few frames per clip, every clip at once.
    starts = np.cumsum([0, *counts[:-1]])
    sub = np.concatenate([
        s + np.unique(np.linspace(0, n - 1, min(cfg.shape_frames, n)).round().astype(np.int64))
        for s, n in zip(starts, counts, strict=True)])
    sub = torch.as_tensor(sub, device=dev)
    init_r, init_t = _kabsch_init(body, fn, tgt[sub], w[sub], shapes, clip_of[sub])
    # lm needs the open keypoint path (fast_keypoints False asks for the full model: L-BFGS).
    path = open_keypoint_path(body) if cfg.method == "lm" and cfg.fast_keypoints else None
    if path is not None:  # bend the limbs first (mean shape): the shape then fits bent limbs
        init_r, init_t = lm_poses(KinematicKeypoints(path, shapes), tgt[sub], w[sub],
                                   clip_of[sub], init_r, init_t, cfg)
    if progress:
        progress("shape")
    rot_s, trans_s, shapes = _optimise(fn, tgt[sub], w[sub], clip_of[sub], init_r, init_t,
                                       shapes, body.mean_shape, cfg, cfg.iters_shape, bounds,
                                       fit_shape=True)
    # 2. Every frame's pose with the shapes fixed (the shape frames start from step 1).
    init_r, init_t = _kabsch_init(body, fn, tgt, w, shapes, clip_of)
    init_r[sub], init_t[sub] = rot_s, trans_s
    if progress:
        progress("pose")
    if path is not None:
        rot, trans = lm_poses(KinematicKeypoints(path, shapes), tgt, w, clip_of, init_r,
                               init_t, cfg)
    else:
        rot, trans, _ = _optimise(fn, tgt, w, clip_of, init_r, init_t, shapes, body.mean_shape,
                                  cfg, cfg.iters, bounds, fit_shape=False)
    with torch.no_grad():
        err = ((fn(rot, shapes, clip_of) + trans[:, None] - tgt).norm(dim=-1) * 1000.0)
    return [_result(rot[a:a + n], shapes[c], trans[a:a + n], err[a:a + n], uses[c])
            for c, (a, n) in enumerate(zip(starts, counts, strict=True))]


def _fit_clip_chunks(body: BodyModel, targets: np.ndarray, use: np.ndarray,
                     cfg: FitConfig) -> FitResult:
    """The ``clip`` method: chunks in time order, each from the previous chunk's last pose."""
    dev, dtype = body.mean_shape.device, body.mean_shape.dtype
    fn = keypoint_fn(body, cfg.fast_keypoints)
    tgt_all = torch.as_tensor(targets, dtype=dtype, device=dev)
    w_all = torch.as_tensor(use, dtype=dtype, device=dev).expand(len(targets), -1)
    bounds = body.shape_bounds
    shapes = body.mean_shape[None].clone()
    rot_out, trans_out = [], []
    prev: torch.Tensor | None = None
    for start in range(0, len(targets), cfg.chunk):
        tgt, w = tgt_all[start : start + cfg.chunk], w_all[start : start + cfg.chunk]
        index = torch.zeros(len(tgt), dtype=torch.long, device=dev)
        init_r, init_t = _kabsch_init(body, fn, tgt, w, shapes, index, prev)
        if start == 0:
            sub = np.unique(np.linspace(0, len(tgt) - 1, min(cfg.shape_frames, len(tgt))).round())
            sub = torch.as_tensor(sub.astype(np.int64), device=dev)
            rs, ts, shapes = _optimise(fn, tgt[sub], w[sub], index[sub], init_r[sub],
                                       init_t[sub], shapes, body.mean_shape, cfg,
                                       cfg.iters_shape, bounds, fit_shape=True)
            init_r, init_t = _kabsch_init(body, fn, tgt, w, shapes, index, prev)
            init_r[sub], init_t[sub] = rs, ts
        rot, trans, _ = _optimise(fn, tgt, w, index, init_r, init_t, shapes, body.mean_shape,
                                  cfg, cfg.iters, bounds, fit_shape=False)
        rot_out.append(rot)
        trans_out.append(trans)
        prev = rot[-1]
    rot, trans = torch.cat(rot_out), torch.cat(trans_out)
    index = torch.zeros(len(targets), dtype=torch.long, device=dev)
    with torch.no_grad():
        err = (fn(rot, shapes, index) + trans[:, None] - tgt_all).norm(dim=-1) * 1000.0
    return _result(rot, shapes[0], trans, err, use)


def _result(rot: torch.Tensor, shape: torch.Tensor, trans: torch.Tensor, err: torch.Tensor,
            use: np.ndarray) -> FitResult:
    e = err.cpu().numpy().astype(np.float32)
    e[:, ~use] = np.nan
    return FitResult(rotmats=rot.cpu().numpy().astype(np.float32),
                     shape=shape.cpu().numpy().astype(np.float32),
                     translation=trans.cpu().numpy().astype(np.float32), errors_mm=e, mask=use)


@torch.no_grad()
def _kabsch_init(
    body: BodyModel, fn: KeypointFn, tgt: torch.Tensor, w: torch.Tensor, shapes: torch.Tensor,
    index: torch.Tensor, prev_pose: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Limbs at rest (or ``prev_pose``); root and translation per frame by Kabsch of the
    frame's clip's rest torso keypoints onto the frame's."""
    b = tgt.shape[0]
    pose = body.rest_rotmats(1) if prev_pose is None else prev_pose[None].clone()
    pose[:, 0] = torch.eye(3, dtype=tgt.dtype, device=tgt.device)
    ref = fn(pose.expand(len(shapes), -1, -1, -1), shapes,
             torch.arange(len(shapes), device=tgt.device))[index]  # (B, K, 3)
    torso = torch.tensor([INDEX[n] for n in TORSO], device=tgt.device)
    wt = w[:, torso]
    r0, t0 = weighted_kabsch(ref[:, torso], tgt[:, torso], wt)
    init = pose.expand(b, -1, -1, -1).clone()
    init[:, 0] = r0
    return init, t0


def _optimise(
    fn: KeypointFn,
    tgt: torch.Tensor,
    w: torch.Tensor,
    index: torch.Tensor,
    init_rot: torch.Tensor,
    init_trans: torch.Tensor,
    shapes: torch.Tensor,
    mean_shape: torch.Tensor,
    cfg: FitConfig,
    iters: int,
    bounds: tuple[float, float] | None,
    fit_shape: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Minimise the summed per-frame keypoint error (mean over frames) plus the priors."""
    b = tgt.shape[0]
    x6 = matrix_to_rot6d(init_rot).clone().requires_grad_(True)
    trans = init_trans.clone().requires_grad_(True)
    params = [x6, trans]
    # Bounded shapes (Anny phenotypes) are optimised through a sigmoid so no step leaves the box.
    z = _to_free(shapes, bounds).clone().requires_grad_(fit_shape)
    if fit_shape:
        params.append(z)
    eye = torch.eye(3, dtype=tgt.dtype, device=tgt.device)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        rot = rot6d_to_matrix(x6)
        shp = _from_free(z, bounds)
        kp = fn(rot, shp, index) + trans[:, None]
        loss = (((kp - tgt) ** 2).sum(-1) * w).sum() / b
        loss = loss + cfg.pose_prior * ((rot[:, 1:] - eye) ** 2).sum() / b
        if fit_shape:
            loss = loss + cfg.shape_prior * ((shp - mean_shape) ** 2).sum(-1).mean()
        loss.backward()
        return loss

    if cfg.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=iters,
            max_eval=iters,
            history_size=20,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-10,
            tolerance_change=1e-14,
        )
        opt.step(closure)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr)
        for _ in range(iters):
            opt.step(closure)
    with torch.no_grad():
        return rot6d_to_matrix(x6), trans.detach(), _from_free(z, bounds).detach()


def _to_free(shape: torch.Tensor, bounds: tuple[float, float] | None) -> torch.Tensor:
    if bounds is None:
        return shape
    lo, hi = bounds
    u = ((shape - lo) / (hi - lo)).clamp(1e-4, 1 - 1e-4)
    return torch.log(u / (1 - u))


def _from_free(z: torch.Tensor, bounds: tuple[float, float] | None) -> torch.Tensor:
    if bounds is None:
        return z
    lo, hi = bounds
    return lo + (hi - lo) * torch.sigmoid(z)


def sample_frames(num_frames: int, fps: float, target_fps: float, max_frames: int) -> np.ndarray:
    """Frame indices at about ``target_fps``, skipping frame 0 (many BVH exports prepend a
    T-pose there), at most ``max_frames`` spread evenly over the clip."""
    step = max(1, int(round(fps / target_fps))) if target_fps > 0 else 1
    frames = np.arange(1 if num_frames > 1 else 0, num_frames, step)
    if max_frames > 0 and len(frames) > max_frames:
        frames = frames[np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
    return frames


def read_clip_targets(
    path: str | Path, target_fps: float = 10.0, max_frames: int = 32
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """One BVH's superset keypoint targets ``(T, K, 3)``, their mask ``(K,)`` and the clip's
    facts (skeleton name, fps, frames used). Raises ``BvhError`` (bad file) or
    ``UnknownSkeletonError`` (no joint map) for the caller to skip and count."""
    from texturepose.mocap.bvh import read_bvh
    from texturepose.mocap.skeletons import detect_skeleton, mocap_keypoints

    clip = read_bvh(path, units="auto")
    skeleton = detect_skeleton(clip)
    if clip.units != skeleton.units:
        log.warning("%s: body size suggests %s, the %s map says %s; using %s", path, clip.units,
                    skeleton.name, skeleton.units, skeleton.units)
        clip = read_bvh(path, units=skeleton.units)
    frames = sample_frames(clip.num_frames, clip.fps, target_fps, max_frames)
    targets, mask = mocap_keypoints(clip, skeleton, frames)
    info = {
        "skeleton": skeleton.name,
        "fps": clip.fps,
        "frames": frames,
        "sample_fps": clip.fps / max(1, int(round(clip.fps / target_fps))),
    }
    return targets, mask, info


def fit_bvh_clip(
    path: str | Path,
    body: BodyModel,
    target_fps: float = 10.0,
    max_frames: int = 32,
    config: FitConfig | None = None,
) -> tuple[FitResult, dict[str, object]]:
    """Read one BVH, map its skeleton to keypoints and fit ``body`` (see
    :func:`read_clip_targets` for the errors raised)."""
    targets, mask, info = read_clip_targets(path, target_fps, max_frames)
    return fit_keypoints(body, targets, mask, config), info
