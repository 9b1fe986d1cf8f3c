"""The outer training loop: steps with tqdm, logging, overlays, checkpoints and exact resume."""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from texturepose.rng import rng_state, set_rng_state
from texturepose.tracking import StageRun
from texturepose.training.checkpoint import save_checkpoint
from texturepose.training.data import TrainData, make_loader
from texturepose.training.distributed import all_reduce_mean, barrier
from texturepose.training.loop import Trainer

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    step: int
    losses: dict[str, float] = field(default_factory=dict)  # means over the last log window
    images_per_s: float = 0.0
    finished: bool = False
    checkpoint: Path | None = None


def resume(trainer: Trainer, data: TrainData, state: Mapping[str, Any]) -> None:
    """Restore models, optimisers, sampler and RNGs from a checkpoint (call before :func:`fit`,
    after everything is built, so that building nothing afterwards draws random numbers)."""
    trainer.load_state_dict(state)
    data.sampler.load_state_dict(state["sampler"])
    if data.sampler.step != trainer.step:
        raise ValueError(f"checkpoint sampler step {data.sampler.step} != model step "
                         f"{trainer.step}: the file is inconsistent; delete it")
    set_rng_state(state["rng"])
    log.info("resumed from step %d", trainer.step)


def fit(
    trainer: Trainer,
    data: TrainData,
    checkpoint_path: str | os.PathLike | None = None,
    tracker: StageRun | None = None,
    stop_at: int | None = None,
    overlay_fn: Callable[[Any, Any], Any] | None = None,
    num_workers: int = 0,
    progress: bool = True,
    checkpoint_extra: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train from ``trainer.step`` to ``train.steps`` (or ``stop_at``, for time-boxed runs).

    Rank 0 logs per-step means of the losses every ``train.log_every`` steps (averaged over
    processes), the learning rate and images/s; logs ``overlay_fn(batch, step_output)`` images
    every ``train.overlay_every`` steps; writes ``checkpoint_path`` every
    ``train.checkpoint_every`` steps and at the end, with ``checkpoint_extra`` (e.g. the data
    fingerprint) added to its state.
    """
    cfg = trainer.cfg.train
    info = trainer.dist
    end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    data.sampler.step = trainer.step
    data.sampler.num_steps = end
    result = FitResult(step=trainer.step)
    if trainer.step >= end:
        result.finished = trainer.step >= cfg.steps
        return result
    loader = make_loader(data, num_workers, pin_memory=trainer.device.type == "cuda")
    sums: dict[str, float] = defaultdict(float)
    count, images, t_window = 0, 0, time.perf_counter()
    total_images, t_start = 0, time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc="train", disable=not (
        progress and info.is_main), dynamic_ncols=True)
    for batch in loader:
        out = trainer.train_step(batch)
        step = trainer.step
        data.sampler.step = step  # the next step to draw: what a checkpoint must remember
        n = len(batch["image"]) * info.world_size
        images += n
        total_images += n
        for k, v in out.losses.items():
            sums[k] += v
        count += 1
        bar.update(1)
        if cfg.log_every and (step % cfg.log_every == 0 or step == end):
            dt = time.perf_counter() - t_window
            means = all_reduce_mean({k: v / count for k, v in sums.items()}, info)
            means["images_per_s"] = images / max(dt, 1e-9)
            result.losses = means
            if info.is_main:
                bar.set_postfix(loss=f"{means['total']:.4f}", ips=f"{means['images_per_s']:.1f}")
                if tracker is not None:
                    tracker.log_metrics({f"train/{k}": v for k, v in means.items()}, step=step)
            sums.clear()
            count, images, t_window = 0, 0, time.perf_counter()
        if (overlay_fn is not None and info.is_main and tracker is not None
                and cfg.overlay_every and step % cfg.overlay_every == 0):
            try:
                tracker.log_image(overlay_fn(batch, out), f"overlays/step_{step:07d}.png")
            except Exception as e:  # noqa: BLE001 - a picture must never stop training
                log.warning("overlay at step %d failed: %s", step, e)
        every = cfg.checkpoint_every
        if checkpoint_path is not None and every and step % every == 0 and step < end:
            _save(trainer, data, checkpoint_path, tracker, checkpoint_extra)
        if step >= end:
            break
    bar.close()
    elapsed = time.perf_counter() - t_start
    result.step = trainer.step
    result.images_per_s = total_images / max(elapsed, 1e-9)
    result.finished = trainer.step >= cfg.steps
    if checkpoint_path is not None:
        _save(trainer, data, checkpoint_path, tracker, checkpoint_extra)
        result.checkpoint = Path(checkpoint_path)
    return result


def checkpoint_state(trainer: Trainer, data: TrainData, run_id: str | None) -> dict[str, Any]:
    state = trainer.state_dict()
    state["sampler"] = data.sampler.state_dict()
    state["rng"] = rng_state()
    state["mlflow_run_id"] = run_id
    return state


def _save(trainer: Trainer, data: TrainData, path: str | os.PathLike,
          tracker: StageRun | None, extra: Mapping[str, Any] | None = None) -> None:
    if trainer.dist.is_main:
        state = checkpoint_state(trainer, data, tracker.run_id if tracker else None)
        save_checkpoint(path, {**state, **(extra or {})})
    barrier(trainer.dist)
