"""Fit the pose lifter (:class:`~texturepose.models.lifter.PoseLifter`) to random views of the
training mocap poses: no image, no crop's ground truth.

Each sample: a mocap pose (or its mirror), turned to a random heading and tilted by a random
camera pitch, a body shape from the model's population prior, seen by a perspective camera
4-5 m away (the embedded data's cameras), its 2D keypoints jittered and a few dropped (the
keypoint head's errors). The lifter's rotations are scored by the 3D keypoints they give the
mean-shape body (pelvis-centred, metres) and, weakly, by their 6D distance to the truth (the
keypoints do not fix a bone's twist).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from texturepose.body.base import BodyModel
from texturepose.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_rot6d,
    rot6d_to_matrix,
)
from texturepose.keypoints import INDEX
from texturepose.models.lifter import PoseLifter
from texturepose.models.mean_params import CAMERA_FACING

log = logging.getLogger(__name__)

PELVIS = INDEX["pelvis"]


@dataclass(frozen=True)
class LiftSettings:
    """How the lifter is fitted (``model.lift_*`` in params.yaml).

    Attributes:
        steps: Adam steps (cosine schedule).
        batch_size: views per step.
        lr: Adam's learning rate.
        noise: 2D jitter, as a fraction of the keypoints' RMS radius.
        drop: probability that a keypoint is dropped (weight 0).
        pitch_deg: range of the camera's pitch about the body (degrees).
        distance: range of the camera's distance (metres).
        twist_weight: weight of the 6D term beside the 3D keypoint error.
    """

    steps: int = 600
    batch_size: int = 256
    lr: float = 1e-3
    noise: float = 0.03
    drop: float = 0.05
    pitch_deg: tuple[float, float] = (-15.0, 20.0)
    distance: tuple[float, float] = (4.0, 5.0)
    twist_weight: float = 0.1


class MocapViews:
    """Random camera views of mocap poses: ``sample(b)`` -> 2D keypoints ``(b, K, 2)``, their
    weights ``(b, K)``, the rotations in the camera frame ``(b, J, 3, 3)`` and the
    pelvis-centred 3D keypoints ``(b, K, 3)``."""

    def __init__(self, body: BodyModel, rotmats: np.ndarray | torch.Tensor,
                 shapes: np.ndarray | torch.Tensor, settings: LiftSettings, seed: int = 0):
        r = torch.as_tensor(np.asarray(rotmats), dtype=torch.float32)
        if r.dim() != 4 or len(r) == 0:
            raise ValueError(f"mocap rotmats must be (N >= 1, J, 3, 3), got {tuple(r.shape)}")
        self.rotmats = torch.cat([r, body.flip_pose(r)])  # mirrored poses are poses too
        self.shapes = torch.as_tensor(np.asarray(shapes), dtype=torch.float32)
        self.body = body
        self.settings = settings
        self.gen = torch.Generator().manual_seed(seed)
        self.facing = torch.tensor(CAMERA_FACING, dtype=torch.float32)

    def _uniform(self, b: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=self.gen)

    @torch.no_grad()
    def sample(self, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        s, g = self.settings, self.gen
        r = self.rotmats[torch.randint(len(self.rotmats), (b,), generator=g)].clone()
        yaw = self._uniform(b, 0.0, 2 * math.pi)
        pitch = self._uniform(b, *s.pitch_deg) * (math.pi / 180)
        zero = torch.zeros_like(yaw)
        turn = axis_angle_to_matrix(torch.stack([zero, yaw, zero], -1))
        tilt = axis_angle_to_matrix(torch.stack([pitch, zero, zero], -1))
        r[:, 0] = tilt @ self.facing @ turn @ r[:, 0]
        shape = self.shapes[torch.randint(len(self.shapes), (b,), generator=g)]
        kp = self.body.keypoints(r, shape)
        kp = kp - kp[:, PELVIS:PELVIS + 1]
        depth = self._uniform(b, *s.distance)[:, None] + kp[..., 2]
        xy = kp[..., :2] / depth[..., None].clamp(min=0.5)
        mask = self.body.keypoint_mask.to(xy.dtype)
        keep = (torch.rand(b, len(mask), generator=g) >= s.drop).to(xy.dtype)
        weight = mask * keep
        radius = (xy * mask[:, None]).pow(2).sum(-1).mean(1, keepdim=True).sqrt()
        xy = xy + s.noise * radius[..., None] * torch.randn(xy.shape, generator=g)
        return xy, weight, r, kp


def fit_lifter(lifter: PoseLifter, body: BodyModel, rotmats: np.ndarray | torch.Tensor,
               shapes: np.ndarray | torch.Tensor, settings: LiftSettings,
               mean_shape: torch.Tensor, seed: int = 0, progress: bool = True) -> list[float]:
    """Train ``lifter`` in place on :class:`MocapViews`; returns the mean 3D keypoint error
    (metres) of every step. ``mean_shape (S,)``: the body the lifter's rotations are scored on
    (the IEF's starting shape)."""
    lifter.keypoint_mask.copy_(body.keypoint_mask.to(lifter.keypoint_mask.device))
    views = MocapViews(body, rotmats, shapes, settings, seed)
    opt = torch.optim.Adam(lifter.parameters(), lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(settings.steps, 1))
    mask = body.keypoint_mask.float()
    shape = mean_shape.reshape(1, -1).float().expand(settings.batch_size, -1)
    lifter.requires_grad_(True)
    lifter.train()
    errors: list[float] = []
    bar = tqdm(range(settings.steps), desc="fit pose lifter", disable=not progress)
    for _ in bar:
        xy, weight, r, kp = views.sample(settings.batch_size)
        rot6d = lifter(xy, weight)
        pred = body.keypoints(rot6d_to_matrix(rot6d), shape)
        pred = pred - pred[:, PELVIS:PELVIS + 1]
        err = ((pred - kp).norm(dim=-1) * mask).sum() / (mask.sum() * len(kp))
        twist = (rot6d - matrix_to_rot6d(r)).pow(2).mean()
        loss = err + settings.twist_weight * twist
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        errors.append(float(err.detach()))
        bar.set_postfix(mm=f"{1000 * errors[-1]:.1f}")
    lifter.eval()
    lifter.requires_grad_(False)  # kept as fitted while the image model trains
    log.info("pose lifter: %d steps on %d mocap poses, 3D keypoint error %.1f mm (last 50 steps)",
             settings.steps, len(views.rotmats), 1000 * float(np.mean(errors[-50:] or [0.0])))
    return errors
