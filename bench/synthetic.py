"""Benchmark: synthetic images per second (render + encode), at 224 px and the default 128 px,
with and without 2x supersampling, measured side by side in one run.

    python bench/synthetic.py [--images 64] [--threads 2]

The rate counts everything per image the generator does: body forward (shared by the cameras of
one instant), rasterisation, shading, texture lookup, compositing, keypoint visibility, JPEG and
PNG encoding. CPU seconds per image are printed as well: on a shared machine the wall-clock rate
depends on the other processes, the CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("ANNY_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "data" /
                                            "cache" / "anny"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from texturepose.body import build_body_model  # noqa: E402
from texturepose.data.codecs import encode_jpeg, encode_png  # noqa: E402
from texturepose.synthetic.backgrounds import make_background  # noqa: E402
from texturepose.synthetic.render import CropRenderer  # noqa: E402
from texturepose.synthetic.rig import RigConfig, make_rig  # noqa: E402
from texturepose.synthetic.subjects import sample_subjects  # noqa: E402
from texturepose.synthetic.textures import build_layout, paint_texture  # noqa: E402


def run(body, layout, res: int, ss: int, n_images: int, batch: int = 16) -> tuple[float, float]:
    import roma

    rig = RigConfig()
    subject = sample_subjects(["B01"], 0)[0]
    k, rt = make_rig(rig, np.random.default_rng(0), -0.9)
    bgs = [make_background(rig.height, rig.width, np.random.default_rng(c)) for c in range(4)]
    tex = torch.from_numpy(paint_texture(layout, subject)).permute(2, 0, 1).float() / 255
    renderer = CropRenderer(body, res, ss)
    g = torch.Generator().manual_seed(0)
    nf = batch // 4
    shape = torch.from_numpy(subject.phenotype)[None].expand(nf, -1)
    idx_f, idx_c = torch.arange(nf).repeat_interleave(4), torch.arange(4).repeat(nf)
    k_t, rt_t = torch.from_numpy(k)[idx_c], torch.from_numpy(rt)[idx_c]

    def one_batch():
        rv = torch.randn(nf, body.num_joints, 3, generator=g) * 0.2
        with torch.no_grad():
            out = body(roma.rotvec_to_rotmat(rv), shape)
        r = renderer.render(out.vertices[idx_f], out.keypoints[idx_f], k_t, rt_t,
                            (rig.width, rig.height), tex, [bgs[int(c)] for c in idx_c],
                            torch.from_numpy(subject.light_dir), subject.ambient)
        for i in range(len(idx_f)):
            encode_jpeg(r.images[i])
            encode_png(r.masks[i])

    one_batch()  # warm-up
    n_batches = max(1, n_images // batch)
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_batches):
        one_batch()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = n_batches * batch
    return n / wall, cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    body = build_body_model("anny")
    layout = build_layout(body, 512)
    print(f"torch threads {torch.get_num_threads()}, {args.images} images per setting, "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = []
    for res, ss in ((224, 1), (224, 2), (128, 1), (128, 2)):
        rate, cpu = run(body, layout, res, ss, args.images)
        rows.append((res, ss, rate, cpu))
        print(f"crop {res:3d} px, supersample {ss}: {rate:6.1f} images/s wall, "
              f"{cpu * 1000:6.1f} CPU ms/image")
    base = rows[1][2]
    for res, ss, rate, _ in rows:
        print(f"  {res} px x{ss} / 224 px x2 speed ratio: {rate / base:.2f}")


if __name__ == "__main__":
    main()
