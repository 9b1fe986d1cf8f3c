"""The mocap stage's work: motion-capture files -> body-model poses and fit metrics.

BVH clips are read and mapped to superset keypoints one by one (a bad or unmapped file is
skipped and counted with its reason), then every readable clip is fitted in one batched
optimisation (:func:`texturepose.mocap.fit.fit_clips`). AMASS/MoSh ``.npz`` files of the
configured body model are taken as they are. Every ``test_every``-th clip of a source is a
held-out motion (see :func:`clip_split`).
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from texturepose.body.base import BodyModel
from texturepose.datasets.common import ReaderError
from texturepose.keypoints import NUM_KEYPOINTS, SUPERSET
from texturepose.mocap.bvh import BvhError
from texturepose.mocap.fit import FitConfig, fit_clips, read_clip_targets, usable_keypoints
from texturepose.mocap.poses import MocapClipPoses, smpl_poses_from_npz
from texturepose.mocap.skeletons import UnknownSkeletonError

log = logging.getLogger(__name__)

SKIPPABLE = (BvhError, UnknownSkeletonError, ReaderError, NotImplementedError, ValueError)


@dataclass
class MocapSource:
    """One entry of ``mocap.sources``: a name, a glob (relative to ``root``), a licence note
    and an optional clip limit (taken evenly over the sorted file list)."""

    name: str
    glob: str
    licence: str
    max_clips: int = 0


@dataclass
class MocapRun:
    clips: list[MocapClipPoses] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def clip_split(index: int, test_every: int) -> str:
    """Every ``test_every``-th clip of a source (the last of each group) is a held-out motion
    ("test"): it poses only the held-out subjects and stays out of the pose prior."""
    return "test" if test_every > 0 and index % test_every == test_every - 1 else "train"


def source_files(source: MocapSource, root: Path) -> list[Path]:
    pattern = source.glob if os.path.isabs(source.glob) else str(root / source.glob)
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    if not files:
        log.warning("mocap source %s: no files match %s", source.name, source.glob)
    if source.max_clips and len(files) > source.max_clips:  # evenly: varied actions
        pick = np.linspace(0, len(files) - 1, source.max_clips).round().astype(int)
        files = [files[i] for i in pick]
    return files


def run_mocap(sources: list[MocapSource], body: BodyModel, root: Path, fps: float,
              max_frames: int, fit: FitConfig, test_every: int = 0) -> MocapRun:
    """Read, map and fit every clip of ``sources``; paths are reported relative to ``root``."""
    if fps <= 0:
        raise ValueError(f"mocap.fps must be > 0, got {fps}")
    run = MocapRun()
    t0 = time.perf_counter()
    pending: list[tuple[MocapSource, Path, str, np.ndarray, np.ndarray, dict]] = []
    jobs = [(src, path, clip_split(i, test_every))
            for src in sources for i, path in enumerate(source_files(src, root))]
    for src, path, split in tqdm(jobs, desc="mocap read", unit="clip"):
        rel = os.path.relpath(path, root)
        try:
            if path.suffix.lower() == ".npz":
                run.clips.append(_npz_clip(path, rel, src, split, body, fps, max_frames))
                continue
            targets, mask, info = read_clip_targets(path, fps, max_frames)
            usable_keypoints(body, mask)
        except SKIPPABLE as e:
            run.skipped[type(e).__name__] += 1
            run.skipped_files.append({"file": rel, "reason": str(e)})
            log.warning("skipped %s: %s", rel, e)
            continue
        pending.append((src, path, split, targets, mask, info))
    if pending:
        frames = sum(len(p[3]) for p in pending)
        log.info("fitting %s to %d clips (%d frames) in one batch", body.name, len(pending),
                 frames)
        results = fit_clips(body, [p[3] for p in pending], [p[4] for p in pending], fit)
        for (src, path, split, _, _, info), res in zip(pending, results, strict=True):
            run.clips.append(MocapClipPoses(
                name=path.stem, source=src.name, licence=src.licence,
                skeleton=str(info["skeleton"]), path=os.path.relpath(path, root),
                fps=float(info["fps"]), sample_fps=float(info["sample_fps"]),
                frames=np.asarray(info["frames"]), rotmats=res.rotmats, shape=res.shape,
                translation=res.translation, fit_error_mm=res.errors_mm, split=split,
            ))  # fmt: skip
    run.seconds = time.perf_counter() - t0
    return run


def _npz_clip(path: Path, rel: str, src: MocapSource, split: str, body: BodyModel,
              fps: float, max_frames: int) -> MocapClipPoses:
    rot, betas, npz_fps = smpl_poses_from_npz(path, body.name, body.num_joints, body.num_shape)
    step = max(1, int(round((npz_fps or fps) / fps)))
    keep = np.arange(0, len(rot), step)[: max_frames or None]
    return MocapClipPoses(
        name=path.stem, source=src.name, licence=src.licence, skeleton="smpl", path=rel,
        fps=npz_fps or 0.0, sample_fps=(npz_fps or fps) / step, frames=keep,
        rotmats=rot[keep], shape=betas[keep[0]], translation=np.zeros((len(keep), 3)),
        fit_error_mm=np.full((len(keep), NUM_KEYPOINTS), np.nan, np.float32), split=split,
    )  # fmt: skip


def mocap_metrics(run: MocapRun, body_name: str) -> dict[str, Any]:
    """Fit errors overall, per skeleton and per superset keypoint, counts and timings."""
    fitted = [c for c in run.clips if np.isfinite(c.fit_error_mm).any()]

    def stats(values: np.ndarray) -> dict[str, float]:
        return {"mean_mm": round(float(values.mean()), 2),
                "p95_mm": round(float(np.percentile(values, 95)), 2)}

    def finite(clips: list[MocapClipPoses]) -> np.ndarray:
        if not clips:
            return np.zeros(0)
        e = np.concatenate([c.fit_error_mm.reshape(-1) for c in clips])
        return e[np.isfinite(e)]

    all_err = finite(fitted)
    per_skeleton = {name: {**stats(e), "values": int(e.size)}
                    for name in sorted({c.skeleton for c in fitted})
                    if (e := finite([c for c in fitted if c.skeleton == name])).size}
    per_joint = {}
    if fitted:
        stacked = np.concatenate([c.fit_error_mm for c in fitted])  # (frames, K)
        for k, name in enumerate(SUPERSET):
            col = stacked[:, k][np.isfinite(stacked[:, k])]
            if col.size:
                per_joint[name] = stats(col)
    n_frames = int(sum(len(c.frames) for c in run.clips))
    return {
        "fit_error_mean_mm": float(all_err.mean()) if all_err.size else None,
        "fit_error_p95_mm": float(np.percentile(all_err, 95)) if all_err.size else None,
        "fit_error_by_skeleton": per_skeleton,
        "fit_error_by_joint": per_joint,
        "clips_used": len(run.clips),
        "clips_test": sum(c.split == "test" for c in run.clips),
        "clips_skipped": int(sum(run.skipped.values())),
        "skipped_by_reason": dict(run.skipped),
        "skipped_files": run.skipped_files,
        "frames": n_frames,
        "seconds": round(run.seconds, 1),
        "frames_per_second": round(n_frames / run.seconds, 2) if run.seconds > 0 else None,
        "body_model": body_name,
    }
