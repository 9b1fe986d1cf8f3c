"""A trained model on people in ordinary images: crop, regress, and place the mesh in the
image's camera (for overlays, exported meshes and keypoints in image pixels)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from texturepose.body import body_from_section
from texturepose.body.base import BodyModel, BodyModelError
from texturepose.geometry.cameras import SPIN_FOCAL_224, crop_focal, perspective_vertices
from texturepose.geometry.crops import crop_image
from texturepose.inference.inputs import InputError
from texturepose.inference.people import Person
from texturepose.inference.refine import refine_to_keypoints


@dataclass
class PersonMesh:
    """One person's prediction, in the camera of the whole image (OpenCV axes, metres)."""

    person: Person
    vertices: np.ndarray  # (V, 3) camera frame
    keypoints_3d: np.ndarray  # (K, 3) superset keypoints, camera frame
    keypoints_2d: np.ndarray  # (K, 2) image pixels, = K_image projection of keypoints_3d
    K: np.ndarray  # (3, 3) intrinsics of the whole image (focal from the model's convention)
    rotmats: np.ndarray  # (J, 3, 3) body-model joint rotations
    shape: np.ndarray  # (S,) body-model shape
    cam: np.ndarray  # (3,) the network's weak-perspective camera (s, tx, ty) of the crop


class PhotoPredictor:
    """Loads ``checkpoint`` (a ``final.pt``) and its body model once; :meth:`predict` runs it.

    ``root``: the project folder relative body-model paths in the checkpoint are taken from;
    ``refine_steps > 0``: fit each mesh to the keypoint head's own 2D output for that many Adam
    steps (:mod:`texturepose.inference.refine`; docs/real.md measures it)."""

    def __init__(self, checkpoint: str | os.PathLike, device: str = "cpu",
                 root: str | os.PathLike | None = None, refine_steps: int = 0):
        if refine_steps < 0:
            raise InputError(f"--refine-steps must be >= 0, got {refine_steps}")
        from texturepose.training.checkpoint import (
            ModelBodyMismatchError,
            check_model_body,
            load_model,
        )

        path = Path(checkpoint)
        if not path.is_file():
            raise InputError(f"{path}: no such checkpoint: train one (`bash scripts/run.sh` or "
                             "`dvc repro train`) or pass --checkpoint PATH to a final.pt")
        try:
            self.regressor, state = load_model(path, map_location=device)
        except (ValueError, KeyError, RuntimeError) as e:
            raise InputError(f"{path}: not a usable trained model: {e}") from None
        self.device = torch.device(device)
        try:
            self.body: BodyModel = body_from_section(
                state.get("body"), root, source=f"the model file {path}").to(self.device)
        except (BodyModelError, OSError, ValueError) as e:
            raise InputError(f"{path}: its body model {state.get('body')} cannot be built "
                             f"here: {e}") from None
        try:
            check_model_body(path, state, self.body)
        except ModelBodyMismatchError as e:
            raise InputError(str(e)) from None
        self.res = int(state["model_config"].get("res", 224))
        self.focal_224 = float(state.get("focal_224", SPIN_FOCAL_224))
        self.regressor.to(self.device).eval()
        self.refine_steps = refine_steps
        if refine_steps and self.regressor.keypoint_head is None:
            raise InputError(f"{path}: --refine-steps needs a model with a keypoint head "
                             "(model.head: keypoints); this one has none")

    @property
    def faces(self) -> np.ndarray:
        return self.body.faces.cpu().numpy()

    def predict(self, image: np.ndarray, people: list[Person]) -> list[PersonMesh]:
        """Meshes of ``people`` in the RGB ``image`` (H, W, 3) uint8, one batch."""
        return self.predict_many([(image, people)], batch_size=max(1, len(people)))[0]

    @torch.no_grad()
    def predict_many(self, items: list[tuple[np.ndarray, list[Person]]],
                     batch_size: int = 16) -> list[list[PersonMesh]]:
        """Meshes of every ``(image, people)`` item, the crops of all items run through the
        network ``batch_size`` at a time (batches of frames are several times faster per crop
        on a CPU than one at a time: docs/benchmarks.md)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        crops = [crop_image(image, p.center, p.size, self.res)
                 for image, people in items for p in people]
        flat = [p for _, people in items for p in people]
        meshes: list[PersonMesh] = []
        for start in range(0, len(crops), batch_size):
            meshes += self._regress(np.stack(crops[start:start + batch_size]),
                                    flat[start:start + batch_size])
        out, used = [], 0
        for _, people in items:
            out.append(meshes[used:used + len(people)])
            used += len(people)
        return out

    def _regress(self, crops: np.ndarray, people: list[Person]) -> list[PersonMesh]:
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        pred = self.regressor(x, keypoints_fn=self.body.keypoints)
        rot, shape, cam = pred["rotmats"].float(), pred["shape"].float(), pred["cam"].float()
        if self.refine_steps:
            rot, shape, cam = refine_to_keypoints(
                self.body, rot, shape, cam, pred["keypoints_2d"].float(),
                pred["keypoint_confidence"].float(), crop_focal(None, self.res, self.focal_224),
                self.res, steps=self.refine_steps)
        out = self.body(rot, shape)
        verts, k_crop, focal = perspective_vertices(out.vertices, cam, self.res,
                                                    None, self.focal_224)
        offset = verts[:, :1] - out.vertices[:, :1]  # the camera translation of each person
        kp3 = out.keypoints + offset
        results = []
        for i, p in enumerate(people):
            # Crop pixels are image pixels scaled by res/size about the crop's centre.
            f_img = float(k_crop[i, 0, 0]) * p.size / self.res
            k_img = np.array([[f_img, 0, p.center[0]], [0, f_img, p.center[1]], [0, 0, 1]],
                             np.float64)
            k3 = kp3[i].cpu().numpy().astype(np.float64)
            uvw = k3 @ k_img.T
            results.append(PersonMesh(
                person=p, vertices=verts[i].cpu().numpy(), keypoints_3d=k3.astype(np.float32),
                keypoints_2d=(uvw[:, :2] / uvw[:, 2:3]).astype(np.float32), K=k_img,
                rotmats=rot[i].cpu().numpy(), shape=shape[i].cpu().numpy(),
                cam=cam[i].cpu().numpy()))
        return results
