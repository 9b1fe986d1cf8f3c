"""Make the embedded motion-capture clips: BVH files decimated to a lower frame rate, gzipped.

    python scripts/embed_mocap_clips.py ../shared/data/mocap/cmu --fps 10 --out assets/mocap/cmu

The default pipeline samples its clips at 10 fps (``mocap.fps``), so keeping every k-th frame
(k = round(source fps / fps), the first frame kept: many exports start with a T-pose there) and
rewriting ``Frames`` and ``Frame Time`` loses nothing it reads, and cuts the 42 CMU clips from
58.6 MB to a few MB. The joint hierarchy and every kept row are copied unchanged. gzip's header
time is fixed, so the same input gives the same bytes. CMU's terms allow redistribution inside
a project (not resale of the data); keep the acknowledgement beside the clips.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import sys
from pathlib import Path

from texturepose.files import atomic_path

log = logging.getLogger("embed_mocap_clips")


def decimate(text: str, fps: float, path: Path) -> tuple[str, int, int]:
    """The BVH ``text`` with every k-th motion row; returns it, the source and kept frames."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().upper() == "MOTION")
        n = int(lines[start + 1].split(":")[1])
        frame_time = float(lines[start + 2].split(":")[1])
    except (StopIteration, IndexError, ValueError) as e:
        raise ValueError(f"{path}: no MOTION / Frames / Frame Time header ({e})") from e
    rows = [line for line in lines[start + 3 :] if line.strip()]
    if len(rows) != n:
        raise ValueError(f"{path}: Frames says {n} but {len(rows)} motion rows follow")
    step = max(1, round((1.0 / frame_time) / fps))
    kept = rows[::step]
    head = [*lines[:start + 1], f"Frames: {len(kept)}", f"Frame Time: {frame_time * step:.8f}"]
    return "\n".join([*head, *kept]) + "\n", n, len(kept)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="+", type=Path, help="BVH files or folders (recursive)")
    ap.add_argument("--fps", type=float, default=10.0, help="frame rate to keep")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = sorted({p for s in args.sources
                    for p in ([s] if s.is_file() else s.rglob("*.bvh"))})
    if not files:
        raise SystemExit(f"no .bvh files under {[str(s) for s in args.sources]}")
    args.out.mkdir(parents=True, exist_ok=True)
    total_in = total_out = 0
    for path in files:
        text, n, kept = decimate(path.read_text(encoding="utf-8", errors="replace"), args.fps,
                                 path)
        target = args.out / f"{path.stem}.bvh.gz"
        with atomic_path(target) as tmp, open(tmp, "wb") as raw, gzip.GzipFile(
                fileobj=raw, mode="wb", mtime=0, filename="") as f:
            f.write(text.encode("utf-8"))
        total_in += path.stat().st_size
        total_out += target.stat().st_size
        log.info("%s: %d -> %d frames, %.0f kB", target.name, n, kept, target.stat().st_size / 1e3)
    log.info("%d clips: %.1f MB -> %.1f MB", len(files), total_in / 1e6, total_out / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
