"""COCO person keypoints (2014 or 2017): ``annotations/person_keypoints_<split><year>.json`` and
images in ``<split><year>/``.

Keypoint flags: 0 = not labelled, 1 = labelled but not visible, 2 = labelled and visible. Crowd
annotations and people with fewer than ``min_keypoints`` labelled points are skipped (counted).
The crop box is the person box's longer side times 1.2 around its centre (SPIN).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from texturepose.datasets.common import (
    RawSample,
    ReaderError,
    Skip,
    SplitInfo,
    require_file,
    write_split,
)
from texturepose.keypoints import to_superset

HINT = (
    "download annotations_trainval<year>.zip and <split><year>.zip from https://cocodataset.org "
    "and unpack them into the dataset root (annotations/ and train<year>/, val<year>/)"
)
SOURCE = "COCO person keypoints, https://cocodataset.org"
LICENCE = "annotations CC BY 4.0; images under their Flickr licences"


def load_coco_json(path: Path) -> dict[str, Any]:
    require_file(path, "COCO keypoint json", HINT)
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReaderError(f"{path}: not valid JSON ({e}); {HINT}") from e
    for key in ("images", "annotations"):
        if key not in data:
            raise ReaderError(f"{path}: no '{key}' list: not a COCO annotation file; {HINT}")
    return data


def read_coco(
    root: str | os.PathLike, split: str = "train", year: int = 2017, min_keypoints: int = 6,
    box_margin: float = 1.2,
) -> Iterator[RawSample | Skip]:
    """One sample per annotated person, ordered by image then annotation id."""
    root = Path(root)
    path = root / "annotations" / f"person_keypoints_{split}{year}.json"
    data = load_coco_json(path)
    images = {im["id"]: im for im in data["images"]}
    anns = sorted(data["annotations"], key=lambda a: (a["image_id"], a["id"]))
    person_idx: dict[int, int] = {}
    for ann in anns:
        im = images.get(ann["image_id"])
        if im is None:
            yield Skip("annotation of an unknown image", f"annotation {ann.get('id')}")
            continue
        if ann.get("iscrowd", 0):
            yield Skip("crowd annotation", f"annotation {ann['id']}")
            continue
        kp = np.asarray(ann.get("keypoints", []), np.float32)
        if kp.shape != (51,):
            yield Skip("malformed keypoints", f"annotation {ann['id']}: {kp.shape} values != 51")
            continue
        kp = kp.reshape(17, 3)
        labelled = kp[:, 2] > 0
        if labelled.sum() < min_keypoints:
            yield Skip("too few labelled keypoints", f"annotation {ann['id']}")
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        if not (w > 0 and h > 0):
            yield Skip("empty person box", f"annotation {ann['id']}")
            continue
        native = np.concatenate([kp[:, :2], labelled[:, None].astype(np.float32)], 1)
        visible = (kp[:, 2] == 2).astype(np.uint8)
        person = person_idx.get(im["id"], 0)
        person_idx[im["id"]] = person + 1
        yield RawSample(
            keypoints=to_superset(native, "coco17"),
            visible=to_superset(visible[:, None], "coco17")[:, 0],
            center=np.array([x + w / 2, y + h / 2], np.float32),
            size=box_margin * max(w, h),
            image_name=im["file_name"],
            image_path=root / f"{split}{year}" / im["file_name"],
            sequence=str(im["id"]),
            frame=int(im["id"]),
            person=person,
        )


def convert_coco(
    root: str | os.PathLike, out_path: str | os.PathLike, split: str = "train",
    crop_res: int = 224, year: int = 2017, min_keypoints: int = 6, limit: int | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Write COCO ``split`` person crops to ``out_path``; returns counts and skip reasons."""
    if split not in ("train", "val"):
        raise ValueError(f"COCO split must be 'train' or 'val' (test has no keypoints): {split!r}")
    info = SplitInfo("coco", split, f"{SOURCE} ({split}{year})", LICENCE,
                     extra_attrs={"year": int(year), "min_keypoints": int(min_keypoints)})
    return write_split(read_coco(root, split, year, min_keypoints), out_path, info, crop_res,
                       limit=limit, min_keypoints=1)
