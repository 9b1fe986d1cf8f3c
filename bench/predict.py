"""Benchmark: `texturepose predict` on genuine photos, per crop and per step.

    python bench/predict.py                                   # checkpoints/final.pt, LSP photos
    python bench/predict.py --checkpoint ../fresh2/checkpoints/final.pt --threads 2

Prints, for the trained regressor of ``--checkpoint``:

* the network's latency per crop at batch 1 and batched (``--batches``, default 1 8 32) and
  images/s, on crops of the photos (median over rounds, after a warm-up);
* one person end to end at batch 1 (crop + network + mesh: ``PhotoPredictor.predict``), against
  the aim of at most 60 ms per person;
* the same with ``--refine-steps`` (default 100) test-time fitting of the mesh to the keypoint
  head's output, at batch 1 and for ``max(--batches)`` people in one call, as a ratio to the
  plain call measured beside it;
* the share of each step of `texturepose predict` per photo: image read, person box (``--bbox``
  from the photo's LSP annotation, as a detector would give; the whole-image fallback is timed
  too), crop, network, mesh, export (overlay picture, then .obj/.ply/.json), summed over the
  photos of ``--images``, beside the end-to-end ``predict_paths`` on the same photos.

The photos are read where they are (default: LSP's training images in ../shared/data/lsp; its
``joints.mat`` beside ``images/`` gives the boxes); outputs go to a temporary folder. Timings
on a shared machine are noisy: compare numbers from one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))

AIM_MS = 60.0  # per person at batch 1 (issue "Real photos in, meshes out")


class Timed:
    """Wraps a callable and adds the wall time of every call to ``total``."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn, self.total = fn, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.total += time.perf_counter() - t0


def median_time(fn: Callable[[], Any], rounds: int, warmup: int = 2) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds of this process (all its threads) of
    ``fn()`` over ``rounds`` calls after ``warmup`` calls. On a shared machine the wall time
    grows with the load; the CPU time much less."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def load() -> str:
    """The 1-minute load average beside the CPU count (how shared the machine is)."""
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def lsp_boxes(images: list[Path]) -> dict[Path, str]:
    """``--bbox`` strings from LSP's ``joints.mat`` beside ``images/`` (empty when absent)."""
    import numpy as np

    from texturepose.datasets.lsp import load_lsp_joints

    root = images[0].parent.parent if images else Path()
    if not (root / "joints.mat").is_file():
        return {}
    joints = load_lsp_joints(root)
    out = {}
    for p in images:
        i = int(p.stem[2:]) - 1  # im0001.jpg -> 0
        xy = joints[i, :, :2]
        lo, hi = xy.min(0), xy.max(0)
        out[p] = ",".join(f"{v:.1f}" for v in np.concatenate([lo, hi]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "final.pt"))
    ap.add_argument("--images", default=str(REPO.parent / "shared" / "data" / "lsp" / "images"),
                    help="folder of photos (default: LSP's training images)")
    ap.add_argument("--photos", type=int, default=9, help="photos for the step shares")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--rounds", type=int, default=10, help="timed calls per measurement")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the 2 cores)")
    ap.add_argument("--refine-steps", type=int, default=100,
                    help="steps of the refined timings (0: skip them)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    import trimesh

    from texturepose.inference import export, photo
    from texturepose.inference.batch import (
        PeopleSpec,
        PredictSummary,
        _write_person_files,
        predict_paths,
    )
    from texturepose.inference.inputs import InputError, read_image
    from texturepose.inference.photo import PhotoPredictor

    torch.set_num_threads(args.threads)
    folder = Path(args.images)
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder of photos (pass --images DIR)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    files = files[: max(args.photos, 1)]
    if not files:
        raise SystemExit(f"{folder}: no .jpg/.png photos")
    try:
        predictor = PhotoPredictor(args.checkpoint)
    except InputError as e:
        raise SystemExit(str(e)) from None
    res, body = predictor.res, predictor.body
    cfg = getattr(predictor.regressor, "config", None)
    print(f"checkpoint {args.checkpoint}: backbone {getattr(cfg, 'backbone', '?')}, head "
          f"{getattr(cfg, 'head', '?')}, input {res} px, body {body.name} "
          f"({body.faces.shape[0]} faces)")
    print(f"photos: {len(files)} from {folder} ({files[0].name} ...), torch threads "
          f"{torch.get_num_threads()}; {load()} at start (shared machine: timings are noisy)")

    # 1. The network per crop, batch 1 and batched, on crops of the photos (whole image).
    boxes = lsp_boxes(files)
    imgs = [read_image(p) for p in files]
    people = [PeopleSpec(bbox=boxes.get(p)).find((im.shape[1], im.shape[0]))
              for p, im in zip(files, imgs, strict=True)]
    crops = np.stack([photo.crop_image(im, ps[0].center, ps[0].size, res)
                      for im, ps in zip(imgs, people, strict=True)])
    net = predictor.regressor
    print(f"\nnetwork per crop (regressor forward with the keypoint path, {res} px, median of "
          f"{args.rounds}):")
    per_crop_b1 = None
    for b in args.batches:
        idx = np.arange(b) % len(crops)
        x = torch.from_numpy(crops[idx]).permute(0, 3, 1, 2).float().div(255.0)
        x = x.contiguous(memory_format=torch.channels_last)

        def forward(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                net(x, keypoints_fn=body.keypoints)

        t, c = median_time(forward, args.rounds if b <= 8 else max(3, args.rounds // 3))
        if b == 1:
            per_crop_b1 = t * 1e3
        print(f"  batch {b:3d}: {t * 1e3 / b:7.1f} ms per crop (CPU {c * 1e3 / b:6.1f} ms), "
              f"{b / t:6.1f} images/s ({t * 1e3:.0f} ms per batch)")

    # 2. One person end to end at batch 1 (crop + network + mesh), against the aim.
    image, person = imgs[0], people[0]
    t_person, c_person = median_time(lambda: predictor.predict(image, person), args.rounds)
    ok = "meets" if t_person * 1e3 <= AIM_MS else "misses"
    print(f"\none person at batch 1 (PhotoPredictor.predict: crop + network + mesh): "
          f"{t_person * 1e3:.1f} ms wall (CPU {c_person * 1e3:.1f} ms; network alone "
          f"{per_crop_b1 or float('nan'):.1f} ms wall); aim <= {AIM_MS:.0f} ms per person: "
          f"{ok} it (wall)")

    # 2b. The same with test-time refinement (--refine-steps), beside the plain call.
    if args.refine_steps and getattr(predictor.regressor, "keypoint_head", None) is not None:
        refined = PhotoPredictor(args.checkpoint, refine_steps=args.refine_steps)
        many = max(args.batches)
        crowd = [person[0]] * many
        rounds = max(3, args.rounds // 3)
        print(f"\nwith --refine-steps {args.refine_steps} (median of {rounds}):")
        for label, who in (("1 person", person), (f"{many} people", crowd)):
            t_plain, _ = median_time(lambda who=who: predictor.predict(image, who), rounds)
            t_ref, c_ref = median_time(lambda who=who: refined.predict(image, who), rounds)
            print(f"  {label:>10s} in one call: {t_ref * 1e3 / len(who):7.1f} ms per person "
                  f"(CPU {c_ref * 1e3 / len(who):.1f} ms), {t_ref / t_plain:5.1f}x the plain "
                  f"call ({t_plain * 1e3 / len(who):.1f} ms per person)")

    # 3. Steps of `texturepose predict` per photo, the same calls predict_paths makes.
    steps = {k: 0.0 for k in ("image read", "person box (--bbox)", "crop", "network", "mesh",
                              "export: overlay png", "export: obj/ply/json")}
    crop_t = Timed(photo.crop_image)
    net_t = Timed(predictor.regressor)
    photo.crop_image, predictor.regressor = crop_t, net_t  # timed: same calls, same results
    whole = 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            for k, f in enumerate(files):
                t0 = time.perf_counter()
                image = read_image(f)
                t1 = time.perf_counter()
                spec = PeopleSpec(bbox=boxes.get(f))
                found = spec.find((image.shape[1], image.shape[0]))
                t2 = time.perf_counter()
                whole_t0 = time.perf_counter()
                PeopleSpec().find((image.shape[1], image.shape[0]))
                whole += time.perf_counter() - whole_t0
                c0, n0 = crop_t.total, net_t.total
                t3 = time.perf_counter()
                meshes = predictor.predict(image, found)
                t4 = time.perf_counter()
                picture = export.front_and_side(image, meshes, predictor.faces)
                export.write_png(out / f"{f.stem}_overlay.png", picture)
                t5 = time.perf_counter()
                _write_person_files(out / f.stem, meshes, predictor.faces, body.name,
                                    PredictSummary())
                t6 = time.perf_counter()
                if k == 0:
                    continue  # the first photo warms every path up; not counted
                dc, dn = crop_t.total - c0, net_t.total - n0
                steps["image read"] += t1 - t0
                steps["person box (--bbox)"] += t2 - t1
                steps["crop"] += dc
                steps["network"] += dn
                steps["mesh"] += (t4 - t3) - dc - dn
                steps["export: overlay png"] += t5 - t4
                steps["export: obj/ply/json"] += t6 - t5
            counted = len(files) - 1
            e2e = {}
            for bs in (1, 16):  # one photo per network call, then the photos batched
                t0 = time.perf_counter()
                predict_paths(files, out / f"e2e{bs}", args.checkpoint, PeopleSpec(),
                              progress=False, batch_size=bs)
                e2e[bs] = time.perf_counter() - t0
            # the OBJ writer against trimesh's exporter it replaced, same mesh
            v, fc = meshes[0].vertices, predictor.faces
            t_ours, _ = median_time(lambda: export.obj_bytes(v, fc), 5, warmup=1)
            t_trimesh, _ = median_time(lambda: trimesh.Trimesh(
                v.astype(np.float64), fc, process=False).export(file_type="obj"), 5, warmup=1)
    finally:
        photo.crop_image, predictor.regressor = crop_t.fn, net_t.fn
    total = sum(steps.values())
    if counted < 1:
        print("\nsteps: need at least 2 photos (--photos)")
        return 0
    box = "LSP annotation box" if boxes else "whole-image fallback (no joints.mat)"
    print(f"\n`texturepose predict` steps per photo ({counted} photos after one warm-up, one "
          f"person each, {box}):")
    for name, t in steps.items():
        print(f"  {name:22s} {t * 1e3 / counted:8.2f} ms  {100 * t / total:5.1f} %")
    print(f"  {'total':22s} {total * 1e3 / counted:8.2f} ms  ({counted / total:.1f} photos/s)")
    print(f"  whole-image fallback box: {whole * 1e3 / len(files):.3f} ms per photo")
    for bs, t in e2e.items():
        print(f"  predict_paths end to end on {len(files)} photos, --batch-size {bs:2d} "
              f"(whole-image fallback, model loading included): {t:.2f} s, "
              f"{t * 1e3 / len(files):.0f} ms per photo")
    print(f"  batched / one at a time: {e2e[1] / e2e[16]:.2f}x faster")
    print(f"  OBJ of one mesh: export.obj_bytes {t_ours * 1e3:.1f} ms, trimesh's exporter "
          f"{t_trimesh * 1e3:.1f} ms ({t_trimesh / t_ours:.1f}x)")
    print(f"{load()} at the end")
    return 0



if __name__ == "__main__":
    sys.exit(main())
