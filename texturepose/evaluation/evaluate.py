"""Summaries of one evaluation set: headline metrics, per-joint, per-group and per-sample tables.

Plain-array interface, independent of the model and checkpoint: the evaluate stage runs the
network, then hands predicted and ground-truth keypoints (and vertices where known) here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from texturepose.evaluation import metrics as M
from texturepose.evaluation.protocols import Protocol, action_name, as_strings, group_means, select
from texturepose.keypoints import SUPERSET

log = logging.getLogger(__name__)


class Summary(NamedTuple):
    """``metrics``: headline numbers (JSON-ready); ``per_joint``: one row per joint;
    ``per_group``: one table per grouping (e.g. ``sequence``, ``action``); ``per_sample``: one row
    per evaluated sample with its dataset ``index`` and errors (for best/median/worst pictures)."""

    metrics: dict[str, float]
    per_joint: pd.DataFrame
    per_group: dict[str, pd.DataFrame]
    per_sample: pd.DataFrame


def _positions(names: Sequence[str], joint_names: Sequence[str]) -> np.ndarray:
    lookup = {n: i for i, n in enumerate(joint_names)}
    missing = [n for n in names if n not in lookup]
    if missing:
        raise KeyError(
            f"evaluation joint(s) {missing} are not among the joints {list(joint_names)}"
        )
    return np.array([lookup[n] for n in names], dtype=np.int64)


def _groups_table(
    per_sample: pd.DataFrame, groups: Mapping[str, Sequence] | None, keep: np.ndarray, cols: list
) -> dict[str, pd.DataFrame]:
    out = {}
    for by, labels in (groups or {}).items():
        labels = np.asarray(labels, dtype=object)
        if len(labels) != len(keep):
            raise ValueError(f"group {by!r} has {len(labels)} labels for {len(keep)} samples")
        per_sample[by] = labels[keep]
        out[by] = group_means({c: per_sample[c].to_numpy() for c in cols}, labels[keep], by)
    return out


def summarise(
    pred_joints: np.ndarray,
    gt_joints: np.ndarray,
    joint_names: Sequence[str] = SUPERSET,
    *,
    eval_joints: Sequence[str] | None = None,
    root: str | Sequence[str] = "pelvis",
    mask: np.ndarray | None = None,
    pred_mask: np.ndarray | None = None,
    groups: Mapping[str, Sequence] | None = None,
    pred_vertices: np.ndarray | None = None,
    gt_vertices: np.ndarray | None = None,
) -> Summary:
    """3D errors in mm of ``pred_joints``/``gt_joints`` ``(B, N, 3)`` in metres.

    ``joint_names`` names the N points (default: the keypoint superset); ``eval_joints`` are the
    names scored (default: all); ``root`` a :data:`metrics.ROOTS` key or point names, subtracted
    from prediction and ground truth before MPJPE (PA-MPJPE needs none). ``mask`` ``(B, N)``
    marks known ground-truth points and ``pred_mask`` ``(N,)`` the points the body model
    predicts (``BodyModel.keypoint_mask``); samples whose root is unknown or that have no known
    evaluation joint are skipped and counted (``metrics['skipped']``). Vertices, when given for
    both, are aligned by the same roots and give the per-vertex error ``pve``. Headline numbers are
    means over samples of the per-sample means.
    """
    pred, gt = M.to_numpy(pred_joints), M.to_numpy(gt_joints)
    M.check_pair(pred, gt)
    if len(joint_names) != pred.shape[1]:
        raise ValueError(f"{len(joint_names)} joint names for {pred.shape[1]} joints")
    valid = M.check_mask(mask, pred.shape[:2]) > 0
    if pred_mask is not None:
        pm = M.to_numpy(pred_mask).astype(bool)
        if pm.shape != (pred.shape[1],):
            raise ValueError(f"pred_mask must have shape ({pred.shape[1]},), got {pm.shape}")
        valid &= pm[None]
    pred_a, _ = M.align_root(pred, root, joint_names)
    gt_a, root_ok = M.align_root(gt, root, joint_names, valid)
    cols = _positions(eval_joints or joint_names, joint_names)
    keep = root_ok & valid[:, cols].any(1)
    skipped = int((~keep).sum())
    if skipped:
        log.warning("skipped %d of %d samples: unknown root or no known joint", skipped, len(keep))
    if not keep.any():
        raise ValueError("no sample can be evaluated: every sample lacks its root or all joints")
    idx = np.flatnonzero(keep)
    m = valid[idx][:, cols]
    err = M.joint_errors(pred_a[idx][:, cols], gt_a[idx][:, cols], m)
    pa_err = M.pa_joint_errors(pred[idx][:, cols], gt[idx][:, cols], m)
    per_sample = pd.DataFrame(
        {"index": idx, "mpjpe": M.nanmean(err, 1), "pa_mpjpe": M.nanmean(pa_err, 1)}
    )
    if pred_vertices is not None and gt_vertices is not None:
        ri = M.root_indices(root, joint_names)
        pv, gv = M.to_numpy(pred_vertices)[idx], M.to_numpy(gt_vertices)[idx]
        if ri:
            pv = pv - pred[idx][:, ri].mean(1, keepdims=True)
            gv = gv - gt[idx][:, ri].mean(1, keepdims=True)
        per_sample["pve"] = M.pve(pv, gv)
    names = [joint_names[c] for c in cols]
    per_joint = pd.DataFrame(
        {
            "joint": names,
            "n": (~np.isnan(err)).sum(0),
            "mpjpe": M.nanmean(err, 0),
            "pa_mpjpe": M.nanmean(pa_err, 0),
        }
    )
    metric_cols = [c for c in per_sample.columns if c != "index"]
    per_group = _groups_table(per_sample, groups, keep, metric_cols)
    metrics = {c: float(per_sample[c].mean()) for c in metric_cols}
    metrics.update(n=int(len(idx)), skipped=skipped)
    # one pose for every image shows here at once (pose_spread_vs_gt near 0)
    metrics["pose_spread"] = M.pose_spread(pred[idx][:, cols], m)
    metrics["gt_pose_spread"] = M.pose_spread(gt[idx][:, cols], m)
    metrics["pose_spread_vs_gt"] = metrics["pose_spread"] / max(metrics["gt_pose_spread"], 1e-9)
    return Summary(metrics, per_joint, per_group, per_sample)


def evaluate_protocol(
    pred_keypoints: np.ndarray,
    gt_keypoints: np.ndarray,
    identity: Mapping[str, Sequence],
    protocol: Protocol,
    *,
    joint_names: Sequence[str] = SUPERSET,
    pred_mask: np.ndarray | None = None,
    pred_vertices: np.ndarray | None = None,
    gt_vertices: np.ndarray | None = None,
) -> Summary:
    """Apply a protocol to a whole evaluation set of superset keypoints.

    ``gt_keypoints`` is ``(B, K, 3)`` or the HDF5's ``(B, K, 4)`` with a confidence column
    (0 = unknown); ``pred_mask`` as in :func:`summarise`. ``identity`` holds the HDF5 identity
    fields; ``sequence`` (when present) gives per-sequence and per-action tables.
    ``per_sample['index']`` indexes the whole set.
    """
    gt = M.to_numpy(gt_keypoints)
    mask = gt[..., 3] > 0 if gt.shape[-1] == 4 else None
    gt = gt[..., :3]
    sel = select(identity, protocol)
    groups = {}
    if "sequence" in identity:
        seq = as_strings(identity["sequence"])[sel]
        groups = {"sequence": seq, "action": np.array([action_name(s) for s in seq], object)}
    verts = {}
    if pred_vertices is not None and gt_vertices is not None:
        verts = {
            "pred_vertices": M.to_numpy(pred_vertices)[sel],
            "gt_vertices": M.to_numpy(gt_vertices)[sel],
        }
    out = summarise(
        M.to_numpy(pred_keypoints)[sel],
        gt[sel],
        joint_names,
        eval_joints=protocol.joint_names(),
        root=protocol.root,
        mask=None if mask is None else mask[sel],
        pred_mask=pred_mask,
        groups=groups,
        **verts,
    )
    out.per_sample["index"] = np.flatnonzero(sel)[out.per_sample["index"].to_numpy()]
    out.metrics["headline"] = out.metrics[protocol.headline]
    log.info("%s: %s", protocol.name, {k: round(v, 2) for k, v in out.metrics.items()})
    return out


def pck_key(t: float) -> str:
    """Name of the PCK metric at threshold ``t``: ``pck@0.2``."""
    return f"pck@{t:g}"


def summarise_2d(
    pred: np.ndarray,
    gt: np.ndarray,
    vis: np.ndarray,
    joint_names: Sequence[str] = SUPERSET,
    *,
    eval_joints: Sequence[str] | None = None,
    thresholds: Sequence[float] = (0.05, 0.1, 0.2),
    norm: str = "torso",
    boxes: np.ndarray | None = None,
    groups: Mapping[str, Sequence] | None = None,
) -> Summary:
    """2D PCK for datasets with 2D ground truth only (LSP): ``pred``/``gt`` ``(B, K, 2)`` pixels,
    ``vis`` ``(B, K)``. Metrics ``pck@t`` (fraction in [0, 1] of visible evaluation keypoints)
    and ``err_norm`` (mean distance over the normaliser, lower is better, for ranking samples).
    Samples without a normaliser (torso not visible) or visible joints are skipped and counted."""
    p, g = M.to_numpy(pred), M.to_numpy(gt)
    hits = M.pck_hits(p, g, vis, thresholds, norm, boxes, joint_names)  # (T, B, K)
    cols = _positions(eval_joints or joint_names, joint_names)
    hits = hits[:, :, cols]
    keep = ~np.isnan(hits[0]).all(1)
    skipped = int((~keep).sum())
    if skipped:
        log.warning("skipped %d of %d samples: no normaliser or no visible joint", skipped, len(p))
    if not keep.any():
        raise ValueError("no sample can be evaluated: no visible joints with a known normaliser")
    idx = np.flatnonzero(keep)
    hits = hits[:, idx]
    size = M.torso_size(g, vis, joint_names) if norm == "torso" else M.box_size(g, vis, boxes)
    dist = np.linalg.norm(p - g, axis=-1)[idx][:, cols] / size[idx, None]
    dist = np.where(np.isnan(hits[0]), np.nan, dist)
    per_sample = pd.DataFrame({"index": idx})
    per_joint = pd.DataFrame({"joint": [joint_names[c] for c in cols]})
    per_joint["n"] = (~np.isnan(hits[0])).sum(0)
    metrics: dict[str, float] = {}
    for t, h in zip(thresholds, hits, strict=True):
        per_sample[pck_key(t)] = M.nanmean(h, 1)
        per_joint[pck_key(t)] = M.nanmean(h, 0)
        metrics[pck_key(t)] = float(M.nanmean(h.ravel()))  # over keypoints, the usual PCK
    per_sample["err_norm"] = M.nanmean(dist, 1)
    metric_cols = [c for c in per_sample.columns if c != "index"]
    per_group = _groups_table(per_sample, groups, keep, metric_cols)
    metrics.update(err_norm=float(per_sample["err_norm"].mean()), n=int(len(idx)), skipped=skipped)
    return Summary(metrics, per_joint, per_group, per_sample)
