"""MPI-INF-3DHP (Mehta et al. 2017) in its original layout.

Training set: ``S<s>/Seq<q>/annot.mat`` (cells ``annot2`` (N, 56) and ``annot3`` (N, 84) per
camera, 28 joints, mm, camera frame), ``camera.calibration`` and ``imageSequence/video_<c>.avi``.
Test set: ``mpi_inf_3dhp_test_set/TS<k>/annot_data.mat`` (MATLAB v7.3: ``annot2`` (N, 1, 17, 2),
``annot3`` (N, 1, 17, 3), ``valid_frame``) and ``imageSequence/img_<frame:06d>.jpg``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from texturepose.datasets.cameras import load_camera_pkl
from texturepose.datasets.common import (
    RawSample,
    ReaderError,
    Skip,
    SplitInfo,
    load_mat,
    write_split,
)
from texturepose.datasets.h36m import iter_video
from texturepose.keypoints import MPI3DHP17, MPI3DHP28, NUM_KEYPOINTS, names_to_superset

HINT = (
    "download MPI-INF-3DHP with the dataset's get_dataset.sh / get_testset.sh "
    "(https://vcai.mpi-inf.mpg.de/3dhp-dataset, licence agreement) into the dataset root"
)
SOURCE = "MPI-INF-3DHP, https://vcai.mpi-inf.mpg.de/3dhp-dataset"
LICENCE = "MPI-INF-3DHP licence: non-commercial research only"
#: Cameras at chest height used for training by SPIN/VIBE.
TRAIN_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)


def parse_calibration(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``camera.calibration`` -> {camera: (K (3, 3), world-to-camera [R | t] (3, 4), metres)}."""
    if not path.is_file():
        raise ReaderError(f"camera calibration {path} not found; {HINT}")
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    cam = None
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "name":
            cam = int(parts[1])
        elif parts[0] in ("intrinsic", "extrinsic") and cam is not None:
            m = np.array(parts[1:17], np.float64).reshape(4, 4)
            K, Rt = out.get(cam, (None, None))
            if parts[0] == "intrinsic":
                K = m[:3, :3].astype(np.float32)
            else:
                Rt = np.concatenate([m[:3, :3], m[:3, 3:] / 1000.0], 1).astype(np.float32)
            out[cam] = (K, Rt)
    return out


def _cell(x: Any, i: int) -> np.ndarray:
    """Element i of a MATLAB cell read by scipy (an object array of shape (C, 1) or (1, C))."""
    return np.asarray(np.asarray(x, dtype=object).ravel()[i], np.float64)


def read_3dhp_train(root: str | os.PathLike, subjects: Sequence[int] = range(1, 9),
                    cameras: Sequence[int] = TRAIN_CAMERAS, every_nth: int = 10
                    ) -> Iterator[RawSample | Skip]:
    root = Path(root)
    found = False
    for s in subjects:
        for q in (1, 2):
            seq_dir = root / f"S{s}" / f"Seq{q}"
            if not (seq_dir / "annot.mat").is_file():
                continue
            found = True
            mat = load_mat(seq_dir / "annot.mat", HINT)
            if "annot2" not in mat or "annot3" not in mat:
                raise ReaderError(f"{seq_dir / 'annot.mat'}: no annot2/annot3 cells; {HINT}")
            calib = parse_calibration(seq_dir / "camera.calibration")
            for c in cameras:
                a2 = _cell(mat["annot2"], c).reshape(-1, 28, 2)
                a3 = _cell(mat["annot3"], c).reshape(-1, 28, 3) / 1000.0
                frames = np.arange(0, len(a2), max(1, int(every_nth)))
                video = seq_dir / "imageSequence" / f"video_{c}.avi"
                if not video.is_file():
                    yield Skip("missing video", str(video))
                    continue
                K, Rt = calib.get(c, (None, None))
                ones = np.ones((28, 1), np.float32)
                for f, image in iter_video(video, frames):
                    if image is None:
                        yield Skip("video frame missing", f"{video} frame {f}")
                        continue
                    opt: dict[str, Any] = {"keypoints_3d": names_to_superset(
                        np.concatenate([a3[f], ones], 1).astype(np.float32), MPI3DHP28)}
                    if K is not None and Rt is not None:
                        opt.update(cam_K=K, cam_Rt=Rt)
                    yield RawSample(
                        keypoints=names_to_superset(
                            np.concatenate([a2[f], ones], 1).astype(np.float32), MPI3DHP28),
                        visible=np.zeros(NUM_KEYPOINTS, np.uint8), center=None, size=0.0,
                        image_name=f"S{s}_Seq{q}_Cam{c}_{f + 1:06d}.jpg", image=image,
                        subject=f"S{s}", sequence=f"S{s}_Seq{q}", camera=str(c), frame=int(f),
                        optional=opt,
                    )
    if not found:
        raise ReaderError(f"no S<s>/Seq<q>/annot.mat under {root}; {HINT}")


def read_3dhp_test(root: str | os.PathLike, cameras_path: str | os.PathLike | None = None,
                   every_nth: int = 1) -> Iterator[RawSample | Skip]:
    """Valid frames of TS1-TS6 (``valid_frame == 1``), 17 joints."""
    root = Path(root)
    base = root / "mpi_inf_3dhp_test_set" if (root / "mpi_inf_3dhp_test_set").is_dir() else root
    seqs = sorted((p for p in base.glob("TS*") if re.fullmatch(r"TS\d+", p.name)),
                  key=lambda p: int(p.name[2:]))
    if not seqs:
        raise ReaderError(f"no TS<k>/ folders under {base}; {HINT}")
    cams = load_camera_pkl(cameras_path) if cameras_path else {}
    for seq in seqs:
        mat = load_mat(seq / "annot_data.mat", HINT)
        for key in ("annot2", "annot3", "valid_frame"):
            if key not in mat:
                raise ReaderError(f"{seq / 'annot_data.mat'}: no '{key}' field; {HINT}")
        a2 = np.asarray(mat["annot2"], np.float64).reshape(-1, 17, 2)
        a3 = np.asarray(mat["annot3"], np.float64).reshape(-1, 17, 3) / 1000.0
        valid = np.asarray(mat["valid_frame"]).ravel() > 0
        if not len(a2) == len(a3) == len(valid):
            raise ReaderError(f"{seq / 'annot_data.mat'}: annot2 {len(a2)}, annot3 {len(a3)} and "
                              f"valid_frame {len(valid)} frames differ; {HINT}")
        opt_cam: dict[str, Any] = {}
        if seq.name in cams:
            f, c = np.ravel(cams[seq.name]["f"]), np.ravel(cams[seq.name]["c"])
            opt_cam["cam_K"] = np.array([[f[0], 0, c[0]], [0, f[1], c[1]], [0, 0, 1]], np.float32)
            opt_cam["cam_Rt"] = np.eye(3, 4, dtype=np.float32)  # annot3 is camera-frame already
        ones = np.ones((17, 1), np.float32)
        for fr in range(0, len(a2), max(1, int(every_nth))):
            if not valid[fr]:
                yield Skip("invalid frame (valid_frame = 0)", f"{seq.name} frame {fr}")
                continue
            name = f"img_{fr + 1:06d}.jpg"
            yield RawSample(
                keypoints=names_to_superset(
                    np.concatenate([a2[fr], ones], 1).astype(np.float32), MPI3DHP17),
                visible=np.zeros(NUM_KEYPOINTS, np.uint8), center=None, size=0.0,
                image_name=f"{seq.name}/{name}", image_path=seq / "imageSequence" / name,
                subject=seq.name, sequence=seq.name, camera="0", frame=fr,
                optional={"keypoints_3d": names_to_superset(
                    np.concatenate([a3[fr], ones], 1).astype(np.float32), MPI3DHP17), **opt_cam},
            )


def convert_mpi_inf_3dhp(
    root: str | os.PathLike, out_path: str | os.PathLike, split: str = "train",
    crop_res: int = 224, every_nth: int = 10, cameras: Sequence[int] = TRAIN_CAMERAS,
    cameras_path: str | None = None, limit: int | None = None, **_: Any,
) -> dict[str, Any]:
    """Write the training videos' frames (``split='train'``) or the test set (``'test'``)."""
    if split == "train":
        samples = read_3dhp_train(root, cameras=cameras, every_nth=every_nth)
    elif split == "test":
        samples = read_3dhp_test(root, cameras_path, every_nth=1)
    else:
        raise ValueError(f"MPI-INF-3DHP split must be 'train' or 'test', got {split!r}")
    info = SplitInfo("mpi_inf_3dhp", split, SOURCE, LICENCE, extra_attrs={
        "every_nth": int(every_nth), "visibility": "unknown", "units_3d": "metres, camera frame"})
    return write_split(samples, out_path, info, crop_res, limit=limit)
