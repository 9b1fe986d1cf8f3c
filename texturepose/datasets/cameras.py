"""Camera models of the calibrated datasets: Human3.6M's radial + tangential distortion, and the
camera files (mmpose's ``cameras.pkl``: R, T, f, c, k, p per (subject, camera id))."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from texturepose.datasets.common import ReaderError


def project_h36m(points: np.ndarray, f: np.ndarray, c: np.ndarray, k: np.ndarray | None = None,
                 p: np.ndarray | None = None) -> np.ndarray:
    """Project camera-frame points ``(..., 3)`` to pixels with Human3.6M's own distortion model
    (its ``ProjectPointRadial.m``: radial k1..k3, tangential p1, p2)."""
    xy = points[..., :2] / points[..., 2:3]
    if k is not None and p is not None:
        k, p = np.ravel(k), np.ravel(p)
        r2 = (xy**2).sum(-1, keepdims=True)
        radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
        tan = p[0] * xy[..., 1:2] + p[1] * xy[..., 0:1]
        xy = xy * (radial + tan) + r2 * p[::-1]
    return xy * np.ravel(f) + np.ravel(c)


def load_camera_pkl(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, Any]]:
    """mmpose's ``cameras.pkl`` (written by its ``preprocess_h36m.py`` from Human3.6M's
    metadata): keys (subject, camera id); ``R``, ``T`` (camera centre, metres) with
    ``X_cam = R.T (X_world - T)``; ``f``, ``c`` pixels; ``k``, ``p`` distortion."""
    path = Path(path)
    if not path.is_file():
        raise ReaderError(
            f"camera file {path} not found; create it with mmpose's "
            "tools/dataset_converters/preprocess_h36m.py (metadata.xml -> cameras.pkl) "
            "and set its path in params.yaml"
        )
    try:
        with open(path, "rb") as fh:
            cams = pickle.load(fh)
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ReaderError(f"{path}: not a readable camera pickle ({e})") from e
    if not isinstance(cams, dict) or not cams:
        raise ReaderError(f"{path}: expected a dict keyed by (subject, camera id)")
    return cams


def camera_matrices(cam: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics K (3, 3) and world-to-camera extrinsics [R | t] (3, 4) of one camera entry."""
    f, c = np.ravel(cam["f"]), np.ravel(cam["c"])
    K = np.array([[f[0], 0, c[0]], [0, f[1], c[1]], [0, 0, 1]], np.float32)
    R = np.asarray(cam["R"], np.float64).T  # the pickle's R is camera-to-world
    t = -R @ np.ravel(cam["T"])
    return K, np.concatenate([R, t[:, None]], 1).astype(np.float32)
