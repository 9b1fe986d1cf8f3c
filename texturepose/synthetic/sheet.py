"""A contact sheet: a grid of dataset crops with their keypoints drawn (green = visible, red =
self-occluded), for reports and the README."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.files import atomic_path
from texturepose.geometry.crops import to_crop
from texturepose.keypoints import INDEX, SKELETON


def draw_keypoints(image: np.ndarray, kp_crop: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Skeleton and keypoints ``(K, 3)`` (crop pixels + confidence) over an RGB crop."""
    out = image.copy()
    scale = max(1, round(image.shape[0] / 128))
    for a, b in SKELETON:
        ia, ib = INDEX[a], INDEX[b]
        if kp_crop[ia, 2] > 0 and kp_crop[ib, 2] > 0:
            pa = tuple(int(round(v)) for v in kp_crop[ia, :2])
            pb = tuple(int(round(v)) for v in kp_crop[ib, :2])
            cv2.line(out, pa, pb, (255, 255, 255), scale, cv2.LINE_AA)
    for k in np.flatnonzero(kp_crop[:, 2] > 0):
        colour = (40, 220, 40) if visible[k] else (230, 40, 40)
        p = tuple(int(round(v)) for v in kp_crop[k, :2])
        cv2.circle(out, p, scale + 1, colour, -1, cv2.LINE_AA)
    return out


def contact_sheet(path: str | os.PathLike, out_path: str | os.PathLike, num: int = 12,
                  columns: int = 6, tile: int = 160, quality: int = 85) -> Path:
    """Write a JPEG grid of ``num`` samples spread over the file (written atomically)."""
    ds = Hdf5Dataset(path)
    idx = np.linspace(0, len(ds) - 1, min(num, len(ds))).round().astype(int)
    tiles = []
    for i in idx:
        s = ds[int(i)]
        img = cv2.resize(s["image"], (tile, tile), interpolation=cv2.INTER_AREA)
        kp = s["keypoints_2d"].copy()
        kp[:, :2] = to_crop(kp[:, :2], s["crop_center"], float(s["crop_size"]), tile)
        img = draw_keypoints(img, kp, s["visible"])
        label = f"{s['subject']} {s['camera']} f{int(s['frame'])}"
        cv2.putText(img, label, (3, tile - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255),
                    1, cv2.LINE_AA)
        tiles.append(img)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)]
    sheet = np.concatenate(rows, axis=0)
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality]):
            raise OSError(f"could not write the contact sheet {out_path}")
    return out_path
