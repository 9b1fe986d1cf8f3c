"""The train stage's work: params -> a trained model file, resuming an unfinished run.

A killed run resumes from ``checkpoints/last.pt`` only onto the same params and the same data:
the checkpoint stores a content hash of every file training reads (the HDF5 sets, pairs tables
and mocap poses), and a different file is refused by name with the way out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from texturepose.body import body_from_section
from texturepose.files import write_json
from texturepose.params_schema import MocapParams
from texturepose.tracking import stage_run
from texturepose.training.checkpoint import load_checkpoint, save_model
from texturepose.training.config import TrainConfig, config_changes
from texturepose.training.data import build_data, dataset_paths, load_mocap_poses
from texturepose.training.distributed import cleanup, init_distributed
from texturepose.training.factory import build_models, build_trainer
from texturepose.training.fit import FitResult, fit, resume
from texturepose.training.overlays import overlay_grid

log = logging.getLogger(__name__)

#: Where the mocap stage writes the poses when params have no ``mocap.out`` (the schema default).
DEFAULT_MOCAP: str = MocapParams.model_fields["out"].default


class ResumeError(RuntimeError):
    """``last.pt`` belongs to another run than this one and cannot be continued."""


def file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def data_fingerprint(files: Mapping[str, Path], root: Path) -> dict[str, str]:
    """``{path relative to root: sha256}`` of every file training reads."""
    out = {}
    for path in files.values():
        path = Path(path)
        key = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        out[key] = file_digest(path)
    return out


def fingerprint_changes(saved: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """What differs, e.g. ``["data/processed/synthetic_train.h5 changed"]``."""
    changes = []
    for k in sorted(set(saved) | set(now)):
        if k not in now:
            changes.append(f"{k} is no longer read")
        elif k not in saved:
            changes.append(f"{k} is new")
        elif saved[k] != now[k]:
            changes.append(f"{k} changed (sha256 {saved[k][:12]} -> {now[k][:12]})")
    return changes


@dataclass
class TrainOutcome:
    result: FitResult
    model_path: Path | None  # final.pt when the run finished
    metrics: dict[str, Any]


def _resumable_state(last: Path, cfg: TrainConfig, fingerprint: dict[str, str],
                     is_main: bool) -> dict[str, Any] | None:
    """The state of ``last`` when this run continues it; None to start afresh."""
    if not (cfg.train.resume and last.exists()):
        if last.exists() and is_main:
            log.info("train.resume is false: starting afresh (overwriting %s)", last)
        return None
    state = load_checkpoint(last)
    changes = config_changes(state.get("config") or {}, cfg)
    if changes:
        # Another experiment (e.g. `dvc exp run -S loss.texture=0` after a baseline): its
        # checkpoint is not this run's past.
        log.warning("%s was trained with other params (%s): starting afresh", last,
                    "; ".join(changes[:5]) + (" ..." if len(changes) > 5 else ""))
        return None
    step = int(state.get("step", 0))
    if step >= cfg.train.steps:
        # Only an unfinished run is resumed (a kill, or train.steps raised). A finished one is
        # not: DVC reruns train only when its data or code changed, and a longer run's weights
        # must not be passed off as a train.steps-step model.
        log.warning("%s is at step %d, train.steps = %d: that run is finished; starting afresh",
                    last, step, cfg.train.steps)
        return None
    saved = state.get("data_fingerprint")
    changed = fingerprint_changes(saved, fingerprint) if saved is not None else [
        "the checkpoint predates data fingerprints"]
    if changed:
        raise ResumeError(
            f"{last} (step {step} of {cfg.train.steps}) was trained on other data: "
            f"{'; '.join(changed)}. Continuing it would mix two datasets in one model. Set "
            f"train.resume: false (or delete {last}) to start afresh on the current data."
        )
    return state


def train_from_params(params: Mapping[str, Any], root: Path, stop_at: int | None = None,
                      run_name: str | None = None) -> TrainOutcome:
    """Train with ``params`` (validated sections), writing under ``root``: ``checkpoints/last.pt``
    (resume), ``checkpoints/final.pt`` and ``reports/train_metrics.json`` when finished."""
    root = Path(root)
    cfg = TrainConfig.from_params(params)
    info = init_distributed(cfg.train.device)
    if not info.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    bp = params.get("body") or {}
    body = body_from_section(bp, root)
    mocap = root / ((params.get("mocap") or {}).get("out") or DEFAULT_MOCAP)
    rotmats = load_mocap_poses(mocap, body)
    cache = root / "data" / "cache" / f"uv_atlas_{body.name}_{cfg.loss.texture_res}.npz"
    models = build_models(cfg, body, rotmats, atlas_cache=cache if info.is_main else None,
                          lifter_cache=root / "data" / "cache" if info.is_main else None)
    paths = dataset_paths(cfg, root)
    data = build_data(cfg, body, paths, info)
    trainer = build_trainer(cfg, body, models, info)

    read = {"mocap": mocap, **{f"{n}/h5": h5 for n, (h5, _) in paths.items()},
            **{f"{n}/pairs": p for n, (_, p) in paths.items() if p is not None and p.exists()}}
    fingerprint = data_fingerprint(read, root)
    last = root / "checkpoints" / "last.pt"
    state = _resumable_state(last, cfg, fingerprint, info.is_main)
    tp = params.get("tracking") or {}

    def overlays(batch, out):
        return overlay_grid(batch["image"], body, out.rotmats, out.shape, out.cam, out.focal,
                            cfg.loss.focal)

    model_path, metrics = None, {}
    with stage_run("train", params, project_root=root, experiment=tp.get("experiment",
                   "texturepose"), uri=tp.get("uri"),
                   run_id=state.get("mlflow_run_id") if state else None,
                   enabled=bool(tp.get("enabled", True)) and info.is_main,
                   run_name=run_name) as run:
        if state is not None:
            resume(trainer, data, state)
        if info.is_main:
            run.log_params({"world_size": info.world_size, "device": str(info.device),
                            "global_batch": cfg.train.batch_size * info.world_size})
        result = fit(trainer, data, checkpoint_path=last, tracker=run, stop_at=stop_at,
                     overlay_fn=overlays, num_workers=cfg.train.num_workers,
                     checkpoint_extra={"data_fingerprint": fingerprint})
        if info.is_main and result.finished:
            model_path = save_model(root / "checkpoints" / "final.pt", trainer.regressor,
                                    dataclasses.asdict(cfg.model), bp, models.mean_params,
                                    {"step": result.step, "mlflow_run_id": run.run_id,
                                     "focal_224": cfg.loss.focal,
                                     "camera": cfg.loss.camera,
                                     "data_fingerprint": fingerprint})
            run.log_artifact(model_path, "checkpoints")
            metrics = {
                "steps": result.step,
                "images_per_s": round(result.images_per_s, 3),
                "world_size": info.world_size,
                "device": str(info.device),
                "mlflow_run_id": run.run_id,
                "final_losses": {k: round(v, 6) for k, v in result.losses.items()},
            }
            write_json(root / "reports" / "train_metrics.json", metrics)
            run.log_metrics({"final/images_per_s": result.images_per_s})
            log.info("trained %d steps at %.2f images/s; model %s", result.step,
                     result.images_per_s, model_path)
        elif info.is_main:
            log.info("stopped at step %d of %d; rerun to resume from %s", result.step,
                     cfg.train.steps, last)
    cleanup(info)
    return TrainOutcome(result, model_path, metrics)
