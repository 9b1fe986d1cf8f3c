"""DVC stage `train`: train the regressor with every loss of params.yaml, tracked in MLflow.

    python stages/train.py                              # one process (CUDA if present, else CPU)
    torchrun --nproc_per_node=4 stages/train.py         # 4 GPUs (or 4 CPU processes, gloo)
    torchrun --nnodes=2 --node_rank=R --nproc_per_node=8 \
        --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 stages/train.py   # 2 machines

Reads params.yaml (sections model, loss, train, data, body, tracking, seed). Resumes from
checkpoints/last.pt when it exists and train.resume is true. Writes checkpoints/final.pt (the
trained model) and reports/train_metrics.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.common import (  # noqa: E402
    REPO,
    load_params,
    seed_everything,
    setup_logging,
    write_json,
)

log = logging.getLogger("stages.train")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"), help="params file")
    ap.add_argument("--root", default=str(REPO), help="project root (data, outputs)")
    ap.add_argument("--stop-at", type=int, default=None,
                    help="stop after this step (checkpoint kept; rerun to resume)")
    ap.add_argument("--run-name", default=None, help="MLflow run name (default: the stage, "
                    "with the DVC experiment's name under `dvc exp run`)")
    args = ap.parse_args(argv)
    setup_logging()

    from texturepose.body import body_from_section
    from texturepose.tracking import stage_run
    from texturepose.training.checkpoint import load_checkpoint, save_model
    from texturepose.training.config import TrainConfig, config_changes
    from texturepose.training.data import build_data, dataset_paths, load_mocap_poses
    from texturepose.training.distributed import cleanup, init_distributed
    from texturepose.training.factory import build_models, build_trainer
    from texturepose.training.fit import fit, resume
    from texturepose.training.overlays import overlay_grid

    root = Path(args.root)
    params = load_params(args.params)
    cfg = TrainConfig.from_params(params)
    info = init_distributed(cfg.train.device)
    if not info.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    seed_everything(cfg.seed)  # same on every rank: DDP also broadcasts rank 0's weights

    bp = params.get("body") or {}
    body = body_from_section(bp, root)
    rotmats = load_mocap_poses(root / cfg.data.mocap, body)
    cache = root / "data" / "cache" / f"uv_atlas_{body.name}_{cfg.loss.texture_res}.npz"
    models = build_models(cfg, body, rotmats, atlas_cache=cache if info.is_main else None)
    mean_params = models.mean_params

    data = build_data(cfg, body, dataset_paths(cfg, root), info)
    trainer = build_trainer(cfg, body, models, info)

    ckpt_dir = root / "checkpoints"
    last = ckpt_dir / "last.pt"
    state, run_id = None, None
    if cfg.train.resume and last.exists():
        state = load_checkpoint(last)
        changes = config_changes(state.get("config") or {}, cfg)
        if changes:
            # Another experiment (e.g. `dvc exp run -S loss.texture=0` after a baseline):
            # its checkpoint is not this run's past.
            log.warning("%s was trained with other params (%s): starting afresh", last,
                        "; ".join(changes[:5]) + (" ..." if len(changes) > 5 else ""))
            state = None
        elif int(state.get("step", 0)) >= cfg.train.steps:
            # Only an unfinished run is resumed (a kill, or train.steps raised). A finished one is
            # not: DVC reruns train only when its data or code changed, and a longer run's weights
            # must not be passed off as a train.steps-step model.
            log.warning("%s is at step %d, train.steps = %d: that run is finished; starting "
                        "afresh", last, int(state.get("step", 0)), cfg.train.steps)
            state = None
        else:
            run_id = state.get("mlflow_run_id")
    elif last.exists() and info.is_main:
        log.info("train.resume is false: starting afresh (overwriting %s)", last)

    tp = params.get("tracking") or {}

    def overlays(batch, out):
        return overlay_grid(batch["image"], body, out.rotmats, out.shape, out.cam, out.focal,
                            cfg.loss.focal)

    with stage_run("train", params, project_root=root, experiment=tp.get("experiment",
                   "texturepose"), uri=tp.get("uri"), run_id=run_id,
                   enabled=bool(tp.get("enabled", True)) and info.is_main,
                   run_name=args.run_name) as run:
        if info.is_main and not run.active and tp.get("enabled", True):
            log.warning("MLflow is unreachable: training goes on without tracking")
        if state is not None:
            resume(trainer, data, state)
        if info.is_main:
            run.log_params({"world_size": info.world_size, "device": str(info.device),
                            "global_batch": cfg.train.batch_size * info.world_size})
        result = fit(trainer, data, checkpoint_path=last, tracker=run, stop_at=args.stop_at,
                     overlay_fn=overlays, num_workers=cfg.train.num_workers)
        if info.is_main and result.finished:
            final = save_model(ckpt_dir / "final.pt", trainer.regressor,
                               dataclasses.asdict(cfg.model), bp, mean_params,
                               {"step": result.step, "mlflow_run_id": run.run_id,
                                "focal_224": cfg.loss.focal})
            run.log_artifact(final, "checkpoints")
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
                     result.images_per_s, final)
        elif info.is_main:
            log.info("stopped at step %d of %d; rerun to resume from %s", result.step,
                     cfg.train.steps, last)
    cleanup(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
