"""MoSh / AMASS-style motion-capture npz of SMPL poses, for the adversarial pose prior.

Two layouts are read:

- AMASS (``poses`` (N, 72|156|165) axis-angle, ``betas``, ``trans``, ``mocap_framerate`` or
  ``mocap_frame_rate``, ``gender``);
- SPIN/HMR's MoSh files and mmpose's sample (``pose`` (N, 72), ``shape`` (N, 10), no frame rate).

Poses stay in SMPL axis-angle; the first 72 values are the 24 SMPL joints (global orient first).
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from texturepose.datasets.common import ReaderError

log = logging.getLogger(__name__)

HINT = (
    "expected an AMASS npz (poses, betas, trans, mocap_framerate) or a MoSh/SPIN npz (pose, "
    "shape); AMASS is at https://amass.is.tue.mpg.de (registration), HMR's MoSh'ed CMU/H3.6M "
    "poses come with the HMR/SPIN data downloads"
)


def read_amass_npz(path: str | os.PathLike) -> dict[str, Any]:
    """Read one mocap npz.

    Returns ``poses`` (N, P>=72) float32 axis-angle, ``betas`` (N, B) float32 (per frame,
    repeated when the file stores one vector), ``trans`` (N, 3) or None, ``fps`` float or None,
    ``gender`` str or None, ``layout`` ('amass' | 'mosh') and ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise ReaderError(f"mocap file {path} does not exist; {HINT}")
    try:
        data = np.load(path, allow_pickle=False)
        files = set(data.files)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise ReaderError(f"{path}: not a readable npz ({e}); {HINT}") from e
    if "poses" in files:
        layout, poses = "amass", data["poses"]
        betas = data["betas"] if "betas" in files else None
    elif "pose" in files:
        layout, poses = "mosh", data["pose"]
        betas = data["shape"] if "shape" in files else None
    else:
        raise ReaderError(f"{path}: no 'poses' or 'pose' array (has {sorted(files)}); {HINT}")
    poses = np.asarray(poses, np.float32)
    if poses.ndim != 2 or poses.shape[1] < 72:
        raise ReaderError(
            f"{path}: field '{'poses' if layout == 'amass' else 'pose'}' has shape {poses.shape}, "
            f"expected (N, >=72) SMPL axis-angle; {HINT}"
        )
    n = len(poses)
    if betas is None:
        betas = np.zeros((n, 10), np.float32)
    betas = np.asarray(betas, np.float32)
    if betas.ndim == 1:
        betas = np.broadcast_to(betas, (n, len(betas))).copy()
    if betas.shape[0] != n:
        raise ReaderError(f"{path}: betas {betas.shape} do not match {n} poses; {HINT}")
    fps = None
    for key in ("mocap_framerate", "mocap_frame_rate"):
        if key in files:
            fps = float(data[key])
    trans = np.asarray(data["trans"], np.float32) if "trans" in files else None
    gender = str(data["gender"]) if "gender" in files else None
    bad = ~np.isfinite(poses).all(1)
    if bad.any():
        raise ReaderError(f"{path}: {int(bad.sum())} of {n} poses contain NaN/inf; {HINT}")
    return {"poses": poses, "betas": betas, "trans": trans, "fps": fps, "gender": gender,
            "layout": layout, "path": str(path)}


def find_mocap_files(root: str | os.PathLike) -> list[Path]:
    """All ``*.npz`` under ``root`` (AMASS nests subject folders), sorted for determinism."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ReaderError(f"mocap folder {root} does not exist; {HINT}")
    return sorted(p for p in root.rglob("*.npz") if p.name != "shape.npz")
