"""Benchmark: converter samples/s per dataset on ../shared/data, and the HDF5 reader's samples/s
with decoding and a simple augmentation (what a training data loader does per sample).

    python bench/readers.py [--crop-res 224] [--repeat 2]

Side by side in one run: each converter against plain decoding of the same source images (the
floor any converter pays), and the reader with/without augmentation.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from texturepose.data.hdf5 import Hdf5Dataset  # noqa: E402
from texturepose.datasets import get_converter  # noqa: E402
from texturepose.keypoints import FLIP_PERMUTATION  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MM = SHARED / "mmpose-samples"


def jobs() -> list[tuple[str, str, Path, dict, list[Path]]]:
    """(label, converter, root, options, source images for the decode baseline)."""
    return [
        ("lsp train (1000)", "lsp", SHARED / "lsp", {},
         sorted((SHARED / "lsp" / "images").glob("*.jpg"))),
        ("lspet (400 present)", "lspet", SHARED / "lspet", {"only_present": True},
         sorted((SHARED / "lspet" / "images").glob("*.jpg"))),
        ("coco-2017 train subset", "coco", SHARED / "coco-mini", {"split": "train"},
         sorted((SHARED / "coco-mini" / "train2017").glob("*.jpg"))),
        ("mpii json sample", "mpii", MM / "mpii",
         {"json_path": str(MM / "mpii" / "test_mpii.json"), "image_dir": "."},
         sorted((MM / "mpii").glob("*.jpg"))),
        ("h36m SPIN npz sample", "spin_npz", MM / "h36m",
         {"npz_path": str(MM / "h36m" / "test_h36m.npz")}, sorted((MM / "h36m").rglob("*.jpg"))),
    ]


def augment(sample: dict, rng: np.random.Generator, res: int) -> tuple[np.ndarray, np.ndarray]:
    """Random scale/rotation/flip/colour as a loader would do: one warpAffine per sample."""
    img, kp = sample["image"], sample["keypoints_2d"].copy()
    m = cv2.getRotationMatrix2D((res / 2, res / 2), rng.uniform(-30, 30), rng.uniform(0.75, 1.25))
    img = cv2.warpAffine(img, m, (res, res), flags=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
        kp = kp[FLIP_PERMUTATION]
    img = np.clip(img.astype(np.float32) * rng.uniform(0.6, 1.4, 3), 0, 255)
    return img.transpose(2, 0, 1) / 255.0, kp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crop-res", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not SHARED.is_dir():
        print(f"{SHARED} absent: nothing to benchmark")
        return 1
    print(f"converters, crop {args.crop_res}px, best of {args.repeat} "
          f"(samples/s; decode = cv2.imread of the source images only)")
    print(f"{'dataset':26s} {'samples':>7s} {'conv/s':>8s} {'decode img/s':>12s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for label, name, root, opts, images in jobs():
            conv = get_converter(name)
            best, n = np.inf, 0
            for _ in range(args.repeat):
                t = time.perf_counter()
                counts = conv(root, out / f"{name}.h5", crop_res=args.crop_res, **opts)
                best, n = min(best, time.perf_counter() - t), counts["written"]
            t = time.perf_counter()
            for p in images:
                cv2.imread(str(p))
            dec = len(images) / (time.perf_counter() - t)
            print(f"{label:26s} {n:7d} {n / best:8.1f} {dec:12.1f} {n / best / dec:6.2f}")

        ds = Hdf5Dataset(out / "lsp.h5")
        rng = np.random.default_rng(0)
        n = len(ds)
        t = time.perf_counter()
        for i in range(n):
            ds[i]
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(n):
            augment(ds[i], rng, args.crop_res)
        t_aug = time.perf_counter() - t
        print(f"\nHdf5Dataset on lsp ({n} crops of {args.crop_res}px), one process:")
        print(f"  read + JPEG decode:            {n / t_read:8.1f} samples/s")
        print(f"  read + decode + augmentation:  {n / t_aug:8.1f} samples/s "
              f"(ratio to read only {t_read / t_aug:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
