"""Run a trained regressor over an HDF5 evaluation set (crops as stored, no augmentation)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from texturepose.body.base import BodyModel
from texturepose.data.crops import from_crop
from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.geometry.cameras import perspective_vertices
from texturepose.losses.keypoints import normalized_to_pixels, weak_perspective_project

log = logging.getLogger(__name__)

@dataclass
class Predictions:
    keypoints_3d: np.ndarray  # (N, K, 3) body frame rotated by the predicted global orientation
    keypoints_2d: np.ndarray  # (N, K, 2) original-image pixels (weak-perspective projection)
    rotmats: np.ndarray  # (N, J, 3, 3)
    shape: np.ndarray  # (N, S)
    cam: np.ndarray  # (N, 3) weak perspective (s, tx, ty)


def load_crop(sample: dict, res: int) -> np.ndarray:
    """The stored RGB crop resized to the model's input resolution, float32 in [0, 1], CHW."""
    img = sample["image"]
    if img.shape[0] != res:
        interp = cv2.INTER_AREA if img.shape[0] > res else cv2.INTER_LINEAR
        img = cv2.resize(img, (res, res), interpolation=interp)
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255.0


@torch.no_grad()
def predict_dataset(
    regressor: torch.nn.Module,
    body: BodyModel,
    dataset: Hdf5Dataset,
    res: int,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    limit: int | None = None,
) -> Predictions:
    """Predictions for every sample of ``dataset`` (or the first ``limit``)."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    crop_res = int(dataset.attrs["crop_res"])
    regressor = regressor.to(device).eval()
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("k3", "k2", "r", "s", "c")}
    for start in tqdm(range(0, n, batch_size), desc=f"predict {dataset.path.name}", leave=False):
        samples = [dataset[i] for i in range(start, min(n, start + batch_size))]
        images = torch.from_numpy(np.stack([load_crop(s, res) for s in samples])).to(device)
        pred = regressor(images)
        kp = body(pred["rotmats"].float(), pred["shape"].float()).keypoints
        xy = normalized_to_pixels(weak_perspective_project(kp, pred["cam"].float()), crop_res)
        xy = xy.cpu().numpy().astype(np.float64)
        for i, s in enumerate(samples):
            xy[i] = from_crop(xy[i], s["crop_center"], float(s["crop_size"]), crop_res)
        out["k3"].append(kp.cpu().numpy())
        out["k2"].append(xy.astype(np.float32))
        out["r"].append(pred["rotmats"].cpu().numpy())
        out["s"].append(pred["shape"].cpu().numpy())
        out["c"].append(pred["cam"].cpu().numpy())
    return Predictions(*(np.concatenate(out[k]) for k in ("k3", "k2", "r", "s", "c")))


@torch.no_grad()
def camera_vertices(
    body: BodyModel, rotmats: np.ndarray, shape: np.ndarray, cam: np.ndarray, res: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices in SPIN's perspective camera of a ``res`` crop, and its intrinsics, for overlays."""
    r = torch.as_tensor(rotmats, dtype=torch.float32)
    s = torch.as_tensor(shape, dtype=torch.float32)
    c = torch.as_tensor(cam, dtype=torch.float32)
    vertices, k, _ = perspective_vertices(body(r, s).vertices, c, res)
    return vertices, k
