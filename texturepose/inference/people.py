"""Where the people are in an image: a given box, a keypoint JSON (OpenPose or COCO, as SPIN's
demo accepts), or the whole image. Each becomes the square crop the regressor was trained on."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from texturepose.geometry.crops import box_from_keypoints
from texturepose.inference.inputs import InputError

log = logging.getLogger(__name__)

#: Crop margin around a box or keypoints (SPIN's 1.2).
MARGIN = 1.2
#: Keypoints below this confidence do not shape the box.
MIN_CONFIDENCE = 0.1


@dataclass(frozen=True)
class Person:
    center: np.ndarray  # (2,) crop centre, image pixels
    size: float  # crop side, image pixels
    source: str  # "bbox" | "openpose" | "coco" | "whole image"


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"x0,y0,x1,y1"`` (image pixels) as floats, x1 > x0 and y1 > y0."""
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--bbox {text!r}: expected four numbers x0,y0,x1,y1 (pixels)") from None
    if not (x1 > x0 and y1 > y0):
        raise InputError(f"--bbox {text!r}: needs x1 > x0 and y1 > y0")
    return x0, y0, x1, y1


def person_from_box(box: tuple[float, float, float, float], image_size: tuple[int, int],
                    source: str = "bbox") -> Person:
    """The square crop around ``box`` (x0, y0, x1, y1); ``image_size`` is (width, height)."""
    x0, y0, x1, y1 = box
    w, h = image_size
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise InputError(f"box {box} lies outside the {w}x{h} image; give a --bbox inside it "
                         "(x0,y0,x1,y1 in pixels)")
    center = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32)
    return Person(center, float(max(x1 - x0, y1 - y0) * MARGIN), source)


def whole_image(image_size: tuple[int, int]) -> Person:
    """The whole image as one person (no detector ships with this package)."""
    w, h = image_size
    return Person(np.array([w / 2, h / 2], np.float32), float(max(w, h)), "whole image")


def _triples(values: list, path: Path, what: str) -> np.ndarray:
    arr = np.asarray(values, np.float64)
    if arr.ndim != 1 or arr.size == 0 or arr.size % 3:
        raise InputError(f"{path}: {what} must be a flat list of x, y, confidence triples")
    return arr.reshape(-1, 3)


def people_from_keypoint_json(path: str | Path, image_size: tuple[int, int]) -> list[Person]:
    """People of an OpenPose JSON (``{"people": [{"pose_keypoints_2d": [...]}]}``) or a COCO
    JSON (a list of annotations or ``{"annotations": [...]}``, each with ``keypoints`` and/or
    ``bbox [x, y, w, h]``); boxes from the confident keypoints, as SPIN's demo does."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable JSON file ({e})") from None
    people: list[Person] = []
    if isinstance(data, dict) and "people" in data:
        for p in data["people"]:
            kp = _triples(p.get("pose_keypoints_2d", []), path, "pose_keypoints_2d")
            people.append(_from_points(kp, image_size, "openpose", path))
    else:
        anns = data.get("annotations", []) if isinstance(data, dict) else data
        if not isinstance(anns, list):
            raise InputError(f"{path}: expected OpenPose ('people') or COCO ('annotations' or a "
                             "list of annotations) keypoints")
        for a in anns:
            if a.get("keypoints") and any(a["keypoints"][2::3]):
                kp = _triples(a["keypoints"], path, "keypoints")
                people.append(_from_points(kp, image_size, "coco", path))
            elif a.get("bbox"):
                x, y, bw, bh = (float(v) for v in a["bbox"])
                people.append(person_from_box((x, y, x + bw, y + bh), image_size, "coco"))
    if not people:
        raise InputError(f"{path}: no person with keypoints or a box in it")
    return people


def _from_points(kp: np.ndarray, image_size: tuple[int, int], source: str, path: Path) -> Person:
    valid = kp[:, 2] > MIN_CONFIDENCE
    if valid.sum() < 2:
        raise InputError(f"{path}: a person has fewer than 2 confident keypoints")
    center, size = box_from_keypoints(kp[:, :2], valid, MARGIN)
    half = size / 2
    box = (center[0] - half, center[1] - half, center[0] + half, center[1] + half)
    person_from_box(box, image_size, source)  # refuses boxes outside the image
    return Person(center, size, source)
