"""Leeds Sports Pose (LSP, Johnson & Everingham 2010): ``images/im0001.jpg`` ... and ``joints.mat``.

``joints`` is 3 x 14 x 2000 (x, y, flag); in LSP the flag is 1 where the joint is *occluded* (the
opposite of LSPET). Every joint is annotated, occluded ones at their guessed place. Images
1-1000 are the training half, 1001-2000 the test half. The training half is also split into
``train_fit`` (1-900) and ``val`` (901-1000, its last 100 images): train on the first, validate
on the second, which is never trained on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from texturepose.datasets.common import (
    RawSample,
    SplitInfo,
    check_shape,
    load_mat,
    write_split,
)
from texturepose.keypoints import to_superset

HINT = (
    "download lsp_dataset.zip from http://sam.johnson.io/research/lsp.html and unpack it so "
    "that joints.mat and images/ are in the dataset root"
)
#: 0-based image indices per split; ``train_fit`` + ``val`` = ``train`` (held-out validation).
SPLITS = {
    "train": range(0, 1000),
    "test": range(1000, 2000),
    "train_fit": range(0, 900),
    "val": range(900, 1000),
}
SOURCE = "Leeds Sports Pose, http://sam.johnson.io/research/lsp.html"
LICENCE = "research use only (Johnson & Everingham 2010)"


def load_lsp_joints(root: Path) -> np.ndarray:
    """(2000, 14, 3) native joints: x, y, occlusion flag (1 = occluded)."""
    path = Path(root) / "joints.mat"
    joints = check_shape(load_mat(path, HINT).get("joints"), (3, 14, 2000), path, "joints", HINT)
    return np.transpose(joints, (2, 1, 0)).astype(np.float32)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"LSP split must be one of {sorted(SPLITS)}, got {split!r}")


def read_lsp(root: str | os.PathLike, split: str = "train") -> Iterator[RawSample]:
    """One sample per image of ``split`` (``train`` = 1-1000, ``test`` = 1001-2000,
    ``train_fit`` = 1-900, ``val`` = 901-1000)."""
    _check_split(split)
    root = Path(root)
    joints = load_lsp_joints(root)
    for i in SPLITS[split]:
        native = joints[i]
        kp = np.concatenate([native[:, :2], np.ones((14, 1), np.float32)], 1)
        visible = (native[:, 2] == 0).astype(np.uint8)  # LSP flag 1 = occluded
        name = f"im{i + 1:04d}.jpg"
        yield RawSample(
            keypoints=to_superset(kp, "lsp14"),
            visible=to_superset(visible[:, None], "lsp14")[:, 0],
            center=None,
            size=0.0,
            image_name=name,
            image_path=root / "images" / name,
            sequence=f"im{i + 1:04d}",
            frame=i + 1,
        )


def convert_lsp(
    root: str | os.PathLike, out_path: str | os.PathLike, split: str = "train",
    crop_res: int = 224, limit: int | None = None, **_: Any,
) -> dict[str, Any]:
    """Write LSP ``split`` crops to ``out_path``; returns counts (written, skipped by reason)."""
    _check_split(split)
    info = SplitInfo("lsp", split, SOURCE, LICENCE, extra_attrs={"visibility_flag": "1=occluded"})
    return write_split(read_lsp(root, split), out_path, info, crop_res,
                       total=len(SPLITS[split]), limit=limit)
