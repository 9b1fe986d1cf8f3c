"""Benchmark: BVH frames parsed per second, and mocap frames fitted per second.

    python bench/mocap.py [--clip PATH] [--frames 32]

Prints, measured side by side in one run: parse + forward-kinematics rate over all genuine clips,
and the fit rate of one clip with the fast fixed-shape Anny keypoints vs the full model.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))
SHARED = REPO.parent / "shared" / "data" / "mocap"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clip", default=str(SHARED / "cmu/iclone_cc_rig/cmu_06_09.bvh"))
    ap.add_argument("--frames", type=int, default=32)
    args = ap.parse_args()

    import numpy as np

    from texturepose.body import build_body_model
    from texturepose.data.bvh import joint_positions, read_bvh
    from texturepose.data.mocap_fit import FitConfig, fit_bvh_clip

    files = sorted(glob.glob(str(SHARED / "**/*.bvh"), recursive=True))
    t = time.perf_counter()
    clips = [read_bvh(f) for f in files]
    t_parse = time.perf_counter() - t
    n = sum(c.num_frames for c in clips)
    t = time.perf_counter()
    for c in clips:
        joint_positions(c)
    t_fk = time.perf_counter() - t
    print(f"parse: {len(files)} files, {n} frames in {t_parse:.2f} s = {n / t_parse:,.0f} frames/s")
    print(f"forward kinematics: {n / t_fk:,.0f} frames/s")

    body = build_body_model("anny")
    rates = {}
    for fast, threads in ((True, 1), (True, 2), (False, 1)):
        cfg = FitConfig(fast_keypoints=fast, threads=threads)
        t = time.perf_counter()
        res, _ = fit_bvh_clip(args.clip, body, 10.0, args.frames, cfg)
        dt = time.perf_counter() - t
        rates[fast, threads] = len(res.rotmats) / dt
        e = res.summary()
        print(
            f"fit ({'fast keypoints' if fast else 'full model'}, {threads} thread(s)): "
            f"{len(res.rotmats)} frames in {dt:.1f} s = {rates[fast, threads]:.2f} frames/s; "
            f"error {e['mean_mm']:.1f} mm mean, {e['p95_mm']:.1f} mm p95 "
            f"(iters_shape={cfg.iters_shape}, iters={cfg.iters})"
        )
    print(
        f"fast/full (1 thread): {rates[True, 1] / rates[False, 1]:.2f}x; "
        f"1/2 threads (fast): {rates[True, 1] / rates[True, 2]:.2f}x"
    )
    print(f"load average {np.round(os.getloadavg(), 1).tolist()}")


if __name__ == "__main__":
    main()
