"""Human3.6M in its original layout:

    <root>/S1/MyPoseFeatures/D3_Positions_mono/Directions 1.54138969.cdf   (1, N, 96) mm, camera
    <root>/S1/MyPoseFeatures/D2_Positions/Directions 1.54138969.cdf        (1, N, 64) px (optional)
    <root>/S1/Videos/Directions 1.54138969.mp4
    <cameras.pkl>  (mmpose's conversion of metadata.xml; see :mod:`.cameras`)

Every ``every_nth`` frame is decoded from the video and cropped around its projected joints.
Splits: ``train`` = S1, S5, S6, S7, S8; ``test_p1`` = S9, S11, all four cameras (protocol 1);
``test_p2`` = S9, S11, frontal camera 60457274 only (protocol 2, as in HMR/SPIN). Both test
protocols are also recoverable from any file through :func:`protocol_mask` (subject, camera).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from texturepose.datasets.cameras import camera_matrices, load_camera_pkl, project_h36m
from texturepose.datasets.common import (
    RawSample,
    ReaderError,
    Skip,
    SplitInfo,
    write_split,
)
from texturepose.keypoints import H36M32_TO_17, to_superset

log = logging.getLogger(__name__)

HINT = (
    "register at http://vision.imar.ro/human3.6m, download per subject 'Poses D3 Positions mono', "
    "'Poses D2 Positions' and 'Videos', unpack each subject into <root>/S<n>/ (MyPoseFeatures/, "
    "Videos/) and make cameras.pkl with mmpose's preprocess_h36m.py"
)
SOURCE = "Human3.6M, http://vision.imar.ro/human3.6m"
LICENCE = "Human3.6M licence: academic research only, no redistribution"
SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "train": (("S1", "S5", "S6", "S7", "S8"), None),
    "test_p1": (("S9", "S11"), None),
    "test_p2": (("S9", "S11"), ("60457274",)),
}
FRONTAL_CAMERA = "60457274"
# The 17 evaluation joints only: the other 15 of the 32 are duplicates or hand/foot ends.
_EVAL32 = np.zeros(32, bool)
_EVAL32[list(H36M32_TO_17)] = True


def protocol_mask(subjects: Sequence[str], cameras: Sequence[str], protocol: int) -> np.ndarray:
    """Samples of the usual evaluation protocols: 1 = S9/S11 all cameras, 2 = frontal camera."""
    subj = np.isin(np.asarray(subjects, dtype=object), ["S9", "S11"])
    if protocol == 1:
        return subj
    if protocol == 2:
        return subj & (np.asarray(cameras, dtype=object) == FRONTAL_CAMERA)
    raise ValueError(f"Human3.6M protocol must be 1 or 2, got {protocol}")


def read_cdf_pose(path: Path, width: int) -> np.ndarray:
    """The ``Pose`` variable of an official .cdf as (N, 32, width)."""
    import cdflib

    try:
        pose = np.asarray(cdflib.CDF(str(path)).varget("Pose"), np.float64)
    except Exception as e:  # cdflib raises bare OSError/ValueError/KeyError variants
        raise ReaderError(f"{path}: not a readable Human3.6M .cdf with a 'Pose' variable ({e})"
                          ) from e
    pose = pose.reshape(-1, pose.shape[-1]) if pose.ndim >= 2 else pose[None]
    if pose.shape[-1] != 32 * width:
        raise ReaderError(f"{path}: field 'Pose' has {pose.shape[-1]} values per frame, expected "
                          f"{32 * width} (32 joints x {width}); {HINT}")
    return pose.reshape(len(pose), 32, width)


def iter_video(path: Path, frames: np.ndarray) -> Iterator[tuple[int, np.ndarray | None]]:
    """Decode the requested frame indices (sorted) sequentially, skipping the others cheaply;
    yields (index, RGB or None where the video ends early)."""
    cap = cv2.VideoCapture(str(path))
    try:
        pos, wanted = 0, iter(frames)
        target = next(wanted, None)
        while target is not None:
            ok = cap.grab()
            if not ok:
                break
            if pos == target:
                ok, bgr = cap.retrieve()
                yield target, (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None)
                target = next(wanted, None)
            pos += 1
        while target is not None:
            yield target, None
            target = next(wanted, None)
    finally:
        cap.release()


def sequences(root: Path, subjects: Sequence[str], cameras: Sequence[str] | None
              ) -> list[tuple[str, str, str, Path]]:
    """(subject, action, camera, cdf path) of every D3_Positions_mono file, sorted."""
    out = []
    for subject in subjects:
        folder = root / subject / "MyPoseFeatures" / "D3_Positions_mono"
        if not folder.is_dir():
            log.warning("Human3.6M: %s absent; %s", folder, HINT)
            continue
        for cdf in sorted(folder.glob("*.cdf")):
            action, _, cam = cdf.stem.rpartition(".")
            if cameras is None or cam in cameras:
                out.append((subject, action, cam, cdf))
    if not out:
        raise ReaderError(f"no D3_Positions_mono/*.cdf for {list(subjects)} under {root}; {HINT}")
    return out


def read_h36m(root: str | os.PathLike, split: str, cameras_path: str | os.PathLike,
              every_nth: int = 5, stats: dict[str, float] | None = None
              ) -> Iterator[RawSample | Skip]:
    """Samples of ``split`` (see module doc), one per kept frame and camera.

    The 2D keypoints are the 3D joints projected with the calibrated camera (distortion
    included); where the D2_Positions file exists its largest disagreement with that projection
    is recorded in ``stats['max_2d_disagreement_px']``.
    """
    if split not in SPLITS:
        raise ValueError(f"Human3.6M split must be one of {sorted(SPLITS)}, got {split!r}")
    root = Path(root)
    cams = load_camera_pkl(cameras_path)
    subjects, cam_filter = SPLITS[split]
    stats = stats if stats is not None else {}
    stats.setdefault("max_2d_disagreement_px", 0.0)
    for subject, action, cam_id, cdf in sequences(root, subjects, cam_filter):
        name = f"{subject}_{action.replace(' ', '_')}.{cam_id}"
        cam = cams.get((subject, cam_id))
        if cam is None:
            yield Skip("no camera parameters", f"{name}: ({subject}, {cam_id}) not in camera file")
            continue
        try:
            joints = read_cdf_pose(cdf, 3) / 1000.0  # mm -> m, camera frame
        except ReaderError as e:
            yield Skip("unreadable pose file", str(e))
            continue
        uv = project_h36m(joints, cam["f"], cam["c"], cam.get("k"), cam.get("p"))
        d2 = root / subject / "MyPoseFeatures" / "D2_Positions" / cdf.name
        if d2.is_file():
            try:
                stored = read_cdf_pose(d2, 2)
                n = min(len(stored), len(uv))
                err = np.abs(stored[:n, _EVAL32] - uv[:n, _EVAL32]).max() if n else 0.0
                stats["max_2d_disagreement_px"] = max(stats["max_2d_disagreement_px"], float(err))
            except ReaderError as e:
                log.warning("%s", e)
        video = root / subject / "Videos" / f"{cdf.stem}.mp4"
        if not video.is_file():
            yield Skip("missing video", str(video))
            continue
        K, Rt = camera_matrices(cam)
        ones = np.ones((32, 1), np.float32)
        frames = np.arange(0, len(joints), max(1, int(every_nth)))
        for f, image in iter_video(video, frames):
            if image is None:
                yield Skip("video frame missing", f"{video} frame {f}")
                continue
            kp2 = to_superset(np.concatenate([uv[f], ones], 1).astype(np.float32), "h36m32")
            kp3 = to_superset(np.concatenate([joints[f], ones], 1).astype(np.float32), "h36m32")
            yield RawSample(
                keypoints=kp2, visible=np.zeros(len(kp2), np.uint8), center=None, size=0.0,
                image_name=f"{name}_{f + 1:06d}.jpg", image=image, subject=subject,
                sequence=f"{subject}_{action.replace(' ', '_')}", camera=cam_id, frame=int(f),
                optional={"keypoints_3d": kp3, "cam_K": K, "cam_Rt": Rt},
            )


def convert_h36m(
    root: str | os.PathLike, out_path: str | os.PathLike, split: str = "train",
    crop_res: int = 224, cameras_path: str | os.PathLike | None = None, every_nth: int = 5,
    limit: int | None = None, **_: Any,
) -> dict[str, Any]:
    """Write Human3.6M ``split`` crops with 3D joints and cameras; ``cameras_path`` defaults to
    ``<root>/cameras.pkl``."""
    cameras_path = Path(cameras_path) if cameras_path else Path(root) / "cameras.pkl"
    stats: dict[str, float] = {}
    protocol = {"train": 0, "test_p1": 1, "test_p2": 2}[split] if split in SPLITS else -1
    info = SplitInfo("h36m", split, SOURCE, LICENCE, extra_attrs={
        "every_nth": int(every_nth), "protocol": protocol,
        "protocols": "1: S9,S11 all cameras; 2: S9,S11 camera 60457274",
        "visibility": "unknown (mocap joints)", "units_3d": "metres, camera frame"})
    counts = write_split(read_h36m(root, split, cameras_path, every_nth, stats), out_path, info,
                         crop_res, limit=limit)
    counts.update(stats)
    return counts
