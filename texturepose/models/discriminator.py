"""HMR's pose-and-shape discriminator (Kanazawa et al. 2018), for any body model.

Three kinds of output logits, concatenated to ``(B, Jd + 2)``:

- per joint: each of the ``Jd`` body-joint rotation matrices (9 numbers) goes through two 1x1
  convolutions 9 -> 32 -> 32 shared by all joints, then one linear head per joint;
- full pose: the ``32 * Jd`` joint embeddings -> 1024 -> 1024 -> 1 (joint correlations);
- shape: S -> 10 -> 5 -> 1.

The global orientation (joint 0) is left out by default, as in HMR: in images it depends on the
camera, in mocap on the capture room, so it carries no pose prior.

Shapes enter the shape branch centred on ``shape_mean`` (give the body model's ``mean_shape``):
Anny's phenotypes lie in [0, 1], and all-positive inputs to the tiny 10 -> 5 ReLU layers leave
units dead more often than HMR's zero-centred SMPL betas did.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Discriminator(nn.Module):
    def __init__(
        self,
        num_joints: int,
        num_shape: int,
        skip_global: bool = True,
        shape_mean: torch.Tensor | None = None,
    ):
        super().__init__()
        jd = num_joints - 1 if skip_global else num_joints
        if jd < 1 or num_shape < 1:
            raise ValueError(
                f"discriminator needs >= 1 body joint and >= 1 shape parameter, got "
                f"{num_joints} joints (skip_global={skip_global}) and {num_shape} shape params"
            )
        self.num_joints = num_joints
        self.num_shape = num_shape
        self.skip_global = skip_global
        mean = torch.zeros(num_shape) if shape_mean is None else torch.as_tensor(shape_mean)
        if mean.shape != (num_shape,):
            raise ValueError(f"shape_mean must be ({num_shape},), got {tuple(mean.shape)}")
        self.register_buffer("shape_mean", mean.detach().float().clone())
        self.joint_convs = nn.Sequential(
            nn.Conv1d(9, 32, 1), nn.ReLU(inplace=True), nn.Conv1d(32, 32, 1), nn.ReLU(inplace=True)
        )
        # One linear 32 -> 1 head per joint, stored as a (Jd, 32) matrix to run in one einsum.
        # Xavier-uniform weights and zero biases everywhere, as TF-slim's defaults in HMR: with
        # PyTorch's default init the tiny shape branch learns several times more slowly.
        bound = math.sqrt(6.0 / (32 + 1))
        self.joint_head_weight = nn.Parameter(torch.empty(jd, 32).uniform_(-bound, bound))
        self.joint_head_bias = nn.Parameter(torch.zeros(jd))
        self.full_pose = nn.Sequential(
            nn.Linear(32 * jd, 1024), nn.ReLU(inplace=True),
            nn.Linear(1024, 1024), nn.ReLU(inplace=True),
            nn.Linear(1024, 1),
        )  # fmt: skip
        self.shape_net = nn.Sequential(
            nn.Linear(num_shape, 10), nn.ReLU(inplace=True),
            nn.Linear(10, 5), nn.ReLU(inplace=True),
            nn.Linear(5, 1),
        )  # fmt: skip
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_outputs(self) -> int:
        return self.joint_head_bias.shape[0] + 2

    def forward(self, rotmats: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        """``rotmats (B, J, 3, 3)`` and ``shape (B, S)`` -> logits ``(B, Jd + 2)``."""
        j, s = self.num_joints, self.num_shape
        if rotmats.dim() != 4 or rotmats.shape[1:] != (j, 3, 3):
            raise ValueError(
                f"discriminator: rotmats must be (B, {j}, 3, 3), got {tuple(rotmats.shape)}"
            )
        if shape.dim() != 2 or shape.shape != (rotmats.shape[0], s):
            raise ValueError(f"discriminator: shape must be (B, {s}), got {tuple(shape.shape)}")
        if self.skip_global:
            rotmats = rotmats[:, 1:]
        b, jd = rotmats.shape[:2]
        x = self.joint_convs(rotmats.reshape(b, jd, 9).transpose(1, 2))  # (B, 32, Jd)
        per_joint = torch.einsum("bcj,jc->bj", x, self.joint_head_weight) + self.joint_head_bias
        full = self.full_pose(x.transpose(1, 2).reshape(b, jd * 32))
        return torch.cat([per_joint, full, self.shape_net(shape - self.shape_mean)], dim=1)
