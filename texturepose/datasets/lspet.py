"""LSP extended (LSPET, Johnson & Everingham 2011): ``images/im00001.jpg`` ... and ``joints.mat``.

``joints`` is 14 x 3 x 10000 (x, y, flag); here the flag is 1 where the joint is *visible* and 0
where it is not annotated (those points sit at arbitrary positions, mostly outside the image), the
opposite convention to LSP. All 10000 images are training images.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from texturepose.datasets.common import (
    RawSample,
    Skip,
    SplitInfo,
    check_shape,
    load_mat,
    write_split,
)
from texturepose.keypoints import to_superset

HINT = (
    "download lspet_dataset.zip from http://sam.johnson.io/research/lspet.html and unpack it so "
    "that joints.mat and images/ are in the dataset root"
)
SOURCE = "LSP extended, http://sam.johnson.io/research/lspet.html"
LICENCE = "research use only (Johnson & Everingham 2011)"


def load_lspet_joints(root: Path) -> np.ndarray:
    """(10000, 14, 3) native joints: x, y, visibility flag (1 = visible, 0 = not annotated)."""
    path = Path(root) / "joints.mat"
    joints = check_shape(load_mat(path, HINT).get("joints"), (14, 3, None), path, "joints", HINT)
    return np.transpose(joints, (2, 0, 1)).astype(np.float32)


def read_lspet(root: str | os.PathLike, split: str = "train", skip_missing: bool = True
               ) -> Iterator[RawSample | Skip]:
    """One sample per image. Images absent from ``images/`` are counted as missing (the shared
    data holds only the first 400 of 10000); ``skip_missing=False`` stops at the first gap."""
    if split != "train":
        raise ValueError(f"LSPET has only a 'train' split, got {split!r}")
    root = Path(root)
    joints = load_lspet_joints(root)
    for i in range(len(joints)):
        name = f"im{i + 1:05d}.jpg"
        path = root / "images" / name
        if not skip_missing and not path.is_file():
            return
        native = joints[i]
        flag = (native[:, 2] > 0).astype(np.float32)
        kp = np.concatenate([native[:, :2], flag[:, None]], 1)
        yield RawSample(
            keypoints=to_superset(kp, "lspet14"),
            visible=to_superset(flag[:, None].astype(np.uint8), "lspet14")[:, 0],
            center=None,
            size=0.0,
            image_name=name,
            image_path=path,
            sequence=f"im{i + 1:05d}",
            frame=i + 1,
        )


def convert_lspet(
    root: str | os.PathLike, out_path: str | os.PathLike, split: str = "train",
    crop_res: int = 224, limit: int | None = None, only_present: bool = False, **_: Any,
) -> dict[str, Any]:
    """Write LSPET crops. ``only_present`` stops at the first absent image instead of counting
    every absent one as skipped (for partial copies such as the shared 400-image subset)."""
    info = SplitInfo("lspet", split, SOURCE, LICENCE, extra_attrs={"visibility_flag": "1=visible"})
    return write_split(read_lspet(root, split, skip_missing=not only_present), out_path, info,
                       crop_res, limit=limit)
