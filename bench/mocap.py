"""Benchmark: BVH parsing, and mocap fitting: Levenberg-Marquardt vs batched L-BFGS vs clip by clip.

    python bench/mocap.py [--clips 12] [--frames 32] [--repeats 2] [--full-model]

Prints, measured side by side in one run on the same clips (the embedded CMU clips, evenly
chosen): the parse + forward-kinematics rate, then frames/s and fit error (mean and p95 mm) of

* ``clip``: clip by clip, chunks of 32 frames in time order, each from the previous chunk's last
  pose, 60 + 150 L-BFGS evaluations, with the body's skinning-free keypoint path;
* ``clip, full model`` (with ``--full-model``): the same with the whole mesh skinned per
  evaluation (slow);
* ``batched``: every frame of every clip in one L-BFGS optimisation, 100 + 500 evaluations (the
  default before ``lm``);
* ``lm``: params.yaml's ``mocap.fit`` (the default: L-BFGS shape phase, then per-frame
  Levenberg-Marquardt with the analytic keypoint Jacobian).

The machine is shared, so the methods run in turn ``--repeats`` times and each one's fastest
run is reported (errors are deterministic).
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
    ap.add_argument("--repeats", type=int, default=2, help="runs per method; the fastest counts")
    ap.add_argument("--full-model", action="store_true",
                    help="also the clip method through the full skinned model (slow)")
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
    methods = {"clip": FitConfig(method="clip", iters_shape=60, iters=150, threads=threads)}
    if args.full_model:
        methods["clip, full model"] = FitConfig(method="clip", iters_shape=60, iters=150,
                                                fast_keypoints=False, threads=threads)
    old = {k: v for k, v in fit.items() if k not in ("tol", "lm_damping")}
    methods["batched"] = FitConfig(**{**old, "method": "batched", "iters_shape": 100,
                                      "iters": 500})
    new = fit.get("method", "lm")
    new = new if new == "lm" else f"params.yaml ({new})"
    methods[new] = FitConfig(**fit)
    fit_clips(body, targets[:1], masks[:1], FitConfig(method="lm", iters_shape=2, iters=2))
    seconds: dict[str, float] = {}
    errors: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):  # in turn, so that a busy spell hits every method
        for name, cfg in methods.items():
            t = time.perf_counter()
            results = fit_clips(body, targets, masks, cfg)
            seconds[name] = min(seconds.get(name, np.inf), time.perf_counter() - t)
            errors[name] = np.concatenate([r.errors_mm[:, r.mask].ravel() for r in results])
    print(f"{frames} frames of {len(files)} clips, {threads} thread(s), best of {args.repeats}")
    print(f"{'method':<20}{'frames/s':>10}{'seconds':>9}{'mean mm':>9}{'p95 mm':>8}")
    rates = {}
    for name in methods:
        e, dt = errors[name], seconds[name]
        rates[name] = frames / dt
        print(f"{name:<20}{rates[name]:>10.1f}{dt:>9.1f}{e.mean():>9.1f}"
              f"{np.percentile(e, 95):>8.1f}")
    print(f"{new} / batched: {rates[new] / rates['batched']:.1f}x; {new} / clip: "
          f"{rates[new] / rates['clip']:.1f}x; load average "
          f"{np.round(os.getloadavg(), 1).tolist()}")

if __name__ == "__main__":
    main()
