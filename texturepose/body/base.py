"""The one interface every body model implements (Anny, SMPL/SMPL-X, STAR).

Frame: every model returns vertices and keypoints in its canonical body frame, metres, **Y up,
the body facing +Z, its left side at +X** (SMPL's frame). Global orientation is the first
regressed joint's rotation. No translation: cameras carry it.

Pose: a batch of rotation matrices ``(B, J, 3, 3)``, one per regressed joint (``joint_names``),
expressed in world-aligned rest frames, so that mirroring a pose is ``M R M`` with
``M = diag(-1, 1, 1)`` plus the left/right swap ``flip_joint_permutation``.

Shape: ``(B, S)`` model-specific parameters (SMPL/STAR betas; Anny phenotypes), with
``mean_shape`` the neutral value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from texturepose.geometry.rotations import mirror_rotations


class BodyModelError(RuntimeError):
    """A missing or unusable model file; the message names the path, the file and its source."""


@dataclass
class BodyOutput:
    vertices: torch.Tensor  # (B, V, 3)
    keypoints: torch.Tensor  # (B, K, 3) superset; rows where keypoint_mask is False are zero


class BodyModel(torch.nn.Module):
    """Base class. Subclasses set the attributes below in ``__init__`` and implement ``_forward``.

    Attributes:
        name: ``anny``, ``smpl``, ``smplx`` or ``star``.
        joint_names: names of the J regressed joints; the first is the global orientation.
        num_shape: S.
        faces: (F, 3) int64 triangle vertex indices (buffer).
        uv: (T, 2) float UV coordinates in [0, 1] or None; face_uv: (F, 3) int64 or None.
        face_parts: (F,) int64 part label per face; part_names: tuple of the labels' names.
        keypoint_mask: (K,) bool, superset points this model regresses.
        flip_joint_permutation: (J,) int64, index of each joint's mirror joint.
        mean_shape: (S,) neutral shape parameters (buffer).
        shape_bounds: (low, high) of valid shape values, or None when unbounded (betas).
    """

    name: str
    joint_names: tuple[str, ...]
    num_shape: int
    part_names: tuple[str, ...]

    faces: torch.Tensor
    uv: torch.Tensor | None
    face_uv: torch.Tensor | None
    face_parts: torch.Tensor
    keypoint_mask: torch.Tensor
    flip_joint_permutation: torch.Tensor
    mean_shape: torch.Tensor
    shape_bounds: tuple[float, float] | None = None

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def num_vertices(self) -> int:
        raise NotImplementedError

    def forward(self, rotmats: torch.Tensor, shape: torch.Tensor) -> BodyOutput:
        self._check_inputs(rotmats, shape)
        out = self._forward(rotmats, shape)
        return out

    def _forward(self, rotmats: torch.Tensor, shape: torch.Tensor) -> BodyOutput:
        raise NotImplementedError

    def keypoints(self, rotmats: torch.Tensor, shape: torch.Tensor,
                  shape_index: torch.Tensor | None = None) -> torch.Tensor:
        """Only the superset keypoints ``(B, K, 3)``, equal to ``self(rotmats, shape).keypoints``;
        with ``shape_index (B,)``, ``shape`` is ``(C, S)`` and row ``b`` takes
        ``shape[shape_index[b]]``. Models with a cheaper keypoint path (Anny) override it."""
        if shape_index is not None:
            shape = shape[shape_index]
        return self(rotmats, shape).keypoints

    def kinematic_keypoint_path(self) -> torch.nn.Module | None:
        """A keypoint path that exposes its bone transforms (for analytic Jacobians, as the
        mocap fit's ``lm`` method uses), or None when the model has none (the default)."""
        return None

    def _check_inputs(self, rotmats: torch.Tensor, shape: torch.Tensor) -> None:
        j, s = self.num_joints, self.num_shape
        if rotmats.dim() != 4 or rotmats.shape[1:] != (j, 3, 3):
            raise ValueError(
                f"{self.name}: rotmats must be (B, {j}, 3, 3) for joints {self.joint_names}, "
                f"got {tuple(rotmats.shape)}"
            )
        if shape.dim() != 2 or shape.shape[1] != s or shape.shape[0] != rotmats.shape[0]:
            raise ValueError(
                f"{self.name}: shape must be (B, {s}) with B={rotmats.shape[0]}, "
                f"got {tuple(shape.shape)}"
            )

    def sample_shapes(self, n: int, seed: int = 0) -> torch.Tensor:
        """``(n, S)`` shapes drawn from the model's population prior: the adversarial prior's
        real shapes (mocap fits are a few actors, not a population). Default: unit-variance
        PCA coefficients about ``mean_shape``, what SMPL's and STAR's betas are."""
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(n, self.num_shape, generator=g, dtype=self.mean_shape.dtype)
        return self.mean_shape.cpu() + noise

    def rest_rotmats(self, batch: int = 1) -> torch.Tensor:
        """Identity rotations (the model's rest pose), ``(batch, J, 3, 3)``."""
        eye = torch.eye(3, dtype=self.mean_shape.dtype, device=self.mean_shape.device)
        return eye.expand(batch, self.num_joints, 3, 3).clone()

    def flip_pose(self, rotmats: torch.Tensor) -> torch.Tensor:
        """Pose of the horizontally mirrored body: swap left/right joints and reflect."""
        return mirror_rotations(rotmats[:, self.flip_joint_permutation])
