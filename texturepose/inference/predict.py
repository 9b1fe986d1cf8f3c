"""Run a trained regressor over an HDF5 evaluation set (crops as stored, no augmentation)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from tqdm import tqdm

from texturepose.body.base import BodyModel
from texturepose.data.dataset import crop_focal_length
from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.geometry.cameras import (
    SPIN_FOCAL_224,
    crop_focal,
    crop_perspective_project,
    perspective_vertices,
)
from texturepose.geometry.crops import from_crop
from texturepose.inference.refine import refine_to_keypoints
from texturepose.losses.keypoints import normalized_to_pixels

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    keypoints_3d: np.ndarray  # (N, K, 3) body frame rotated by the predicted global orientation
    keypoints_2d: np.ndarray  # (N, K, 2) original-image pixels (perspective, see ``focal``)
    rotmats: np.ndarray  # (N, J, 3, 3)
    shape: np.ndarray  # (N, S)
    cam: np.ndarray  # (N, 3) weak perspective (s, tx, ty)
    focal: np.ndarray  # (N,) focal length (pixels of the model's input crop) projected with
    # (N, K, 2) original-image pixels: the keypoint head's own output (None without a head);
    # its PCK beside the mesh's says whether the head or the head-to-mesh step limits the 2D fit
    head_keypoints_2d: np.ndarray | None = None


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
    focal_224: float = SPIN_FOCAL_224,
    refine_steps: int = 0,
    calibrated: bool = True,
) -> Predictions:
    """Predictions for every sample of ``dataset`` (or the first ``limit``). Keypoints are
    projected with each crop's perspective camera: its calibrated focal length where the file
    has one, else ``focal_224`` at 224 px (SPIN), as in training (``calibrated=False``, for a
    model trained with ``loss.camera: spin``: ``focal_224`` for every crop). ``refine_steps > 0``
    fits the mesh to the keypoint head's output (:mod:`texturepose.inference.refine`)."""
    if refine_steps > 0 and getattr(regressor, "keypoint_head", None) is None:
        raise ValueError("refine_steps needs a model with a keypoint head (model.head: "
                         "keypoints): it fits the mesh to that head's output")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    crop_res = int(dataset.attrs["crop_res"])
    regressor = regressor.to(device).eval()
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("k3", "k2", "r", "s", "c", "f", "h")}
    for start in tqdm(range(0, n, batch_size), desc=f"predict {dataset.path.name}", leave=False):
        samples = [dataset[i] for i in range(start, min(n, start + batch_size))]
        images = torch.from_numpy(np.stack([load_crop(s, res) for s in samples])).to(device)
        pred = regressor(images, keypoints_fn=body.keypoints)
        known = torch.tensor([crop_focal_length(s, res) if calibrated else 0.0
                              for s in samples])
        focal = crop_focal(known, res, focal_224).to(images)
        if refine_steps > 0:
            pred["rotmats"], pred["shape"], pred["cam"] = refine_to_keypoints(
                body, pred["rotmats"], pred["shape"], pred["cam"], pred["keypoints_2d"],
                pred["keypoint_confidence"], focal, res, steps=refine_steps)
        kp = body.keypoints(pred["rotmats"].float(), pred["shape"].float())
        xy = crop_perspective_project(kp, pred["cam"].float(), focal, res)
        xy = _image_pixels(xy, samples, crop_res)
        if "keypoints_2d" in pred:
            head = _image_pixels(pred["keypoints_2d"].float(), samples, crop_res)
            out["h"].append(head.astype(np.float32))
        out["k3"].append(kp.cpu().numpy())
        out["k2"].append(xy.astype(np.float32))
        out["r"].append(pred["rotmats"].cpu().numpy())
        out["s"].append(pred["shape"].cpu().numpy())
        out["c"].append(pred["cam"].cpu().numpy())
        out["f"].append(focal.cpu().numpy())
    return Predictions(*(np.concatenate(out[k]) for k in ("k3", "k2", "r", "s", "c", "f")),
                       head_keypoints_2d=np.concatenate(out["h"]) if out["h"] else None)


def _image_pixels(xy: torch.Tensor, samples: list[dict], crop_res: int) -> np.ndarray:
    """``(B, K, 2)`` normalised crop coordinates -> original-image pixels of each sample."""
    px = normalized_to_pixels(xy, crop_res).cpu().numpy().astype(np.float64)
    for i, s in enumerate(samples):
        px[i] = from_crop(px[i], s["crop_center"], float(s["crop_size"]), crop_res)
    return px


@torch.no_grad()
def camera_vertices(
    body: BodyModel, rotmats: np.ndarray, shape: np.ndarray, cam: np.ndarray, res: int,
    focal: np.ndarray | float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices in the perspective camera of a ``res`` crop with focal ``focal`` (pixels; SPIN's
    convention when None), and its intrinsics ``(B, 3, 3)``, for overlays."""
    r = torch.as_tensor(rotmats, dtype=torch.float32)
    s = torch.as_tensor(shape, dtype=torch.float32)
    c = torch.as_tensor(cam, dtype=torch.float32)
    f = None if focal is None else torch.as_tensor(focal, dtype=torch.float32).reshape(-1)
    vertices, k, _ = perspective_vertices(body(r, s).vertices, c, res, f)
    return vertices, k
