"""What `texturepose predict` reads: image files, folders of them (recursively, sorted) and
videos, as RGB frames, with a clear error per unreadable input."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})


class InputError(ValueError):
    """An input that cannot be read; the message names the file and what to do."""


@dataclass(frozen=True)
class MediaFile:
    path: Path
    kind: str  # "image" | "video"


def expand_inputs(paths: Sequence[str | Path]) -> tuple[list[MediaFile], list[tuple[str, str]]]:
    """Image and video files of ``paths`` (folders searched recursively, in sorted order), and
    ``(path, reason)`` for what was left out: missing paths and files of other types."""
    found: list[MediaFile] = []
    skipped: list[tuple[str, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file())
        elif p.is_file():
            files = [p]
        else:
            skipped.append((str(p), "no such file or folder"))
            continue
        for f in files:
            suffix = f.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                found.append(MediaFile(f, "image"))
            elif suffix in VIDEO_SUFFIXES:
                found.append(MediaFile(f, "video"))
            elif not f.name.startswith("."):
                skipped.append((str(f), f"not an image or video (suffix {suffix or 'none'}; "
                                        f"images: {sorted(IMAGE_SUFFIXES)}, videos: "
                                        f"{sorted(VIDEO_SUFFIXES)})"))
    return found, skipped


def read_image(path: str | Path) -> np.ndarray:
    """The image as RGB uint8 ``(H, W, 3)``."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None or data.size == 0:
        raise InputError(f"{path}: empty or missing file: give a JPEG/PNG image")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{path}: not a readable image (OpenCV could not decode it): "
                         "re-save it as JPEG or PNG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass
class Video:
    path: Path
    fps: float
    frame_count: int
    size: tuple[int, int]  # (width, height)


def open_video(path: str | Path) -> tuple[Video, cv2.VideoCapture]:
    """A readable video and its capture; :class:`InputError` for empty or undecodable files."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{path}: empty or missing video file")
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise InputError(f"{path}: OpenCV cannot decode this video: convert it to H.264 MP4 "
                         "(e.g. ffmpeg -i in.mov out.mp4) or extract its frames as images")
    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return Video(path, fps, count, (first.shape[1], first.shape[0])), cap


def video_frames(cap: cv2.VideoCapture, every: int = 1,
                 max_frames: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame index, RGB frame)`` of every ``every``-th frame, at most ``max_frames`` (0: all)."""
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    index = kept = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            return
        if index % every == 0:
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            kept += 1
            if max_frames and kept >= max_frames:
                return
        index += 1
