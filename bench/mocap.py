"""Benchmark: BVH parsing, and mocap fitting with the batched method against clip by clip.

    python bench/mocap.py [--clips 12] [--frames 32]

Prints, measured side by side in one run on the same clips (the embedded CMU clips, evenly
chosen): the parse + forward-kinematics rate, then frames/s and fit error of

* ``clip``: clip by clip, chunks of 32 frames in time order, each from the previous chunk's last
  pose, 60 + 150 L-BFGS evaluations (the method the mocap stage used before), with the body's
  skinning-free keypoint path;
* ``clip, full model``: the same with the whole mesh skinned per evaluation;
* ``batched``: every frame of every clip in one optimisation, with params.yaml's iterations.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--glob", default=str(REPO / "assets/mocap/cmu/*.bvh.gz"))
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--frames", type=int, default=32)
    args = ap.parse_args()

    import glob

    import numpy as np
    import yaml

    from texturepose.body import build_body_model
    from texturepose.mocap.bvh import joint_positions, read_bvh
    from texturepose.mocap.fit import FitConfig, fit_clips, read_clip_targets

    files = sorted(glob.glob(args.glob))
    files = [files[i] for i in np.linspace(0, len(files) - 1, args.clips).round().astype(int)]
    t = time.perf_counter()
    clips = [read_bvh(f) for f in files]
    t_parse = time.perf_counter() - t
    n = sum(c.num_frames for c in clips)
    t = time.perf_counter()
    for c in clips:
        joint_positions(c)
    t_fk = time.perf_counter() - t
    print(f"parse: {len(files)} files, {n} frames in {t_parse:.2f} s = {n / t_parse:,.0f} "
          f"frames/s; forward kinematics {n / t_fk:,.0f} frames/s")

    body = build_body_model("anny")
    targets, masks = [], []
    for f in files:
        tg, m, _ = read_clip_targets(f, 10.0, args.frames)
        targets.append(tg)
        masks.append(m)
    frames = sum(len(t) for t in targets)
    fit = yaml.safe_load((REPO / "params.yaml").read_text())["mocap"]["fit"]
    threads = int(fit.get("threads", 1))
    methods = {
        "clip": FitConfig(method="clip", iters_shape=60, iters=150, threads=threads),
        "clip, full model": FitConfig(method="clip", iters_shape=60, iters=150,
                                      fast_keypoints=False, threads=threads),
        "batched": FitConfig(**fit),
    }
    rates = {}
    print(f"{frames} frames of {len(files)} clips, {threads} thread(s)")
    print(f"{'method':<20}{'frames/s':>10}{'seconds':>9}{'mean mm':>9}{'p95 mm':>8}")
    for name, cfg in methods.items():
        t = time.perf_counter()
        results = fit_clips(body, targets, masks, cfg)
        dt = time.perf_counter() - t
        e = np.concatenate([r.errors_mm[:, r.mask].ravel() for r in results])
        rates[name] = frames / dt
        print(f"{name:<20}{rates[name]:>10.1f}{dt:>9.1f}{e.mean():>9.1f}"
              f"{np.percentile(e, 95):>8.1f}")
    print(f"batched / clip: {rates['batched'] / rates['clip']:.1f}x; batched / clip with the "
          f"full model: {rates['batched'] / rates['clip, full model']:.1f}x; "
          f"load average {np.round(os.getloadavg(), 1).tolist()}")


if __name__ == "__main__":
    main()
