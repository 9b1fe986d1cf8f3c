"""MPII Human Pose: the official ``mpii_human_pose_v1_u12_1.mat`` or the common json conversion
(``annotations/mpii_{train,val,trainval}.json`` as used by simple-baselines/mmpose, the same
people with the usual 22246/2958 train/val split), with images in ``images/``.

Both carry MATLAB 1-based pixel coordinates, converted here to 0-based. The crop box follows the
usual adjustment (as in the hourglass and simple-baselines loaders): centre = objpos moved down by
15 x scale, side = 1.25 x scale x 200 px. Several people per image give several samples.
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
    load_mat,
    require_file,
    write_split,
)
from texturepose.keypoints import to_superset

HINT = (
    "download mpii_human_pose_v1.tar.gz (images) and mpii_human_pose_v1_u12_2.zip (annotations) "
    "from http://human-pose.mpi-inf.mpg.de, unpack images/ and the .mat into the dataset root; "
    "or use the json conversion (annotations/mpii_train.json, mpii_val.json)"
)
SOURCE = "MPII Human Pose, http://human-pose.mpi-inf.mpg.de"
LICENCE = "Simplified BSD (annotations); images from YouTube, research use"
MAT_NAMES = (
    "mpii_human_pose_v1_u12_1.mat",
    "mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat",
)


def mpii_box(center: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """0-based crop centre and side from MPII's 1-based objpos and scale (person height / 200)."""
    c = np.asarray(center, np.float32) - 1.0
    c[1] += 15.0 * scale
    return c, 1.25 * 200.0 * float(scale)


def _sample(root: Path, image_dir: str, name: str, joints: np.ndarray, annotated: np.ndarray,
            visible: np.ndarray, center: np.ndarray, scale: float, person: int,
            frame: int) -> RawSample | Skip:
    if not annotated.any():
        return Skip("no keypoints annotated", f"{name} person {person}")
    if not (np.isfinite(scale) and scale > 0):
        return Skip("invalid person scale", f"{name} person {person}: scale {scale}")
    kp = np.concatenate([joints - 1.0, annotated[:, None]], 1).astype(np.float32)
    c, size = mpii_box(center, scale)
    return RawSample(
        keypoints=to_superset(kp, "mpii16"),
        visible=to_superset((visible * annotated)[:, None].astype(np.uint8), "mpii16")[:, 0],
        center=c, size=size, image_name=name, image_path=root / image_dir / name,
        sequence=Path(name).stem, frame=frame, person=person,
    )


def read_mpii_json(root: str | os.PathLike, split: str = "train", json_path: Path | None = None,
                   image_dir: str = "images") -> Iterator[RawSample | Skip]:
    """People of the json conversion; ``joints_vis`` there means *annotated* (visibility is not
    in these files, so ``visible`` is left 0 = unknown)."""
    root = Path(root)
    path = Path(json_path) if json_path else root / "annotations" / f"mpii_{split}.json"
    require_file(path, "MPII json", HINT)
    try:
        people = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReaderError(f"{path}: not valid JSON ({e}); {HINT}") from e
    if not isinstance(people, list):
        raise ReaderError(f"{path}: expected a list of people, got {type(people).__name__}")
    count: dict[str, int] = {}
    for i, p in enumerate(people):
        try:
            joints = np.asarray(p["joints"], np.float32).reshape(16, 2)
            annotated = np.asarray(p["joints_vis"], np.float32).reshape(16) > 0
            name, center, scale = p["image"], p["center"], float(p["scale"])
        except (KeyError, ValueError, TypeError) as e:
            yield Skip("malformed annotation", f"{path} entry {i}: {e}")
            continue
        person = count.get(name, 0)
        count[name] = person + 1
        yield _sample(root, image_dir, name, joints, annotated, np.zeros(16), np.asarray(center),
                      scale, person, i)


def _items(x: Any) -> list[Any]:
    """MATLAB struct arrays come back from scipy as arrays, single structs or empty arrays."""
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        return [] if x.size == 0 else list(x.ravel())
    return [x]


def _field(obj: Any, name: str) -> Any:
    """A struct field, or None where it is absent or an empty MATLAB array."""
    v = getattr(obj, name, None)
    return None if isinstance(v, np.ndarray) and v.size == 0 else v


def _scalar(x: Any, default: float = np.nan) -> float:
    arr = np.asarray(x, dtype=object).ravel()
    if arr.size == 0:
        return default
    try:
        return float(arr[0])
    except (TypeError, ValueError):
        return default


def find_mpii_mat(root: Path) -> Path:
    for name in MAT_NAMES:
        if (root / name).is_file():
            return root / name
    raise ReaderError(f"no MPII annotation file ({' or '.join(MAT_NAMES)}) under {root}; {HINT}")


def read_mpii_mat(root: str | os.PathLike, split: str = "train", mat_path: Path | None = None,
                  val_json: Path | None = None, image_dir: str = "images"
                  ) -> Iterator[RawSample | Skip]:
    """People of the official release's training images (``img_train == 1``).

    ``split='trainval'`` gives all of them; ``train``/``val`` need ``val_json`` (the usual
    validation list, mpii_val.json) whose people (image, centre) are ``val`` and the rest ``train``.
    """
    import scipy.io

    root = Path(root)
    path = Path(mat_path) if mat_path else find_mpii_mat(root)
    load_mat(path, HINT)  # clear error for a missing or corrupt file
    mat = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=True)
    release = mat.get("RELEASE")
    if release is None or not hasattr(release, "annolist") or not hasattr(release, "img_train"):
        raise ReaderError(f"{path}: no RELEASE struct with annolist/img_train; {HINT}")
    annolist = _items(release.annolist)
    img_train = np.atleast_1d(np.asarray(release.img_train)).ravel()
    if len(img_train) != len(annolist):
        raise ReaderError(f"{path}: img_train has {len(img_train)} entries, annolist "
                          f"{len(annolist)}; the file is damaged: {HINT}")
    if split not in ("trainval", "train", "val"):
        raise ValueError(f"MPII split must be trainval, train or val, got {split!r}")
    val_keys: set[tuple[str, int, int]] | None = None
    if split != "trainval":
        if val_json is None:
            raise ReaderError(f"MPII split {split!r} from the .mat needs val_json (the usual "
                              f"validation list mpii_val.json); or use split 'trainval'")
        val = json.loads(Path(val_json).read_text())
        val_keys = {(p["image"], round(p["center"][0]), round(p["center"][1])) for p in val}
    for i, (ann, is_train) in enumerate(zip(annolist, img_train, strict=True)):
        if not is_train:
            continue
        name = str(ann.image.name)
        for r, rect in enumerate(_items(getattr(ann, "annorect", None))):
            points, objpos = _field(rect, "annopoints"), _field(rect, "objpos")
            if points is None or objpos is None:
                yield Skip("no keypoints annotated", f"{name} rect {r}")
                continue
            center = np.array([_scalar(getattr(objpos, "x", np.nan)),
                               _scalar(getattr(objpos, "y", np.nan))], np.float32)
            if val_keys is not None:
                in_val = (name, round(center[0]), round(center[1])) in val_keys
                if in_val != (split == "val"):
                    continue
            joints = np.zeros((16, 2), np.float32)
            annotated = np.zeros(16, bool)
            visible = np.zeros(16, np.float32)
            for pt in _items(_field(points, "point")):
                j = int(_scalar(pt.id, -1))
                if 0 <= j < 16:
                    joints[j] = _scalar(pt.x), _scalar(pt.y)
                    annotated[j] = True
                    visible[j] = _scalar(_field(pt, "is_visible"), 0.0) == 1
            yield _sample(root, image_dir, name, joints, annotated, visible, center,
                          _scalar(_field(rect, "scale")), r, i)


def convert_mpii(
    root: str | os.PathLike, out_path: str | os.PathLike, split: str = "train",
    crop_res: int = 224, source: str = "json", json_path: str | None = None,
    mat_path: str | None = None, val_json: str | None = None, image_dir: str = "images",
    limit: int | None = None, **_: Any,
) -> dict[str, Any]:
    """Write MPII people of ``split`` from the json conversion (``source='json'``) or the
    official .mat (``source='mat'``)."""
    if source == "json":
        samples = read_mpii_json(root, split, Path(json_path) if json_path else None, image_dir)
    elif source == "mat":
        samples = read_mpii_mat(root, split, Path(mat_path) if mat_path else None,
                                Path(val_json) if val_json else None, image_dir)
    else:
        raise ValueError(f"MPII source must be 'json' or 'mat', got {source!r}")
    info = SplitInfo("mpii", split, f"{SOURCE} ({source})", LICENCE,
                     extra_attrs={"annotation_source": source,
                                  "visibility": "from is_visible" if source == "mat" else
                                  "unknown (json has no visibility)"})
    return write_split(samples, out_path, info, crop_res, limit=limit, min_keypoints=1)
