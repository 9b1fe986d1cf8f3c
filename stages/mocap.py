"""DVC stage `mocap`: BVH clips (and AMASS/MoSh npz) -> body-model poses for the pose prior.

Reads params ``mocap`` (sources with globs and licence notes, sampling, fit settings) and ``body``;
writes ``mocap.out`` (HDF5, see texturepose/data/mocap_io.py) and ``reports/mocap_metrics.json``.
A clip that cannot be read or mapped is skipped and counted with its reason, not fatal.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import (  # noqa: E402
    REPO,
    load_params,
    seed_everything,
    setup_logging,
    write_json,
)

log = logging.getLogger("stages.mocap")


def _files(pattern: str) -> list[Path]:
    pat = pattern if os.path.isabs(pattern) else str(REPO / pattern)
    return sorted(Path(p) for p in glob.glob(pat, recursive=True))


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=str(REPO / "params.yaml"), help="params file")
    args = ap.parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    seed_everything(int(params.get("seed", 0)))
    import torch

    from texturepose.body import build_body_model
    from texturepose.data.bvh import BvhError
    from texturepose.data.mocap_fit import FitConfig, fit_bvh_clip
    from texturepose.data.mocap_io import MocapClipPoses, smpl_poses_from_npz, write_mocap_h5
    from texturepose.data.mocap_skeletons import UnknownSkeletonError
    from texturepose.data.readers.common import ReaderError

    cfg = params["mocap"]
    body_cfg = params["body"]
    torch.set_num_threads(int(cfg.get("threads", 0)) or torch.get_num_threads())
    body = build_body_model(
        body_cfg["model"],
        **{
            k: body_cfg.get(k) for k in ("model_path", "gender", "h36m_regressor_path", "num_betas")
        },
    )
    fit_cfg = FitConfig(**cfg.get("fit", {}))
    fps, max_frames = float(cfg["fps"]), int(cfg["max_frames_per_clip"])
    if fps <= 0:
        raise ValueError(f"params.yaml mocap.fps must be > 0, got {fps}")
    out = REPO / cfg["out"].format(body_model=body.name)
    clips: list[MocapClipPoses] = []
    skipped: Counter[str] = Counter()
    skipped_files: list[dict[str, str]] = []
    errors: list[np.ndarray] = []
    t0 = time.time()

    jobs: list[tuple[dict, Path]] = []
    for src in cfg["sources"]:
        files = _files(src["glob"])
        if not files:
            log.warning("mocap source %s: no files match %s", src["name"], src["glob"])
        limit = int(src.get("max_clips", cfg.get("max_clips_per_source", 0)) or 0)
        if limit and len(files) > limit:  # evenly over the sorted list: varied actions
            files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
        jobs += [(src, f) for f in files]

    for src, path in tqdm(jobs, desc="mocap fit", unit="clip"):
        rel = os.path.relpath(path, REPO)
        try:
            if path.suffix.lower() == ".npz":
                rot, betas, npz_fps = smpl_poses_from_npz(
                    path, body.name, body.num_joints, body.num_shape
                )
                step = max(1, int(round((npz_fps or fps) / fps)))
                keep = np.arange(0, len(rot), step)[: max_frames or None]
                clips.append(MocapClipPoses(
                    name=path.stem, source=src["name"], licence=src["licence"], skeleton="smpl",
                    path=rel, fps=npz_fps or 0.0, sample_fps=(npz_fps or fps) / step, frames=keep,
                    rotmats=rot[keep], shape=betas[keep[0]], translation=np.zeros((len(keep), 3)),
                    fit_error_mm=np.full((len(keep), 30), np.nan, np.float32),
                ))  # fmt: skip
                continue
            result, info = fit_bvh_clip(path, body, fps, max_frames, fit_cfg)
        except (BvhError, UnknownSkeletonError, ReaderError, NotImplementedError, ValueError) as e:
            reason = type(e).__name__
            skipped[reason] += 1
            skipped_files.append({"file": rel, "reason": str(e)})
            log.warning("skipped %s: %s", rel, e)
            continue
        e = result.errors_mm[:, result.mask]
        errors.append(e.reshape(-1))
        clips.append(MocapClipPoses(
            name=path.stem, source=src["name"], licence=src["licence"],
            skeleton=str(info["skeleton"]), path=rel, fps=float(info["fps"]),
            sample_fps=float(info["sample_fps"]), frames=np.asarray(info["frames"]),
            rotmats=result.rotmats, shape=result.shape, translation=result.translation,
            fit_error_mm=result.errors_mm,
        ))  # fmt: skip
        log.debug("%s: %d frames, %.1f mm mean", rel, len(result.rotmats), float(e.mean()))

    elapsed = time.time() - t0
    write_mocap_h5(
        out,
        clips,
        body_model=body.name,
        joint_names=body.joint_names,
        attrs={"fit_config": vars(fit_cfg), "target_fps": fps},
    )
    n_frames = int(sum(len(c.frames) for c in clips))
    all_err = np.concatenate(errors) if errors else np.zeros(0)
    per_skeleton = {}
    for name in sorted({c.skeleton for c in clips}):
        e = [c.fit_error_mm[np.isfinite(c.fit_error_mm)] for c in clips if c.skeleton == name]
        e = np.concatenate(e) if e else np.zeros(0)
        if e.size:
            per_skeleton[name] = {
                "mean_mm": float(e.mean()),
                "p95_mm": float(np.percentile(e, 95)),
                "values": int(e.size),
            }
    # Per superset keypoint that the mocap observes (NaN where a rig has no such joint).
    per_joint = {}
    if clips:
        from texturepose.data.keypoints import SUPERSET

        stacked = np.concatenate([c.fit_error_mm for c in clips])  # (frames, K)
        for k, name in enumerate(SUPERSET):
            col = stacked[:, k][np.isfinite(stacked[:, k])]
            if col.size:
                per_joint[name] = {"mean_mm": round(float(col.mean()), 2),
                                   "p95_mm": round(float(np.percentile(col, 95)), 2)}
    metrics = {
        "fit_error_mean_mm": float(all_err.mean()) if all_err.size else None,
        "fit_error_p95_mm": float(np.percentile(all_err, 95)) if all_err.size else None,
        "fit_error_by_skeleton": per_skeleton,
        "fit_error_by_joint": per_joint,
        "clips_used": len(clips),
        "clips_skipped": int(sum(skipped.values())),
        "skipped_by_reason": dict(skipped),
        "skipped_files": skipped_files,
        "frames": n_frames,
        "seconds": round(elapsed, 1),
        "frames_per_second": round(n_frames / elapsed, 2) if elapsed > 0 else None,
        "body_model": body.name,
    }
    write_json(REPO / cfg.get("metrics", "reports/mocap_metrics.json"), metrics, sort_keys=False)
    log.info(
        "mocap: %d clips, %d frames in %.0f s; fit error %.1f mm mean, %.1f mm p95; skipped %d %s",
        len(clips), n_frames, elapsed, metrics["fit_error_mean_mm"] or float("nan"),
        metrics["fit_error_p95_mm"] or float("nan"), metrics["clips_skipped"], dict(skipped),
    )  # fmt: skip


if __name__ == "__main__":
    main()
