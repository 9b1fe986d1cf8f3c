"""SPIN-style npz annotation files (SPIN's ``dataset_extras/*.npz`` and mmpose's samples):
``imgname``, ``center``, ``scale`` (box side / 200), ``part`` (J, 3) 2D with confidence, and
optionally ``S`` (J, 4) camera-frame 3D joints in metres with confidence, ``pose`` (72,) SMPL
axis-angle, ``shape`` (10,) SMPL betas.

The joint order of ``part``/``S`` is SPIN's 24 (= the superset's first 24) or, for 17 joints,
Human3.6M's or MPI-INF-3DHP's 17 (``joint_order``).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from texturepose.datasets.cameras import camera_matrices, load_camera_pkl
from texturepose.datasets.common import (
    RawSample,
    ReaderError,
    Skip,
    SplitInfo,
    check_shape,
    require_file,
    write_split,
)
from texturepose.geometry.rotations import axis_angle_to_matrix
from texturepose.keypoints import MPI3DHP17, NATIVE_ORDERS, NUM_KEYPOINTS, SPIN24, names_to_superset

ORDERS: dict[str, tuple[str | None, ...]] = {
    "spin24": SPIN24,
    "h36m17": NATIVE_ORDERS["h36m17"],
    "mpi3dhp17": MPI3DHP17,
}
HINT = "expected a SPIN-style npz with imgname, center, scale, part (and S, pose, shape)"
# Human3.6M frame names: S1_Directions_1.54138969_000001.jpg
_H36M_NAME = re.compile(r"(S\d+)_(.+)\.(\d{8})_(\d+)\.\w+$")


def find_image(root: Path, imgname: str) -> Path:
    """Image path of an npz entry: ``root/imgname``, ``root/images/imgname``, or mmpose's
    Human3.6M layout ``root/S1/S1_Directions_1.54138969/imgname``."""
    cands = [root / imgname, root / "images" / imgname]
    m = _H36M_NAME.match(Path(imgname).name)
    if m:
        cands.append(root / m.group(1) / Path(imgname).name.rsplit("_", 1)[0] / imgname)
    return next((c for c in cands if c.is_file()), cands[0])


def load_spin_npz(path: Path) -> dict[str, np.ndarray]:
    require_file(path, "SPIN-style npz", HINT)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ReaderError(f"{path}: not a readable npz ({e}); {HINT}") from e
    for key in ("imgname", "center", "scale", "part"):
        if key not in data:
            raise ReaderError(f"{path}: no '{key}' array (has {sorted(data)}); {HINT}")
    n = len(data["imgname"])
    check_shape(data["center"], (n, 2), path, "center", HINT)
    check_shape(data["scale"], (n,), path, "scale", HINT)
    check_shape(data["part"], (n, None, 3), path, "part", HINT)
    if "S" in data:
        check_shape(data["S"], (n, data["part"].shape[1], 4), path, "S", HINT)
    if "pose" in data:
        check_shape(data["pose"], (n, 72), path, "pose", HINT)
    if "shape" in data:
        check_shape(data["shape"], (n, 10), path, "shape", HINT)
    return data


def read_spin_npz(npz_path: str | os.PathLike, image_root: str | os.PathLike,
                  joint_order: str = "auto", cameras_path: str | os.PathLike | None = None
                  ) -> Iterator[RawSample | Skip]:
    """One sample per npz entry. With ``cameras_path`` (mmpose's cameras.pkl) Human3.6M frame
    names also get their camera intrinsics/extrinsics."""
    import torch

    path, root = Path(npz_path), Path(image_root)
    d = load_spin_npz(path)
    j = d["part"].shape[1]
    if joint_order == "auto":
        joint_order = {24: "spin24", 17: "h36m17"}.get(j, "")
    if joint_order not in ORDERS or len(ORDERS[joint_order]) != j:
        raise ReaderError(f"{path}: 'part' has {j} joints; give joint_order among "
                          f"{sorted(ORDERS)} matching that count")
    names = ORDERS[joint_order]
    cams = load_camera_pkl(cameras_path) if cameras_path else {}
    rotmats = None
    if "pose" in d:
        aa = torch.as_tensor(d["pose"].reshape(-1, 24, 3), dtype=torch.float32)
        rotmats = axis_angle_to_matrix(aa).numpy()
    for i, imgname in enumerate(d["imgname"]):
        imgname = str(imgname)
        part = d["part"][i].astype(np.float32)
        opt: dict[str, Any] = {}
        if "S" in d:
            opt["keypoints_3d"] = names_to_superset(d["S"][i].astype(np.float32), names)
        if rotmats is not None and np.isfinite(d["pose"][i]).all():
            opt["body_pose"] = rotmats[i]
            opt["body_shape"] = d["shape"][i].astype(np.float32)
        m = _H36M_NAME.match(Path(imgname).name)
        subject, sequence, camera, frame = "", Path(imgname).stem, "", i
        if m:
            subject, sequence, camera, frame = m.group(1), f"{m.group(1)}_{m.group(2)}", \
                m.group(3), int(m.group(4)) - 1
            if (subject, camera) in cams:
                opt["cam_K"], opt["cam_Rt"] = camera_matrices(cams[(subject, camera)])
        scale = float(d["scale"][i])
        if not (np.isfinite(scale) and scale > 0):
            yield Skip("invalid person scale", f"{path} entry {i}: {scale}")
            continue
        yield RawSample(
            keypoints=names_to_superset(part, names),
            visible=np.zeros(NUM_KEYPOINTS, np.uint8),
            center=d["center"][i].astype(np.float32), size=200.0 * scale, image_name=imgname,
            image_path=find_image(root, imgname), subject=subject, sequence=sequence,
            camera=camera, frame=frame, optional=opt,
        )


def convert_spin_npz(
    root: str | os.PathLike, out_path: str | os.PathLike, split: str = "train",
    crop_res: int = 224, npz_path: str | None = None, joint_order: str = "auto",
    cameras_path: str | None = None, dataset: str = "spin_npz", limit: int | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Write the entries of ``npz_path`` (default ``<root>/<split>.npz``) with images under
    ``root``. ``dataset`` names the source in the file (e.g. ``h36m``)."""
    npz = Path(npz_path) if npz_path else Path(root) / f"{split}.npz"
    info = SplitInfo(dataset, split, f"SPIN-style npz {npz.name}",
                     "that of the underlying dataset (see its terms)",
                     body_model="smpl", extra_attrs={"joint_order": joint_order,
                                                     "visibility": "unknown (npz has none)"})
    return write_split(read_spin_npz(npz, root, joint_order, cameras_path), out_path, info,
                       crop_res, limit=limit, min_keypoints=1)


def convert_h36m_spin(root: str | os.PathLike, out_path: str | os.PathLike, split: str = "train",
                      crop_res: int = 224, **options: Any) -> dict[str, Any]:
    """SPIN's Human3.6M npz (e.g. ``h36m_train.npz``): :func:`convert_spin_npz` named ``h36m``."""
    options.setdefault("dataset", "h36m")
    return convert_spin_npz(root, out_path, split, crop_res, **options)
