"""Evaluate a trained regressor on one evaluation set: metrics, tables, plots and overlays.

For every set: the model's predictions (:func:`texturepose.inference.predict.predict_dataset`),
3D errors under the set's protocol (``kind: 3d``) with the **mean-pose baseline** on the same
samples (the IEF's starting point: a model that does not beat it has not learned pose from the
images), 2D PCK of the projected mesh keypoints wherever the file has 2D keypoints (LSP-14
joints, torso-normalised, by default), and the best/median/worst overlay grid.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from texturepose.body.base import BodyModel, BodyModelError
from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.evaluation.evaluate import Summary, evaluate_protocol, summarise_2d
from texturepose.evaluation.outputs import overlay_grid, write_summary
from texturepose.evaluation.protocols import JOINT_SETS, protocol_from_dict
from texturepose.files import atomic_dir
from texturepose.geometry.cameras import SPIN_FOCAL_224
from texturepose.geometry.rotations import rot6d_to_matrix
from texturepose.inference.predict import Predictions, camera_vertices, load_crop, predict_dataset
from texturepose.render.overlay import render_overlay, render_side_view

log = logging.getLogger(__name__)

IDENTITY = ("subject", "sequence", "camera", "frame")


class EvaluationError(ValueError):
    """An evaluation set that cannot be evaluated as configured; the message says why."""


class Crops:
    """The stored crops at the model's input resolution, uint8, read on access."""

    def __init__(self, dataset: Hdf5Dataset, res: int) -> None:
        self.dataset, self.res = dataset, res

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> np.ndarray:
        return (load_crop(self.dataset[i], self.res).transpose(1, 2, 0) * 255).astype(np.uint8)


class LazyOverlays:
    """Front/side overlays rendered on access, so only the picked samples are rendered."""

    def __init__(self, body: BodyModel, crops: Crops, preds: Predictions, side: bool) -> None:
        self.body, self.crops, self.preds, self.side = body, crops, preds, side

    def __len__(self) -> int:
        return len(self.preds.cam)

    def __getitem__(self, i: int) -> np.ndarray:
        p, res = self.preds, self.crops.res
        verts, k = camera_vertices(self.body, p.rotmats[i : i + 1], p.shape[i : i + 1],
                                   p.cam[i : i + 1], res, p.focal[i : i + 1])
        if self.side:
            return render_side_view(verts[0], self.body.faces, k[0], (res, res))
        return render_overlay(self.crops[i], verts[0], self.body.faces, k[0])


class Rows:
    """A view of a lazy sequence at the given rows (per-sample tables index the whole set)."""

    def __init__(self, seq: Any, rows: np.ndarray) -> None:
        self.seq, self.rows = seq, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Any:
        return self.seq[int(self.rows[i])]


def joint_subset(name: str) -> tuple[str, ...]:
    if name not in JOINT_SETS:
        raise EvaluationError(f"unknown joint set {name!r}; known: {sorted(JOINT_SETS)}")
    return tuple(JOINT_SETS[name])


@torch.no_grad()
def mean_pose_keypoints(body: BodyModel, mean_params: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(1, K, 3)`` keypoints of the mean parameters (the IEF's starting point)."""
    rot = rot6d_to_matrix(torch.as_tensor(mean_params["rot6d"]).float().reshape(1, -1, 6))
    shape = torch.as_tensor(mean_params["shape"]).float().reshape(1, -1)
    dev = body.faces.device
    return body.keypoints(rot.to(dev), shape.to(dev)).cpu().numpy()


def pck_2d(preds: Predictions, ds: Hdf5Dataset, cfg: Mapping[str, Any],
           keypoints: np.ndarray | None = None) -> Summary:
    """PCK of the projected mesh keypoints (or of ``keypoints``, e.g. the keypoint head's,
    in the same original-image pixels) against the file's 2D keypoints (``cfg``: ``joints``,
    default ``lsp14``; ``pck: {thresholds, norm}``, default torso)."""
    gt = ds.column("keypoints_2d")[: len(preds.cam)]  # original-image pixels, as the predictions
    pck = cfg.get("pck") or {}
    pred = preds.keypoints_2d if keypoints is None else keypoints
    return summarise_2d(pred, gt[..., :2], gt[..., 2] > 0,
                        eval_joints=joint_subset(cfg.get("joints", "lsp14")),
                        thresholds=pck.get("thresholds", (0.05, 0.1, 0.2)),
                        norm=pck.get("norm", "torso"))


def head_pck(preds: Predictions, ds: Hdf5Dataset, cfg: Mapping[str, Any]) -> dict[str, float]:
    """``head_pck@t``: the keypoint head's own PCK (empty without a head or 2D labels). Beside
    the mesh's ``pck@t`` it tells whether the head or the step from head to mesh limits the
    2D fit."""
    if preds.head_keypoints_2d is None or not ds.has("keypoints_2d"):
        return {}
    metrics = pck_2d(preds, ds, cfg, keypoints=preds.head_keypoints_2d).metrics
    return {f"head_{k}": v for k, v in metrics.items() if k.startswith("pck@")}


def evaluate_set(
    cfg: Mapping[str, Any],
    path: str | Path,
    regressor: torch.nn.Module,
    body: BodyModel,
    res: int,
    out_dir: str | Path,
    mean_params: Mapping[str, np.ndarray] | None = None,
    batch_size: int = 32,
    focal_224: float = SPIN_FOCAL_224,
    calibrated: bool = True,
) -> tuple[dict[str, float], dict[str, Path]]:
    """Evaluate one set of ``evaluate.sets`` (``cfg``: name, kind, protocol, joints, pck,
    limit, refine_steps) from its file ``path``; write its tables, plot and overlays into
    ``out_dir``. ``focal_224`` and ``calibrated``: the model's training camera (see
    ``predict_dataset``). Returns the metrics and the written paths."""
    name = cfg["name"]
    ds = Hdf5Dataset(path)
    refine_steps = int(cfg.get("refine_steps", 0))
    try:
        preds = predict_dataset(regressor, body, ds, res, batch_size=batch_size,
                                limit=cfg.get("limit"), focal_224=focal_224,
                                refine_steps=refine_steps, calibrated=calibrated)
    except ValueError as e:
        raise EvaluationError(f"evaluate.sets {name}: {e}") from None
    n = len(preds.cam)
    identity = {k: ds.column(k)[:n] for k in IDENTITY}
    mask = body.keypoint_mask.cpu().numpy()
    kind = cfg.get("kind", "3d")
    extra: dict[str, float] = {}
    if kind == "3d":
        if not ds.has("keypoints_3d"):
            raise EvaluationError(f"evaluate.sets {name}: {path} has no keypoints_3d; use "
                                  "kind: 2d")
        gt = ds.column("keypoints_3d")[:n]
        protocol = protocol_from_dict(cfg.get("protocol") or {})
        summary = evaluate_protocol(preds.keypoints_3d, gt, identity, protocol, pred_mask=mask)
        if mean_params is not None:
            mean = np.repeat(mean_pose_keypoints(body, mean_params), n, axis=0)
            base = evaluate_protocol(mean, gt, identity, protocol, pred_mask=mask).metrics
            extra = {"mean_pose_mpjpe": base["mpjpe"], "mean_pose_pa_mpjpe": base["pa_mpjpe"]}
            extra["pa_mpjpe_vs_mean_pose"] = summary.metrics["pa_mpjpe"] / base["pa_mpjpe"]
        if ds.has("keypoints_2d"):
            extra.update({k: v for k, v in pck_2d(preds, ds, cfg).metrics.items()
                          if k.startswith("pck@")})
        errors, unit = summary.per_sample["pa_mpjpe"].to_numpy(), "mm"
    elif kind == "2d":
        summary = pck_2d(preds, ds, cfg)
        errors, unit = summary.per_sample["err_norm"].to_numpy(), "torso"
    else:
        raise EvaluationError(f"evaluate.sets {name}: kind = {kind!r} must be 3d or 2d")
    out_dir = Path(out_dir)
    paths = write_summary(out_dir, summary, name)
    rows = summary.per_sample["index"].to_numpy()
    grid = out_dir / "overlays.png"
    crops = Crops(ds, res)
    picks = overlay_grid(Rows(crops, rows), Rows(LazyOverlays(body, crops, preds, False), rows),
                         Rows(LazyOverlays(body, crops, preds, True), rows), errors, grid,
                         unit=unit)
    paths["overlays"] = grid
    metrics = {**summary.metrics, **extra, **head_pck(preds, ds, cfg)}
    if refine_steps:
        metrics["refine_steps"] = float(refine_steps)
    log.info("%s: %s; overlays of %s", name, _rounded(metrics), picks)
    return metrics, paths


def _rounded(metrics: Mapping[str, float], digits: int = 3) -> dict[str, float]:
    return {k: round(float(v), digits) for k, v in metrics.items()}


def evaluate_checkpoint(
    checkpoint: str | Path,
    sets: list[Mapping[str, Any]],
    root: str | Path,
    out_root: str | Path,
    batch_size: int = 32,
) -> tuple[dict[str, dict[str, float]], list[Path], dict[str, Any]]:
    """Evaluate a trained-model file on ``sets`` (``evaluate.sets`` entries; files relative to
    ``root``; a set marked ``optional`` whose file is absent is skipped). Each set's outputs go
    to ``out_root/<name>/``, written in a temporary sibling folder and swapped in whole (a
    failure leaves the previous folder as it was). Returns the metrics per set, the written
    files and the model file's dict (its ``mlflow_run_id``, ``body``...)."""
    from texturepose.body import body_from_section
    from texturepose.training.checkpoint import (
        ModelBodyMismatchError,
        check_model_body,
        load_model,
    )

    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise EvaluationError(f"{checkpoint} does not exist: run the train stage first "
                              "(dvc repro train)")
    try:
        regressor, state = load_model(checkpoint)
    except ValueError as e:
        raise EvaluationError(str(e)) from e
    try:
        body = body_from_section(state.get("body"), root, source=f"the model file {checkpoint}")
    except BodyModelError as e:
        raise EvaluationError(f"{checkpoint}: its body model cannot be built here: {e}") from e
    try:
        check_model_body(checkpoint, state, body)
    except ModelBodyMismatchError as e:
        raise EvaluationError(str(e)) from e
    res = int(state["model_config"]["res"])
    metrics: dict[str, dict[str, float]] = {}
    artifacts: list[Path] = []
    for cfg in sets:
        path = Path(root) / cfg["file"]
        if not path.exists() and cfg.get("optional", False):
            log.warning("evaluation set %s: %s absent, skipped", cfg["name"], cfg["file"])
            continue
        final = Path(out_root) / cfg["name"]
        # into a temporary sibling, swapped in whole: a failure keeps the previous folder
        with atomic_dir(final) as tmp:
            m, paths = evaluate_set(cfg, path, regressor, body, res, tmp,
                                    state.get("mean_params"), batch_size,
                                    float(state.get("focal_224", SPIN_FOCAL_224)),
                                    state.get("camera", "calibrated") == "calibrated")
        paths = {k: final / Path(p).relative_to(tmp) for k, p in paths.items()}
        metrics[cfg["name"]] = m
        artifacts += [p for p in paths.values() if Path(p).exists()]
    return metrics, artifacts, state
