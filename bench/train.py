"""Benchmark: images/s of a full training step with each loss group switched on in turn, beside
the backbone's bare forward+backward on the same batch, and each configuration's peak memory.

    python bench/train.py                      # default params: resnet18, 128 px, batch 8+2x2
    python bench/train.py --backbone resnet50 --res 224 --batch 32 --pairs 8

All configurations run in one process on the same generated batches, one step of each in turn
per round (machine load hits them alike), and the median step time is reported. "data" is the
time to read, crop, augment and collate the batch (num_workers=0), included in the full steps'
times (not in the bare backbone's). "peak +RSS" is the peak resident memory during the
configuration's step above the memory just before it (its transient working memory); the
process's overall peak RSS is printed at the end. "body model only" times the body model's
forward+backward for the batch's poses (part of every full step).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))

ALL_OFF = {"keypoints_2d": 0.0, "adversarial": 0.0, "texture": 0.0, "multiview_pose": 0.0,
           "shape_consistency": 0.0, "keypoints_3d": 0.0, "body_pose": 0.0, "body_shape": 0.0}
CONFIGS = {
    "keypoints_2d": {"keypoints_2d": 5.0},
    "+adversarial": {"keypoints_2d": 5.0, "adversarial": 0.1},
    "+texture": {"keypoints_2d": 5.0, "texture": 1.0},
    "+multiview/shape": {"keypoints_2d": 5.0, "multiview_pose": 1.0, "shape_consistency": 0.1},
    "+3d/body params": {"keypoints_2d": 5.0, "keypoints_3d": 1.0, "body_pose": 0.5,
                        "body_shape": 0.1},
    "all": {"keypoints_2d": 5.0, "adversarial": 0.1, "texture": 1.0, "multiview_pose": 1.0,
            "shape_consistency": 0.1, "keypoints_3d": 1.0, "body_pose": 0.5, "body_shape": 0.1},
}


def _data(root: Path, res: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from test_training import write_tiny_dataset

    write_tiny_dataset(root, frames=8, cameras=4, res=res)


class _PeakRss:
    """Peak resident memory of this process while a block runs (sampled every 2 ms)."""

    def __init__(self) -> None:
        self.peak = 0

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self._stop = threading.Event()
        self.peak = self.now()

        def run():
            while not self._stop.wait(0.002):
                self.peak = max(self.peak, self.now())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def run(args: argparse.Namespace, root: Path) -> list[dict]:
    """All configurations in one process, one step of each in turn per round (so a change in
    machine load hits them alike); the median step time per configuration."""
    import torch

    from texturepose.body import build_body_model
    from texturepose.training.config import TrainConfig
    from texturepose.training.data import build_data, load_mocap_poses
    from texturepose.training.factory import build_models, build_trainer

    body = build_body_model("anny")
    rot, shape = load_mocap_poses(root / "data/mocap/anny_poses.h5", body)
    setups = {}
    for name in ["bare backbone", "body model only", *CONFIGS]:
        loss = dict(ALL_OFF, **CONFIGS.get(name, {"keypoints_2d": 5.0}),
                    texture_res=args.texture_res)
        params = {"seed": 0, "model": {"backbone": args.backbone, "res": args.res},
                  "loss": loss,
                  "train": {"steps": 1000, "batch_size": args.batch, "num_workers": 0},
                  "data": {"mix": {"tiny": 1.0}, "pairs_per_batch": args.pairs}}
        cfg = TrainConfig.from_params(params)
        torch.manual_seed(0)
        models = build_models(cfg, body, rot, shape,
                              atlas_cache=root / f"atlas{args.texture_res}.npz")
        data = build_data(cfg, body, {"tiny": (root / "data/processed/tiny_train.h5",
                                               root / "data/pairs/tiny_train.parquet")})
        setups[name] = (build_trainer(cfg, body, models), data)
    times = {n: [] for n in setups}
    loads = {n: [] for n in setups}
    peaks = dict.fromkeys(setups, 0)
    n_images = args.batch + 2 * args.pairs
    for step in range(args.warmup + args.steps):
        for name, (trainer, data) in setups.items():
            before = _PeakRss.now()
            with _PeakRss() as mem:
                t0 = time.perf_counter()
                batch = torch.utils.data.default_collate(
                    [data.dataset[r] for r in data.sampler.batch(step)])
                t1 = time.perf_counter()
                if name == "bare backbone":
                    reg = trainer.regressor
                    reg.train()
                    reg.zero_grad(set_to_none=True)
                    images = (batch["image"] - reg.input_mean) / reg.input_std
                    reg.backbone.features(images).sum().backward()
                elif name == "body model only":  # its forward+backward for the batch's poses
                    n = len(batch["image"])
                    r = body.rest_rotmats(n).requires_grad_()
                    sh = body.mean_shape.expand(n, -1).clone().requires_grad_()
                    out = body(r, sh)
                    (out.keypoints.sum() + out.vertices.sum()).backward()
                else:
                    trainer.train_step(batch)
                t2 = time.perf_counter()
            if step >= args.warmup:
                loads[name].append(t1 - t0)
                # The bare backbone is timed without data loading; full steps include it.
                bare = name in ("bare backbone", "body model only")
                times[name].append(t2 - t1 if bare else t2 - t0)
                peaks[name] = max(peaks[name], mem.peak - before)
    rows = []
    for name in setups:
        step_s = statistics.median(times[name])
        rows.append({"name": name, "images_per_s": n_images / step_s, "step_s": step_s,
                     "data_s": statistics.median(loads[name]),
                     "peak_mb": peaks[name] / 2**20})
    return rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8, help="single images per step")
    ap.add_argument("--pairs", type=int, default=2, help="pairs per step (2 images each)")
    ap.add_argument("--texture-res", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _data(Path(tmp), args.res)
        rows, max_rss = run(args, Path(tmp))
    import torch

    print(f"\n{args.backbone} at {args.res} px, {args.batch} singles + {args.pairs} pairs "
          f"= {args.batch + 2 * args.pairs} images/step, texture map {args.texture_res}^2, "
          f"{torch.get_num_threads()} threads, {args.steps} timed steps")
    base = rows[0]["step_s"] if rows and rows[0]["name"] == "bare backbone" else None
    print(f"{'configuration':<20}{'images/s':>10}{'step s':>9}{'data s':>9}{'x bare':>8}"
          f"{'step +RSS MB':>14}")
    for r in rows:
        ratio = f"{r['step_s'] / base:.2f}" if base else "-"
        print(f"{r['name']:<20}{r['images_per_s']:>10.2f}{r['step_s']:>9.3f}{r['data_s']:>9.3f}"
              f"{ratio:>8}{r['peak_mb']:>14.0f}")
    print(f"process peak RSS (all {len(rows)} set-ups built at once): {max_rss:.0f} MB")


if __name__ == "__main__":
    main()
