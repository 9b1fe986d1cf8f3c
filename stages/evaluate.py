"""DVC stage `evaluate`: run the trained model on every evaluation set of params.yaml.

    python stages/evaluate.py

Writes reports/metrics.json (DVC metrics), reports/eval/<set>/ (per-joint, per-sequence and
per-sample CSVs for DVC plots, the error-by-joint plot and the overlay grid of the best, median
and worst samples), and logs the same to the training's MLflow run.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

import numpy as np  # noqa: E402

from stages.common import REPO, load_params, seed_everything, setup_logging  # noqa: E402

log = logging.getLogger("stages.evaluate")


class Crops:
    """The stored crops at the model's input resolution, uint8, read on access."""

    def __init__(self, dataset, res: int) -> None:
        self.dataset, self.res = dataset, res

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> np.ndarray:
        from texturepose.inference.predict import load_crop

        return (load_crop(self.dataset[i], self.res).transpose(1, 2, 0) * 255).astype(np.uint8)


class LazyOverlays:
    """Front/side overlays rendered on access, so only the picked samples are rendered."""

    def __init__(self, body, crops: Crops, preds, side: bool) -> None:
        self.body, self.crops, self.preds, self.side = body, crops, preds, side

    def __len__(self) -> int:
        return len(self.preds.cam)

    def __getitem__(self, i: int) -> np.ndarray:
        from texturepose.inference.predict import camera_vertices
        from texturepose.render.overlay import render_overlay, render_side_view

        p, res = self.preds, self.crops.res
        verts, k = camera_vertices(self.body, p.rotmats[i : i + 1], p.shape[i : i + 1],
                                   p.cam[i : i + 1], res)
        if self.side:
            return render_side_view(verts[0], self.body.faces, k, (res, res))
        return render_overlay(self.crops[i], verts[0], self.body.faces, k)


def evaluate_set(cfg: dict, regressor, body, res: int, out_root: Path, batch: int) -> tuple:
    from texturepose.data.hdf5 import Hdf5Dataset
    from texturepose.evaluation.evaluate import evaluate_protocol, summarise_2d
    from texturepose.evaluation.outputs import overlay_grid, write_summary
    from texturepose.evaluation.protocols import protocol_from_dict
    from texturepose.inference.predict import predict_dataset

    name = cfg["name"]
    path = REPO / cfg["file"]
    ds = Hdf5Dataset(path)
    preds = predict_dataset(regressor, body, ds, res, batch_size=batch, limit=cfg.get("limit"))
    n = len(preds.cam)
    identity = {k: ds.column(k)[:n] for k in ("subject", "sequence", "camera", "frame")}
    mask = body.keypoint_mask.numpy()
    if cfg.get("kind", "3d") == "3d":
        if not ds.has("keypoints_3d"):
            raise SystemExit(f"evaluate.sets {name}: {path} has no keypoints_3d; use kind: 2d")
        gt = ds.column("keypoints_3d")[:n]
        summary = evaluate_protocol(preds.keypoints_3d, gt, identity,
                                    protocol_from_dict(cfg.get("protocol") or {}), pred_mask=mask)
        errors, unit = summary.per_sample["pa_mpjpe"].to_numpy(), "mm"
    else:
        gt2d = ds.column("keypoints_2d")[:n]
        vis = gt2d[..., 2] > 0
        pck = cfg.get("pck") or {}
        summary = summarise_2d(preds.keypoints_2d, gt2d[..., :2], vis,
                               eval_joints=_subset(cfg.get("joints", "lsp14")),
                               thresholds=pck.get("thresholds", (0.05, 0.1, 0.2)),
                               norm=pck.get("norm", "torso"))
        errors, unit = summary.per_sample["err_norm"].to_numpy(), "torso"
    out_dir = out_root / name
    paths = write_summary(out_dir, summary, name)
    rows = summary.per_sample["index"].to_numpy()
    grid = out_dir / "overlays.png"
    crops = Crops(ds, res)
    picks = overlay_grid(_Take(crops, rows), _Take(LazyOverlays(body, crops, preds, False), rows),
                         _Take(LazyOverlays(body, crops, preds, True), rows), errors, grid,
                         unit=unit)
    paths["overlays"] = grid
    log.info("%s: %s; overlays of %s", name, summary.metrics, picks)
    return summary.metrics, paths


class _Take:
    """A view of a lazy sequence at the given rows (per-sample tables index the whole set)."""

    def __init__(self, seq, rows: np.ndarray) -> None:
        self.seq, self.rows = seq, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return self.seq[int(self.rows[i])]


def _subset(name: str) -> tuple[str, ...]:
    from texturepose.evaluation.protocols import JOINT_SETS

    if name not in JOINT_SETS:
        raise SystemExit(f"unknown joint set {name!r}; known: {sorted(JOINT_SETS)}")
    return tuple(JOINT_SETS[name])


def main() -> int:
    setup_logging()
    params = load_params()
    seed_everything(int(params.get("seed", 0)))
    from texturepose.body import build_body_model
    from texturepose.evaluation.mlflow_log import log_evaluation
    from texturepose.evaluation.outputs import write_metrics_json
    from texturepose.tracking import stage_run
    from texturepose.training.checkpoint import load_model

    ev = params["evaluate"]
    ckpt = REPO / ev["checkpoint"]
    if not ckpt.exists():
        raise SystemExit(f"{ckpt} does not exist: run the train stage first (dvc repro train)")
    regressor, state = load_model(ckpt)
    bp = state.get("body") or params["body"]
    body = build_body_model(bp.get("model", "anny"), model_path=bp.get("model_path"),
                            gender=bp.get("gender"), num_betas=bp.get("num_betas"),
                            h36m_regressor_path=bp.get("h36m_regressor_path"),
                            uv_path=bp.get("uv_path"))
    res = int(state["model_config"].get("res") or params["model"].get("res", 224))
    out_root = REPO / "reports" / "eval"
    metrics: dict = {}
    artifacts: list[Path] = []
    for cfg in ev["sets"]:
        if not (REPO / cfg["file"]).exists() and cfg.get("optional", False):
            log.warning("evaluation set %s: %s absent, skipped", cfg["name"], cfg["file"])
            continue
        m, paths = evaluate_set(cfg, regressor, body, res, out_root, int(ev.get("batch_size", 32)))
        metrics[cfg["name"]] = m
        artifacts += [p for p in paths.values() if Path(p).exists()]
    write_metrics_json(REPO / "reports" / "metrics.json", metrics)
    train_metrics = REPO / "reports" / "train_metrics.json"
    run_id = None
    if train_metrics.exists():
        run_id = json.loads(train_metrics.read_text()).get("mlflow_run_id")
    tr = params.get("tracking", {})
    with stage_run("evaluate", params, project_root=REPO, uri=tr.get("uri"),
                   experiment=tr.get("experiment", "texturepose"), run_id=run_id,
                   enabled=bool(tr.get("enabled", True))) as run:
        log_evaluation(run, metrics, [*artifacts, REPO / "reports" / "metrics.json"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
