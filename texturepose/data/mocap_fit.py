"""Fit a body model to motion-capture joint positions: per-frame pose, per-clip shape.

Targets are superset keypoints ``(T, K, 3)`` in metres in a Y-up world (see
:func:`texturepose.data.mocap_skeletons.mocap_keypoints`). Per frame we optimise one 6D rotation per
body joint and a translation; per clip one shape vector (no free scale: a taller actor gets a
taller shape). Frames go through in chunks, in time order; the first chunk fits shape and pose
together, later chunks keep the shape and start from the previous chunk's last pose.

Initialisation: the global orientation and translation of every frame come from a Kabsch
alignment of the rest body's torso keypoints to the frame's, so Adam only has to bend limbs.
A small prior pulls non-root joints towards rest: twists that no keypoint sees stay near rest
instead of drifting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch

from texturepose.body.base import BodyModel
from texturepose.data.keypoints import INDEX
from texturepose.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix

log = logging.getLogger(__name__)

TORSO = ("pelvis", "l_hip", "r_hip", "l_shoulder", "r_shoulder", "thorax", "spine", "neck")


@dataclass
class FitConfig:
    """Optimisation settings (params.yaml ``mocap.fit``)."""

    iters_shape: int = 60  # evaluations fitting shape + pose on a clip's first chunk
    shape_frames: int = 8  # frames of the first chunk that the shape is fitted on
    # Anny: exact keypoints without skinning the whole mesh (AnnyKeypoints); False: full model.
    fast_keypoints: bool = True
    # Torch threads while fitting (0: leave torch's setting). The tensors are small (frames x 104
    # bones): on a 2-core machine busy with other jobs, 2 threads ran 8-30x slower than 1; on an
    # idle one 1.5x faster (bench/mocap.py). 1 is the safe default.
    threads: int = 1
    iters: int = 150  # evaluations per chunk with the shape fixed
    optimizer: str = "lbfgs"  # "lbfgs" (fewer model evaluations) or "adam"
    lr: float = 0.05  # Adam only
    chunk: int = 32  # frames per optimisation batch
    pose_prior: float = 1e-4  # weight of sum_j ||R_j - I||^2 (non-root joints), in m^2 units
    shape_prior: float = 1e-4  # weight of ||shape - mean_shape||^2


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


class AnnyKeypoints:
    """Exact Anny keypoints for a batch of poses sharing one shape, without skinning the mesh.

    Keypoints are fixed vertex combinations and Anny skins vertices linearly
    (``v = sum_b s_vb T_b [v_rest; 1]``), so ``kp_k = sum_b T_b A_kb`` with
    ``A_kb = sum_v W_kv s_vb [v_rest; 1]``, computed once per shape instead of once per frame.
    An evaluation then costs one rest model plus Anny's bone kinematics (104 bones) instead of
    skinning 13,718 vertices per frame; it is also deterministic, where Anny's skinning kernel
    sums in a varying order (float32 noise that stalls L-BFGS line searches). Differentiable in
    pose and shape; tests/test_mocap_fit.py checks values and gradients against the full model.
    With ``shape`` given, that shape's ``A`` is cached and the shape argument of calls ignored.
    """

    def __init__(self, body: BodyModel, shape: torch.Tensor | None = None) -> None:
        native = body.native
        self.body = body
        skin = torch.zeros(body.num_vertices, len(native.bone_labels))
        skin.scatter_add_(1, native.vertex_bone_indices.long(), native.vertex_bone_weights.float())
        # Only vertices some keypoint uses matter: W @ diag(skin) restricted to them.
        w = body.keypoint_weights.float()
        self.support = torch.nonzero(w.abs().sum(0) > 0)[:, 0]
        self.w_skin = torch.einsum("kv,vn->kvn", w[:, self.support], skin[self.support])
        self.fixed = None
        if shape is not None:
            with torch.no_grad():
                self.fixed = self._rest(shape)

    def _rest(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        native = self.body.native
        _, pheno, local, face = native.get_tensor_inputs(None, shape[None], None, None)
        coeffs = native._get_phenotype_blendshape_coefficients(pheno, local, face)
        rest = native.get_rest_model(coeffs)
        v = rest["rest_vertices"][0, self.support]  # (Vs, 3), Anny frame
        vh = torch.cat([v, torch.ones_like(v[:, :1])], 1)
        a = torch.einsum("kvn,vj->knj", self.w_skin.to(v), vh)  # (K, NB, 4)
        return rest["rest_bone_poses"], a

    def __call__(self, rotmats: torch.Tensor, shape: torch.Tensor | None = None) -> torch.Tensor:
        rest_poses, a = self.fixed if self.fixed is not None else self._rest(shape)
        native = self.body.native
        pose = self.body.native_pose(rotmats)
        transforms, _ = native.get_bone_transforms(pose, rest_poses.expand(len(pose), -1, -1, -1))
        # AnnyBody.native_pose folds the Anny -> canonical frame change into the root's delta,
        # so the bone transforms already produce canonical coordinates.
        return torch.einsum("bnij,knj->bki", transforms[..., :3, :], a)

    @torch.no_grad()
    def matches_body(self, atol: float = 1e-3) -> bool:
        """Self-check against the full model on a random pose and shape (this class reads Anny
        internals, so a change in AnnyBody or anny must not silently give wrong keypoints)."""
        g = torch.Generator().manual_seed(0)
        body = self.body
        rot = roma.rotvec_to_rotmat(torch.randn(2, body.num_joints, 3, generator=g) * 0.3)
        shape = torch.rand(body.num_shape, generator=g).to(body.mean_shape)
        rot = rot.to(body.mean_shape)
        full = body(rot, shape.expand(2, -1)).keypoints
        mine = AnnyKeypoints(body)(rot, shape)
        err = float((full - mine).abs().max())
        if err > atol:
            log.warning(
                "fast Anny keypoints differ from the model by %.3g m: using the full model "
                "(slower); AnnyBody or anny changed, update AnnyKeypoints",
                err,
            )
        return err <= atol


def shape_bounds(body: BodyModel) -> tuple[float, float] | None:
    """Valid shape range: Anny's phenotypes live in [0, 1]; betas are unbounded."""
    bounds = getattr(body, "shape_bounds", None)
    if bounds is not None:
        return bounds
    return (0.0, 1.0) if body.name == "anny" else None


def kabsch(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotations ``(B, 3, 3)`` and translations ``(B, 3)`` with ``dst ~ R @ src + t``.

    ``src``, ``dst``: ``(B, N, 3)``. Reflections are excluded (det R = +1)."""
    cs, cd = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    h = (src - cs).transpose(1, 2) @ (dst - cd)
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    e = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    r = vt.transpose(1, 2) @ e @ u.transpose(1, 2)
    t = cd[:, 0] - (r @ cs[:, 0, :, None])[..., 0]
    return r, t


KeypointFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (rotmats, shape (S,)) -> kp


def keypoint_fn(
    body: BodyModel, shape: torch.Tensor | None = None, fast: bool = True
) -> KeypointFn:
    """Keypoints of ``body`` as a function of (rotmats, shape (S,)). For Anny (``fast``), the
    :class:`AnnyKeypoints` path, with ``shape`` fixed when given; else the full model."""
    if fast and body.name == "anny" and hasattr(body, "native"):
        if _fast_ok(body):
            return AnnyKeypoints(body, shape)
    return lambda rot, shp: body(rot, shp.expand(rot.shape[0], -1)).keypoints


_FAST_CHECKED: dict[int, bool] = {}


def _fast_ok(body: BodyModel) -> bool:
    if id(body) not in _FAST_CHECKED:
        _FAST_CHECKED[id(body)] = AnnyKeypoints(body).matches_body()
    return _FAST_CHECKED[id(body)]


def fit_keypoints(
    body: BodyModel,
    targets: np.ndarray,
    mask: np.ndarray,
    config: FitConfig | None = None,
    shape_init: np.ndarray | None = None,
    fit_shape: bool = True,
) -> FitResult:
    """Fit ``body`` to ``targets`` (T, K, 3) metres, Y up, on keypoints ``mask`` (K,).

    Returns rotations in the body's convention (first joint = global orientation), the clip's
    shape, per-frame translations and per-keypoint errors in mm.
    """
    cfg = config or FitConfig()
    previous_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _fit_keypoints(body, targets, mask, cfg, shape_init, fit_shape)
    finally:
        torch.set_num_threads(previous_threads)


def _fit_keypoints(
    body: BodyModel,
    targets: np.ndarray,
    mask: np.ndarray,
    cfg: FitConfig,
    shape_init: np.ndarray | None,
    fit_shape: bool,
) -> FitResult:
    dev, dtype = body.mean_shape.device, body.mean_shape.dtype
    use = np.asarray(mask, bool) & body.keypoint_mask.cpu().numpy().astype(bool)
    torso = [INDEX[n] for n in TORSO if use[INDEX[n]]]
    if use.sum() < 6 or len(torso) < 3:
        raise ValueError(
            f"too few keypoints to fit: {int(use.sum())} usable (need 6), torso points "
            f"{len(torso)} (need 3 of {TORSO})"
        )
    if targets.ndim != 3 or targets.shape[1:] != (len(use), 3) or len(targets) == 0:
        raise ValueError(f"targets must be (T>0, {len(use)}, 3), got {targets.shape}")
    n_frames = targets.shape[0]
    tgt_all = torch.as_tensor(targets, dtype=dtype, device=dev)
    use_t = torch.as_tensor(use, device=dev)
    bounds = shape_bounds(body)
    shape = (
        torch.as_tensor(shape_init, dtype=dtype, device=dev)
        if shape_init is not None
        else body.mean_shape.clone()
    )
    rot_out = torch.empty(n_frames, body.num_joints, 3, 3, dtype=dtype, device=dev)
    trans_out = torch.empty(n_frames, 3, dtype=dtype, device=dev)
    fixed: KeypointFn | None = None if fit_shape else keypoint_fn(body, shape, cfg.fast_keypoints)
    prev_pose: torch.Tensor | None = None  # (J, 3, 3) last fitted frame
    for start in range(0, n_frames, cfg.chunk):
        tgt = tgt_all[start : start + cfg.chunk]
        init = _initial_pose(body, tgt, torso, shape, prev_pose)
        if fixed is None:
            # First chunk: shape and pose together on a few spread frames (a free shape costs a
            # rest model per evaluation); then every frame with the shape fixed.
            sub = np.unique(np.linspace(0, len(tgt) - 1, min(cfg.shape_frames, len(tgt))).round())
            sub = torch.as_tensor(sub.astype(np.int64), device=dev)
            rot_s, trans_s, shape = _fit_chunk(
                keypoint_fn(body, None, cfg.fast_keypoints), tgt[sub], use_t,
                (init[0][sub], init[1][sub], shape),
                body.mean_shape, cfg, cfg.iters_shape, bounds, fit_shape=True,
            )  # fmt: skip
            init[0][sub], init[1][sub] = rot_s, trans_s
            fixed = keypoint_fn(body, shape, cfg.fast_keypoints)
        rot, trans, _ = _fit_chunk(
            fixed, tgt, use_t, init, shape, cfg, cfg.iters, bounds, fit_shape=False
        )
        rot_out[start : start + len(tgt)] = rot
        trans_out[start : start + len(tgt)] = trans
        prev_pose = rot[-1]
    with torch.no_grad():
        kp = torch.cat(
            [fixed(rot_out[i : i + cfg.chunk], shape) for i in range(0, n_frames, cfg.chunk)]
        )
        err = ((kp + trans_out[:, None] - tgt_all).norm(dim=-1) * 1000.0).cpu().numpy()
    err[:, ~use] = np.nan
    return FitResult(
        rotmats=rot_out.cpu().numpy().astype(np.float32),
        shape=shape.cpu().numpy().astype(np.float32),
        translation=trans_out.cpu().numpy().astype(np.float32),
        errors_mm=err.astype(np.float32),
        mask=use,
    )


@torch.no_grad()
def _initial_pose(
    body: BodyModel,
    tgt: torch.Tensor,
    torso: list[int],
    shape: torch.Tensor,
    prev_pose: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Previous chunk's last pose (or rest) for the limbs; root and translation by Kabsch."""
    b = tgt.shape[0]
    pose = body.rest_rotmats(1) if prev_pose is None else prev_pose[None].clone()
    pose[:, 0] = torch.eye(3, dtype=tgt.dtype, device=tgt.device)
    ref = body(pose, shape[None]).keypoints[0]
    r0, t0 = kabsch(ref[torso].expand(b, -1, -1), tgt[:, torso])
    init = pose.expand(b, -1, -1, -1).clone()
    init[:, 0] = r0
    return init, t0, shape


def _fit_chunk(
    fn: KeypointFn,
    tgt: torch.Tensor,
    use: torch.Tensor,
    init: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    mean_shape: torch.Tensor,
    cfg: FitConfig,
    iters: int,
    bounds: tuple[float, float] | None,
    fit_shape: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b = tgt.shape[0]
    x6 = matrix_to_rot6d(init[0]).clone().requires_grad_(True)
    trans = init[1].clone().requires_grad_(True)
    params = [x6, trans]
    # Bounded shapes (Anny phenotypes) are optimised through a sigmoid so no step leaves the box.
    z = _to_free(init[2], bounds).clone().requires_grad_(fit_shape)
    if fit_shape:
        params.append(z)
    eye = torch.eye(3, dtype=tgt.dtype, device=tgt.device)
    w = use.to(tgt.dtype)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        rot = rot6d_to_matrix(x6)
        shp = _from_free(z, bounds)
        kp = fn(rot, shp) + trans[:, None]
        loss = (((kp - tgt) ** 2).sum(-1) * w).sum() / b
        loss = loss + cfg.pose_prior * ((rot[:, 1:] - eye) ** 2).sum() / b
        if fit_shape:
            loss = loss + cfg.shape_prior * ((shp - mean_shape) ** 2).sum()
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
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr)
        for _ in range(iters):
            opt.step(closure)
    else:
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {cfg.optimizer!r}")
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


def fit_bvh_clip(
    path: str | Path,
    body: BodyModel,
    target_fps: float = 10.0,
    max_frames: int = 32,
    config: FitConfig | None = None,
) -> tuple[FitResult, dict[str, object]]:
    """Read one BVH, map its skeleton to keypoints and fit ``body``.

    Returns the fit and the clip's facts (skeleton name, fps, frames used). Raises ``BvhError``
    (bad file) or ``UnknownSkeletonError`` (no joint map) for the caller to skip and count.
    """
    from texturepose.data.bvh import read_bvh
    from texturepose.data.mocap_skeletons import detect_skeleton, mocap_keypoints

    clip = read_bvh(path, units="auto")
    skeleton = detect_skeleton(clip)
    if clip.units != skeleton.units:
        log.warning(
            "%s: body size suggests %s, the %s map says %s; using %s",
            path,
            clip.units,
            skeleton.name,
            skeleton.units,
            skeleton.units,
        )
        clip = read_bvh(path, units=skeleton.units)
    frames = sample_frames(clip.num_frames, clip.fps, target_fps, max_frames)
    targets, mask = mocap_keypoints(clip, skeleton, frames)
    result = fit_keypoints(body, targets, mask, config)
    info = {
        "skeleton": skeleton.name,
        "fps": clip.fps,
        "frames": frames,
        "sample_fps": clip.fps / max(1, int(round(clip.fps / target_fps))),
    }
    return result, info
