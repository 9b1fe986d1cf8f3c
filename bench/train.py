"""Benchmark: the training step's levers side by side, as ratios to the bare backbone.

    python bench/train.py                      # params.yaml's model and loss at its resolution
    python bench/train.py --res 128 --batch 16 --pairs 2

Every configuration is built in one process on the same generated batches, and one step of each
runs in turn per round (machine load hits them alike); the median step time is reported, as
images/s and as a ratio to the bare backbone's forward+backward on the same images ("x bare").
The configurations:

* ``bare backbone``: the backbone alone (channels-last), no data loading, no heads, no losses;
* ``default``: params.yaml's full step (data loading included, num_workers=0): since
  2026-12-04 the keypoint head read by the mocap lifter without IEF (the lifter unfitted: its
  fit is a one-off before training, not part of a step), whose body terms are skipped;
* one lever changed each: NCHW instead of channels-last; CPU bfloat16 autocast of the backbone;
  the full body model instead of its skinning-free keypoint path; stride-8 heatmaps; no heatmap
  cross-entropy; the first three backbone stages frozen;
* the paper's model, the IEF from the mean pose with every term (``model.start: mean,
  iterations: 3``), and on it: HMR's pooled head instead of the keypoint head; no IEF
  feedback; the 2D losses only (no pair terms, no prior); the IEF from the lifted start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))

PAIR_TERMS = ("adversarial", "texture", "multiview_pose", "shape_consistency")
IEF = {"model.start": "mean", "model.iterations": 3}
LEVERS: dict[str, dict] = {
    "default": {},
    "NCHW (no channels-last)": {"train.channels_last": False},
    "CPU bfloat16 autocast": {"amp": "bf16"},
    "full body model for keypoints": {"full_body": True},
    "stride-8 heatmaps": {"model.head_stride": 8},
    "no heatmap cross-entropy": {"loss.keypoint_heatmap": 0.0},
    "3 backbone stages frozen": {"model.frozen_stages": 3},
    "IEF (paper's model)": IEF,
    "IEF, pooled head (HMR/SPIN)": {**IEF, "model.head": "pooled", "model.feedback": False},
    "IEF, no feedback": {**IEF, "model.feedback": False},
    "IEF, 2D losses only": {**IEF, **{f"loss.{t}": 0.0 for t in PAIR_TERMS}},
    "IEF from the lifted start": {"model.start": "lifted", "model.iterations": 3},
}


def _params(base: dict, args: argparse.Namespace, changes: dict) -> dict:
    import copy

    p = copy.deepcopy(base)
    p["model"]["res"] = args.res
    p["train"].update(batch_size=args.batch, num_workers=0, steps=1000)
    p["data"].update(mix={"tiny": 1.0}, pairs_per_batch=args.pairs)
    p["loss"]["texture_start"] = 0
    p["model"]["lift_steps"] = 0  # a lifted start's fit is a one-off, not part of a step
    for key, value in changes.items():
        if "." in key:
            section, name = key.split(".")
            p[section][name] = value
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, default=None, help="default: params.yaml model.res")
    ap.add_argument("--batch", type=int, default=None, help="default: params.yaml")
    ap.add_argument("--pairs", type=int, default=None, help="default: params.yaml")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    import torch
    import yaml

    from texturepose.body import build_body_model
    from texturepose.training.config import TrainConfig
    from texturepose.training.data import build_data, load_mocap_poses
    from texturepose.training.factory import build_models, build_trainer

    base = yaml.safe_load((REPO / "params.yaml").read_text())
    args.res = args.res or base["model"]["res"]
    args.batch = args.batch or base["train"]["batch_size"]
    args.pairs = base["data"]["pairs_per_batch"] if args.pairs is None else args.pairs
    n_images = args.batch + 2 * args.pairs
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sys.path.insert(0, str(REPO / "tests"))
        from test_training import write_tiny_dataset

        write_tiny_dataset(root, frames=8, cameras=4, res=args.res)
        body = build_body_model("anny")
        rot = load_mocap_poses(root / "data/mocap/anny_poses.h5", body)
        setups = {}
        for name, changes in LEVERS.items():
            cfg = TrainConfig.from_params(_params(base, args, changes))
            torch.manual_seed(0)
            models = build_models(cfg, body, rot, atlas_cache=root / "atlas.npz")
            data = build_data(cfg, body, {"tiny": (root / "data/processed/tiny_train.h5",
                                                   root / "data/pairs/tiny_train.parquet")})
            trainer = build_trainer(cfg, body, models)
            if changes.get("amp") == "bf16":
                trainer.enable_amp(torch.bfloat16)
            setups[name] = (trainer, data, changes)
        times: dict[str, list[float]] = {"bare backbone": [], **{n: [] for n in setups}}
        for step in range(args.warmup + args.steps):
            trainer, data, _ = setups["default"]
            batch = torch.utils.data.default_collate(
                [data.dataset[r] for r in data.sampler.batch(step)])
            reg = trainer.regressor
            reg.train()
            t0 = time.perf_counter()
            reg.zero_grad(set_to_none=True)
            images = ((batch["image"] - reg.input_mean) / reg.input_std).contiguous(
                memory_format=torch.channels_last)
            reg.backbone.features(images).sum().backward()
            if step >= args.warmup:
                times["bare backbone"].append(time.perf_counter() - t0)
            for name, (trainer, data, changes) in setups.items():
                saved = body.fast_keypoints
                if changes.get("full_body"):
                    body.fast_keypoints = False  # AnnyBody.keypoints uses the full mesh
                t0 = time.perf_counter()
                batch = torch.utils.data.default_collate(
                    [data.dataset[r] for r in data.sampler.batch(step)])
                trainer.train_step(batch)
                dt = time.perf_counter() - t0
                body.fast_keypoints = saved
                if step >= args.warmup:
                    times[name].append(dt)
    bare = statistics.median(times["bare backbone"])
    print(f"\n{base['model']['backbone']} at {args.res} px, {args.batch} singles + {args.pairs} "
          f"pairs = {n_images} images/step, {torch.get_num_threads()} threads, {args.steps} "
          f"timed rounds")
    print(f"{'configuration':<32}{'images/s':>10}{'step s':>9}{'x bare':>8}")
    for name, ts in times.items():
        s = statistics.median(ts)
        print(f"{name:<32}{n_images / s:>10.1f}{s:>9.3f}{s / bare:>8.2f}")


if __name__ == "__main__":
    main()
