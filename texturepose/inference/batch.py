"""`texturepose predict` as a function: every image, folder and video given, every person in
it, the outputs under one folder; unreadable inputs are skipped, counted and reported."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from texturepose.files import atomic_path, write_json
from texturepose.inference import export
from texturepose.inference.inputs import (
    InputError,
    MediaFile,
    expand_inputs,
    open_video,
    read_image,
    video_frames,
)
from texturepose.inference.people import (
    Person,
    parse_bbox,
    people_from_keypoint_json,
    person_from_box,
    whole_image,
)
from texturepose.inference.photo import PhotoPredictor

log = logging.getLogger(__name__)


@dataclass
class PredictSummary:
    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    people: int = 0
    frames: int = 0

    def lines(self) -> list[str]:
        out = [f"{self.frames} image(s)/frame(s), {self.people} person prediction(s), "
               f"{len(self.written)} file(s) written, {len(self.skipped)} input(s) skipped"]
        out += [f"  skipped {path}: {why}" for path, why in self.skipped]
        return out


@dataclass
class PeopleSpec:
    """How people are found: a box, a keypoint JSON, or (neither) the whole image."""

    bbox: str | None = None
    keypoints: str | None = None

    def find(self, size: tuple[int, int]) -> list[Person]:
        if self.bbox:
            return [person_from_box(parse_bbox(self.bbox), size)]
        if self.keypoints:
            return people_from_keypoint_json(self.keypoints, size)
        return [whole_image(size)]


def _stem(media: MediaFile, roots: list[Path]) -> str:
    """An output name unique among the inputs: the path below the folder it was found in."""
    for root in roots:
        if root.is_dir() and root in media.path.parents:
            return "__".join(media.path.relative_to(root).with_suffix("").parts)
    return media.path.stem


def _write_person_files(stem: Path, meshes, faces, body_model: str,
                        summary: PredictSummary, with_meshes: bool = True) -> None:
    for j, m in enumerate(meshes):
        base = stem.with_name(f"{stem.name}_person{j}")
        if with_meshes:
            summary.written += [str(p) for p in export.write_meshes(base, m, faces)]
        record = export.person_record(m, body_model)
        summary.written.append(str(write_json(base.with_suffix(".json"), record)))
    summary.people += len(meshes)


def predict_paths(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    checkpoint: str | os.PathLike = "checkpoints/final.pt",
    people: PeopleSpec | None = None,
    device: str = "cpu",
    every: int = 1,
    max_frames: int = 0,
    meshes_for_video: bool = False,
    progress: bool = True,
    batch_size: int = 16,
    refine_steps: int = 0,
) -> PredictSummary:
    """Predict every person in ``inputs`` (images, folders, videos) and write, under
    ``out_dir``: ``<name>_overlay.png`` (front | side view) and per person
    ``<name>_person<j>.{obj,ply,json}``; for a video ``<name>_overlay.mp4`` with every frame
    (the frames predicted on drawn with their mesh) at the input's rate, and per-frame JSON
    (meshes too with ``meshes_for_video``). The crops of up to ``batch_size`` images (or
    frames) go through the network together; ``refine_steps > 0`` fits each mesh to the
    keypoint head's 2D output (:class:`PhotoPredictor`)."""
    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    people = people or PeopleSpec()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictor = PhotoPredictor(checkpoint, device=device, refine_steps=refine_steps)
    if not people.bbox and not people.keypoints:
        log.warning("no --bbox or --keypoints given and no person detector ships with this "
                    "package: each image is taken as one person filling it (crop your photos "
                    "around the person, or pass a box)")
    media, summary_skipped = expand_inputs(inputs)
    summary = PredictSummary(skipped=list(summary_skipped))
    roots = [Path(p) for p in inputs]
    pending: list[tuple[Path, np.ndarray, list[Person]]] = []  # images waiting for a batch
    for item in tqdm(media, desc="predict", unit="file", disable=not progress):
        stem = out / _stem(item, roots)
        try:
            if item.kind == "image":
                image = read_image(item.path)
                pending.append((stem, image, people.find((image.shape[1], image.shape[0]))))
                if len(pending) >= batch_size:
                    _write_images(pending, predictor, summary, batch_size)
                    pending = []
            else:
                _predict_video(item.path, stem, predictor, people, every, max_frames,
                               meshes_for_video, summary, batch_size)
        except InputError as e:
            log.warning("skipping %s: %s", item.path, e)
            summary.skipped.append((str(item.path), str(e)))
    _write_images(pending, predictor, summary, batch_size)
    for line in summary.lines():
        log.info(line)
    return summary


def _write_images(pending: list[tuple[Path, np.ndarray, list[Person]]],
                  predictor: PhotoPredictor, summary: PredictSummary, batch_size: int) -> None:
    """Predict a batch of images and write each one's overlay and person files."""
    if not pending:
        return
    results = predictor.predict_many([(image, found) for _, image, found in pending], batch_size)
    for (stem, image, _), meshes in zip(pending, results, strict=True):
        picture = export.front_and_side(image, meshes, predictor.faces)
        summary.written.append(str(export.write_png(
            stem.with_name(stem.name + "_overlay.png"), picture)))
        _write_person_files(stem, meshes, predictor.faces, predictor.body.name, summary)
        summary.frames += 1


def _predict_video(path: Path, stem: Path, predictor: PhotoPredictor, people: PeopleSpec,
                   every: int, max_frames: int, with_meshes: bool,
                   summary: PredictSummary, batch_size: int = 16) -> None:
    """Overlay video with the input's frame count and rate: frames that are not predicted on
    (``every`` > 1, beyond ``max_frames``) are copied through unchanged. Frames are held back
    until ``batch_size`` of them are to be predicted, then written in their order."""
    video, cap = open_video(path)
    faces = predictor.faces
    target = stem.with_name(stem.name + "_overlay.mp4")
    # (index, frame, people or None when the frame is copied through)
    held: list[tuple[int, np.ndarray, list[Person] | None]] = []
    kept = 0

    def flush(writer) -> None:
        todo = [(frame, found) for _, frame, found in held if found is not None]
        results = iter(predictor.predict_many(todo, batch_size)) if todo else iter(())
        for index, frame, found in held:
            if found is not None:
                meshes = next(results)
                frame = export.overlay_image(frame, meshes, faces)
                fstem = stem.with_name(f"{stem.name}_frame{index:06d}")
                _write_person_files(fstem, meshes, faces, predictor.body.name, summary,
                                    with_meshes)
                summary.frames += 1
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
        held.clear()

    try:
        with atomic_path(target) as tmp:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), video.fps,
                                     video.size)
            if not writer.isOpened():
                raise InputError(f"{target}: OpenCV cannot write MP4 video here")
            for index, frame in video_frames(cap, 1, 0):
                found = None
                if index % every == 0 and (not max_frames or kept < max_frames):
                    kept += 1
                    found = people.find((frame.shape[1], frame.shape[0]))
                held.append((index, frame, found))
                # also bounded in frames: with a large --every, copied frames would pile up
                if (sum(f is not None for _, _, f in held) >= batch_size
                        or len(held) >= 4 * batch_size):
                    flush(writer)
            flush(writer)
            writer.release()
    finally:
        cap.release()
    if not kept:
        raise InputError(f"{path}: no frame could be read")
    summary.written.append(str(target))
