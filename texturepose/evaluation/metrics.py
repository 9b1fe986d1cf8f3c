"""Pose and mesh metrics on plain arrays: MPJPE, PA-MPJPE, per-vertex error, 2D PCK.

3D inputs are in metres and errors come out in millimetres (``unit=1000``). Every function takes
NumPy arrays or torch tensors; the similarity Procrustes keeps the input's type (so a training loop
can use it on tensors) and the error functions return float64 NumPy arrays. Missing joints are
handled with a ``mask``/``vis`` array: they get NaN errors and do not count in means.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from texturepose.keypoints import SUPERSET

ArrayLike = np.ndarray | torch.Tensor

#: Metres -> millimetres, the unit every 3D error is reported in.
MM = 1000.0


def _check_points(name: str, x: ArrayLike, dims: int) -> None:
    if x.ndim != 3 or x.shape[-1] != dims:
        raise ValueError(f"{name} must have shape (B, N, {dims}), got {tuple(x.shape)}")


def check_pair(pred: ArrayLike, gt: ArrayLike, dims: int = 3) -> None:
    _check_points("pred", pred, dims)
    _check_points("gt", gt, dims)
    if tuple(pred.shape) != tuple(gt.shape):
        raise ValueError(
            f"pred and gt must have the same shape, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )


def check_mask(mask: ArrayLike | None, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    """A (B, N) float64 weight array (1 = valid); all ones when ``mask`` is None."""
    if mask is None:
        return np.ones(shape)
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask, np.float64)
    if m.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (samples, points), got {m.shape}")
    return m


def similarity_transform(
    pred: ArrayLike, gt: ArrayLike, weights: ArrayLike | None = None
) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """Per-sample similarity ``(s, R, t)`` minimising ``sum_i w_i |s R pred_i + t - gt_i|^2``.

    Umeyama's closed form, batched: ``pred``/``gt`` are ``(B, N, 3)``, ``weights`` ``(B, N)``
    (e.g. joint visibility; zero weights ignore a point). ``R`` is always a proper rotation
    (det = +1): a mirrored prediction is not "fixed" by a reflection. Returns ``s (B,)``,
    ``R (B, 3, 3)``, ``t (B, 3)`` with the input's type (float64 computation for NumPy).
    """
    check_pair(pred, gt)
    # One code path for both libraries: NumPy (float64) is ~3x faster than torch for these
    # tiny batched 3x3 problems on CPU; torch keeps device, dtype and autograd.
    if isinstance(pred, torch.Tensor):
        xp, x = torch, pred
        y = torch.as_tensor(gt).to(pred)
        w = None if weights is None else torch.as_tensor(weights).to(pred)
    else:
        xp, x, y = np, np.asarray(pred, np.float64), to_numpy(gt)
        w = None if weights is None else to_numpy(weights)
    if w is None:
        w = xp.ones_like(x[..., 0])
    elif tuple(w.shape) != tuple(x.shape[:2]):
        raise ValueError(f"weights must have shape {tuple(x.shape[:2])}, got {tuple(w.shape)}")
    wsum = xp.where(w.sum(1) > 1e-12, w.sum(1), 1e-12)[:, None]  # (B, 1)
    mu_x = (w[..., None] * x).sum(1) / wsum  # (B, 3)
    mu_y = (w[..., None] * y).sum(1) / wsum
    x0 = x - mu_x[:, None]
    y0 = y - mu_y[:, None]
    cov = (y0 * w[..., None]).swapaxes(1, 2) @ x0 / wsum[..., None]  # Sigma_yx (B, 3, 3)
    var_x = (w * (x0**2).sum(-1)).sum(1) / wsum[:, 0]
    u, sig, vh = xp.linalg.svd(cov)
    # Flip the last singular direction when U V^T would be a reflection (closed-form 3x3
    # determinant: linalg.det is slow on tiny batches).
    m = u @ vh
    det = (
        m[:, 0, 0] * (m[:, 1, 1] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 1])
        - m[:, 0, 1] * (m[:, 1, 0] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 0])
        + m[:, 0, 2] * (m[:, 1, 0] * m[:, 2, 1] - m[:, 1, 1] * m[:, 2, 0])
    )
    one = xp.ones_like(det)
    diag = xp.stack([one, one, xp.where(det < 0, -one, one)], -1)  # (B, 3)
    rot = u @ (diag[..., None] * vh)
    scale = (sig * diag).sum(-1) / xp.where(var_x > 1e-12, var_x, 1e-12)
    trans = mu_y - scale[:, None] * (rot @ mu_x[..., None])[..., 0]
    return scale, rot, trans


def apply_similarity(points: ArrayLike, s: ArrayLike, r: ArrayLike, t: ArrayLike) -> ArrayLike:
    """``s R p + t`` for ``points (B, N, 3)`` (e.g. apply the joints' alignment to vertices)."""
    if isinstance(points, torch.Tensor):
        return s[:, None, None] * points @ r.transpose(-1, -2) + t[:, None]
    p = np.asarray(points, np.float64)
    return s[:, None, None] * p @ np.swapaxes(r, -1, -2) + t[:, None]


def similarity_procrustes(
    pred: ArrayLike, gt: ArrayLike, weights: ArrayLike | None = None
) -> ArrayLike:
    """``pred`` aligned to ``gt`` by the best per-sample similarity (scale, rotation, translation).

    Differentiable for torch inputs (away from degenerate configurations).
    """
    s, r, t = similarity_transform(pred, gt, weights)
    return apply_similarity(pred, s, r, t)


def to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, np.float64)


def joint_errors(
    pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None, unit: float = MM
) -> np.ndarray:
    """Euclidean distance per sample and point, ``(B, N)``, times ``unit``; NaN where masked.

    No alignment is applied: root-align or Procrustes-align first (see :func:`align_root`).
    """
    check_pair(pred, gt, dims=pred.shape[-1] if pred.ndim == 3 and pred.shape[-1] in (2, 3) else 3)
    err = np.linalg.norm(to_numpy(pred) - to_numpy(gt), axis=-1) * unit
    m = check_mask(mask, err.shape)
    return np.where(m > 0, err, np.nan)


def nanmean(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean ignoring NaN; NaN (without a warning) where nothing is valid."""
    valid = ~np.isnan(x)
    n = valid.sum(axis)
    total = np.where(valid, x, 0.0).sum(axis)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _sample_mean(err: np.ndarray) -> np.ndarray:
    """Mean over valid points per sample; NaN for a sample without valid points."""
    return nanmean(err, axis=1)


def mpjpe(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None) -> np.ndarray:
    """Mean per-joint position error per sample ``(B,)`` in mm, of already root-aligned joints."""
    return _sample_mean(joint_errors(pred, gt, mask))


def pa_joint_errors(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None) -> np.ndarray:
    """Per-joint errors ``(B, N)`` in mm after per-sample similarity Procrustes on valid joints."""
    m = check_mask(mask, tuple(pred.shape[:2]))
    aligned = similarity_procrustes(to_numpy(pred), to_numpy(gt), (m > 0).astype(np.float64))
    return joint_errors(aligned, gt, m)


def pa_mpjpe(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None) -> np.ndarray:
    """Procrustes-aligned MPJPE ("reconstruction error") per sample ``(B,)`` in mm."""
    return _sample_mean(pa_joint_errors(pred, gt, mask))


def pose_spread(points: ArrayLike, mask: ArrayLike | None = None, iterations: int = 3) -> float:
    """How far the poses of a set differ from one another, in mm: every pose ``(B, N, 3)`` is
    aligned by a similarity to the set's average pose (generalised Procrustes: the average is
    re-estimated ``iterations`` times and kept at the set's average size), then its joints'
    distances to that average are averaged over samples and joints. Global orientation and
    position do not count, so a model that outputs one pose for every image scores about 0
    whichever way it turns the body; the same number of the ground truth says how much the
    set's poses really vary."""
    x = to_numpy(points)
    w = check_mask(mask, x.shape[:2]).astype(np.float64)
    wsum = np.maximum(w.sum(0), 1e-12)[:, None]

    def size(p: np.ndarray, weights: np.ndarray) -> np.ndarray:  # RMS distance to the centroid
        c = (p * weights[..., None]).sum(-2, keepdims=True) / np.maximum(
            weights.sum(-1), 1e-12)[..., None, None]
        return np.sqrt((weights * ((p - c) ** 2).sum(-1)).sum(-1) / np.maximum(
            weights.sum(-1), 1e-12))

    target = float(size(x, w).mean())
    mean = x[0]
    for _ in range(max(1, iterations)):
        aligned = similarity_procrustes(x, np.broadcast_to(mean, x.shape), w)
        mean = (aligned * w[..., None]).sum(0) / wsum
        mean = mean * target / max(float(size(mean, w.max(0))), 1e-12)
    aligned = similarity_procrustes(x, np.broadcast_to(mean, x.shape), w)
    return float(np.nanmean(joint_errors(aligned, np.broadcast_to(mean, x.shape), w)))


def pve(pred_vertices: ArrayLike, gt_vertices: ArrayLike) -> np.ndarray:
    """Mean per-vertex error per sample ``(B,)`` in mm (meshes with the same topology).

    Align first as for joints (e.g. subtract the same root from both, or apply the joints'
    Procrustes transform with :func:`apply_similarity`).
    """
    return joint_errors(pred_vertices, gt_vertices).mean(1)


#: Root conventions: the root is the mean of these named points.
ROOTS: dict[str, tuple[str, ...]] = {
    "pelvis": ("pelvis",),
    "mid_hip": ("r_hip", "l_hip"),  # SPIN's pelvis for 14-joint sets and 3DHP
    "none": (),
}


def root_indices(root: str | Sequence[str], joint_names: Sequence[str]) -> list[int]:
    """Positions in ``joint_names`` of the points whose mean is the root (``root`` is a key of
    :data:`ROOTS` or a list of point names)."""
    names = ROOTS[root] if isinstance(root, str) and root in ROOTS else root
    if isinstance(names, str):
        raise KeyError(f"unknown root convention {root!r}; known: {sorted(ROOTS)} or name lists")
    lookup = {n: i for i, n in enumerate(joint_names)}
    missing = [n for n in names if n not in lookup]
    if missing:
        raise KeyError(f"root point(s) {missing} are not among the joints {list(joint_names)}")
    return [lookup[n] for n in names]


def align_root(
    joints: np.ndarray,
    root: str | Sequence[str],
    joint_names: Sequence[str],
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the root from ``joints (B, N, 3)``.

    Returns the aligned joints and a ``(B,)`` bool array: False for samples whose root points
    are masked (their root is unknown; callers skip and count them).
    """
    idx = root_indices(root, joint_names)
    joints = to_numpy(joints)
    if not idx:
        return joints, np.ones(len(joints), bool)
    ok = np.ones(len(joints), bool)
    if mask is not None:
        ok = (check_mask(mask, joints.shape[:2])[:, idx] > 0).all(1)
    return joints - joints[:, idx].mean(1, keepdims=True), ok


# --- 2D ------------------------------------------------------------------------------------


def torso_size(
    gt: np.ndarray, vis: np.ndarray, joint_names: Sequence[str] = SUPERSET
) -> np.ndarray:
    """Per-sample torso diameter ``(B,)``: mean length of the visible shoulder-to-opposite-hip
    diagonals (the LSP PCK convention); NaN when neither diagonal is visible."""
    lookup = {n: i for i, n in enumerate(joint_names)}
    lengths, valid = [], []
    for a, b in (("l_shoulder", "r_hip"), ("r_shoulder", "l_hip")):
        ia, ib = lookup[a], lookup[b]
        lengths.append(np.linalg.norm(gt[:, ia] - gt[:, ib], axis=-1))
        valid.append((vis[:, ia] > 0) & (vis[:, ib] > 0))
    lengths_a, valid_a = np.stack(lengths, 1), np.stack(valid, 1)
    n = valid_a.sum(1)
    size = np.where(valid_a, lengths_a, 0.0).sum(1) / np.maximum(n, 1)
    return np.where((n > 0) & (size > 0), size, np.nan)


def box_size(gt: np.ndarray, vis: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
    """Per-sample box size ``(B,)``: ``boxes`` given as sides ``(B,)`` or ``(B, 4)`` x0, y0, x1,
    y1 (the larger side), else the larger side of the tight box of the visible ground truth."""
    if boxes is not None:
        boxes = np.asarray(boxes, np.float64)
        if boxes.shape == (len(gt),):
            return np.where(boxes > 0, boxes, np.nan)
        if boxes.shape != (len(gt), 4):
            raise ValueError(
                f"boxes must have shape ({len(gt)},) sides or ({len(gt)}, 4) x0,y0,x1,y1, "
                f"got {boxes.shape}"
            )
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        return np.where(side > 0, side, np.nan)
    v = vis > 0
    lo = np.where(v[..., None], gt, np.inf).min(1)
    hi = np.where(v[..., None], gt, -np.inf).max(1)
    side = (hi - lo).max(-1)
    return np.where(np.isfinite(side) & (side > 0), side, np.nan)


def pck_hits(
    pred: ArrayLike,
    gt: ArrayLike,
    vis: ArrayLike,
    thresholds: Sequence[float],
    norm: Literal["torso", "box"] = "torso",
    boxes: np.ndarray | None = None,
    joint_names: Sequence[str] = SUPERSET,
) -> np.ndarray:
    """Per threshold, sample and keypoint: 1.0 if ``|pred - gt| <= t * size``, 0.0 if not, NaN
    where the keypoint is not visible or the sample has no size. Shape ``(T, B, K)``.

    ``size`` is the torso diameter (:func:`torso_size`) or the box size (:func:`box_size`).
    ``joint_names`` names the K points (default: the superset) to find shoulders and hips.
    """
    check_pair(pred, gt, dims=2)
    p, g = to_numpy(pred), to_numpy(gt)
    v = check_mask(vis, g.shape[:2], "vis")
    if norm == "torso":
        size = torso_size(g, v, joint_names)
    elif norm == "box":
        size = box_size(g, v, boxes)
    else:
        raise ValueError(f"norm must be 'torso' or 'box', got {norm!r}")
    dist = np.linalg.norm(p - g, axis=-1) / size[:, None]  # NaN rows when size unknown
    t = np.asarray(thresholds, np.float64)[:, None, None]
    hits = (dist[None] <= t).astype(np.float64)
    return np.where((v[None] > 0) & ~np.isnan(dist[None]), hits, np.nan)


def pck_2d(
    pred: ArrayLike,
    gt: ArrayLike,
    vis: ArrayLike,
    thresholds: Sequence[float] = (0.05, 0.1, 0.2),
    norm: Literal["torso", "box"] = "torso",
    boxes: np.ndarray | None = None,
    joint_names: Sequence[str] = SUPERSET,
    joints: Sequence[int] | None = None,
) -> np.ndarray:
    """PCK ``(T,)`` in [0, 1] over all visible keypoints (restricted to the positions ``joints``
    when given, e.g. ``subset_indices('lsp14')``); sizes still use the shoulders and hips."""
    hits = pck_hits(pred, gt, vis, thresholds, norm, boxes, joint_names)
    if joints is not None:
        hits = hits[:, :, np.asarray(joints)]
    return nanmean(hits.reshape(len(hits), -1), axis=1)
