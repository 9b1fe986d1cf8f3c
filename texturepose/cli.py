"""The `texturepose` command: `texturepose predict IMAGES|FOLDERS|VIDEOS --out DIR`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="meshes for people in images, folders and videos",
                       description="Run a trained model (final.pt) on images, folders "
                                   "(recursively) and videos; write overlays, meshes and JSON.")
    p.add_argument("inputs", nargs="+", help="image files, folders, videos (mp4/avi/mov/mkv)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--checkpoint", default="checkpoints/final.pt",
                   help="trained model (default: %(default)s, written by `dvc repro`)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--bbox", help="the person's box x0,y0,x1,y1 in image pixels")
    who.add_argument("--keypoints", help="OpenPose or COCO keypoint JSON: one box per person")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="crops per network batch, across images and video frames "
                        "(default: %(default)s)")
    p.add_argument("--every", type=int, default=1, help="videos: predict every N-th frame")
    p.add_argument("--max-frames", type=int, default=0,
                   help="videos: predict at most this many frames (0: all)")
    p.add_argument("--video-meshes", action="store_true",
                   help="videos: also write .obj/.ply for every predicted frame")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the network (0: torch's default; 1 is fastest on a "
                        "busy machine, see docs/benchmarks.md)")
    p.add_argument("--refine-steps", type=int, default=0,
                   help="fit each mesh to the network's own 2D keypoints for this many steps "
                        "(0: off; 100 raised PCK@0.2 on held-out LSP photos from 0.50 to "
                        "0.61, at 0.1-1.5 s per person: docs/real.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="texturepose")
    sub = parser.add_subparsers(dest="command", required=True)
    _predict_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from texturepose.inference.batch import PeopleSpec, predict_paths
    from texturepose.inference.inputs import InputError

    if args.every < 1 or args.max_frames < 0:
        parser.error("--every must be >= 1 and --max-frames >= 0")
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.refine_steps < 0:
        parser.error("--refine-steps must be >= 0 (0: off)")
    if args.threads < 0:
        parser.error("--threads must be >= 0 (0: torch's default)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        summary = predict_paths(args.inputs, args.out, args.checkpoint,
                                PeopleSpec(args.bbox, args.keypoints), args.device, args.every,
                                args.max_frames, args.video_meshes, progress=not args.quiet,
                                batch_size=args.batch_size, refine_steps=args.refine_steps)
    except InputError as e:
        logging.error("%s", e)
        return 2
    return 0 if summary.frames or not summary.skipped else 1


if __name__ == "__main__":
    sys.exit(main())
