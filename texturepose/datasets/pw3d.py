"""3DPW (von Marcard et al. 2018): ``sequenceFiles/<split>/<sequence>.pkl`` (Python-2 pickles)
and ``imageFiles/<sequence>/image_<frame:05d>.jpg``.

Per actor: SMPL ``poses`` (N, 72) and ``betas`` in the world frame, ``poses2d`` (N, 3, 18)
OpenPose COCO-18 with scores, ``campose_valid``; per frame ``cam_poses`` (N, 4, 4) world to
camera, and ``cam_intrinsics`` (3, 3). Frames whose camera pose is not valid for the actor are
skipped. The stored SMPL global orientation is rotated into the camera frame (as SPIN does);
``cam_Rt`` keeps the world-to-camera extrinsics of the frame.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from texturepose.datasets.common import (
    RawSample,
    ReaderError,
    Skip,
    SplitInfo,
    write_split,
)
from texturepose.keypoints import OPENPOSE18, names_to_superset

HINT = (
    "download imageFiles.zip and sequenceFiles.zip from https://virtualhumans.mpi-inf.mpg.de/3DPW "
    "and unpack both into the dataset root"
)
SOURCE = "3DPW, https://virtualhumans.mpi-inf.mpg.de/3DPW"
LICENCE = "3DPW licence: non-commercial scientific research only"
KEYS = ("sequence", "poses", "betas", "poses2d", "cam_poses", "cam_intrinsics",
        "campose_valid", "img_frame_ids")
SPLITS = ("train", "validation", "test")


def load_sequence(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            seq = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, OSError) as e:
        raise ReaderError(f"{path}: not a readable 3DPW sequence pickle ({e}); {HINT}") from e
    missing = [k for k in KEYS if k not in seq] if isinstance(seq, dict) else list(KEYS)
    if missing:
        raise ReaderError(f"{path}: missing fields {missing}; {HINT}")
    return seq


def read_pw3d(root: str | os.PathLike, split: str = "test", every_nth: int = 1
              ) -> Iterator[RawSample | Skip]:
    import torch

    from texturepose.geometry.rotations import axis_angle_to_matrix

    if split not in SPLITS:
        raise ValueError(f"3DPW split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    files = sorted((root / "sequenceFiles" / split).glob("*.pkl"))
    if not files:
        raise ReaderError(f"no sequence pickles in {root / 'sequenceFiles' / split}; {HINT}")
    for path in files:
        try:
            seq = load_sequence(path)
        except ReaderError as e:
            yield Skip("unreadable sequence file", str(e))
            continue
        name = str(seq["sequence"])
        K = np.asarray(seq["cam_intrinsics"], np.float32)
        cam_poses = np.asarray(seq["cam_poses"], np.float64)
        frame_ids = np.asarray(seq["img_frame_ids"]).astype(int)
        for a in range(len(seq["poses"])):
            poses = np.asarray(seq["poses"][a], np.float64)
            betas = np.asarray(seq["betas"][a], np.float32)[:10]
            p2d = np.asarray(seq["poses2d"][a], np.float32)
            valid = np.asarray(seq["campose_valid"][a]).astype(bool)
            if p2d.shape[1:] != (3, 18) or poses.shape[1:] != (72,):
                yield Skip("malformed actor arrays", f"{path} actor {a}: poses2d {p2d.shape}")
                continue
            rot = axis_angle_to_matrix(torch.as_tensor(poses.reshape(-1, 24, 3))).numpy()
            for f in range(0, len(poses), max(1, int(every_nth))):
                if not valid[f]:
                    yield Skip("camera pose not valid", f"{name} actor {a} frame {f}")
                    continue
                R_wc = cam_poses[f, :3, :3]
                body = rot[f].copy()
                body[0] = R_wc @ body[0]  # global orientation into the camera frame
                kp = p2d[f].T.copy()  # (18, 3): x, y, OpenPose score
                img = f"image_{frame_ids[f]:05d}.jpg"
                yield RawSample(
                    keypoints=names_to_superset(kp, OPENPOSE18),
                    visible=names_to_superset((kp[:, 2:] > 0).astype(np.uint8), OPENPOSE18)[:, 0],
                    center=None, size=0.0, image_name=f"{name}/{img}",
                    image_path=root / "imageFiles" / name / img, subject=f"{name}_actor{a}",
                    sequence=name, camera="0", frame=int(frame_ids[f]), person=a,
                    optional={"body_pose": body.astype(np.float32), "body_shape": betas,
                              "cam_K": K, "cam_Rt": cam_poses[f, :3].astype(np.float32)},
                )


def convert_pw3d(
    root: str | os.PathLike, out_path: str | os.PathLike, split: str = "test",
    crop_res: int = 224, every_nth: int = 1, limit: int | None = None, **_: Any,
) -> dict[str, Any]:
    """Write 3DPW ``split`` crops with SMPL parameters and cameras."""
    info = SplitInfo("3dpw", split, SOURCE, LICENCE, body_model="smpl", extra_attrs={
        "every_nth": int(every_nth), "keypoint_confidence": "OpenPose score",
        "body_pose_frame": "global orientation in the camera frame"})
    return write_split(read_pw3d(root, split, every_nth), out_path, info, crop_res, limit=limit)
