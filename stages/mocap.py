"""DVC stage `mocap`: BVH clips (and AMASS/MoSh npz) -> body-model poses for the pose prior.

Reads params ``mocap`` (sources with globs and licence notes, sampling, the held-out clips, fit
settings) and ``body``; writes ``mocap.out`` (HDF5, see texturepose/mocap/poses.py) and
``mocap.metrics``. A clip that cannot be read or mapped is skipped and counted with its reason.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import (  # noqa: E402
    REPO,
    input_errors,
    load_params,
    setup_logging,
)
from texturepose.files import write_json  # noqa: E402
from texturepose.rng import seed_everything  # noqa: E402

log = logging.getLogger("stages.mocap")


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default=str(REPO / "params.yaml"), help="params file")
    args = ap.parse_args(argv)
    setup_logging()
    params = load_params(args.params)
    seed_everything(int(params.get("seed", 0)))
    import torch

    from texturepose.body import body_from_section
    from texturepose.mocap.fit import FitConfig
    from texturepose.mocap.pipeline import MocapSource, mocap_metrics, run_mocap
    from texturepose.mocap.poses import write_mocap_h5

    cfg = params["mocap"]
    torch.set_num_threads(int(cfg.get("threads", 0)) or torch.get_num_threads())
    body = body_from_section(params.get("body"), REPO)
    limit = int(cfg.get("max_clips_per_source", 0) or 0)
    sources = [MocapSource(s["name"], s["glob"], s["licence"], int(s.get("max_clips", limit)))
               for s in cfg["sources"]]
    fit_cfg = FitConfig(**cfg.get("fit", {}))
    run = run_mocap(sources, body, REPO, float(cfg["fps"]), int(cfg["max_frames_per_clip"]),
                    fit_cfg, int(cfg.get("test_every", 0) or 0))
    if not run.clips:
        globs = ", ".join(f"mocap.sources[{i}].glob = {s['glob']!r}"
                          for i, s in enumerate(cfg["sources"]))
        raise SystemExit(f"mocap: no clip could be read ({globs}; skipped {dict(run.skipped)}): "
                         f"point the globs at BVH/npz files; {cfg['out']} was left as it was")
    metrics = mocap_metrics(run, body.name)
    with input_errors("mocap"):
        write_mocap_h5(REPO / cfg["out"], run.clips,
                       body_model=body.name, joint_names=body.joint_names,
                       attrs={"fit_config": vars(fit_cfg), "target_fps": float(cfg["fps"])})
        write_json(REPO / cfg.get("metrics", "reports/mocap_metrics.json"), metrics,
                   sort_keys=False)
    log.info("mocap: %d clips (%d held out), %d frames in %.0f s; fit error %.1f mm mean, "
             "%.1f mm p95; skipped %d %s", metrics["clips_used"], metrics["clips_test"],
             metrics["frames"], run.seconds, metrics["fit_error_mean_mm"] or float("nan"),
             metrics["fit_error_p95_mm"] or float("nan"), metrics["clips_skipped"],
             dict(run.skipped))


if __name__ == "__main__":
    main()
