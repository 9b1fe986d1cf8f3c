"""Rotation conventions: the network's 6D output (Zhou et al. 2019) and rotation matrices.

The 6D vector of a rotation is its first two matrix columns, interleaved as in Zhou et al. and
SPIN: ``(r00, r01, r10, r11, r20, r21)``. Conversion back uses roma's Gram-Schmidt.
"""

from __future__ import annotations

import roma
import torch


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """``(..., 6)`` -> ``(..., 3, 3)`` rotation matrices."""
    m = x.reshape(*x.shape[:-1], 3, 2)
    return roma.special_gramschmidt(m, epsilon=1e-8)


def matrix_to_rot6d(r: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` -> ``(..., 6)``, the inverse of :func:`rot6d_to_matrix` on rotations."""
    return r[..., :, :2].reshape(*r.shape[:-2], 6)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` rotation vectors -> ``(..., 3, 3)``."""
    return roma.rotvec_to_rotmat(aa)


#: Reflection across the body's sagittal plane (x -> -x) in the canonical body frame.
MIRROR_X = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))


def mirror_rotations(r: torch.Tensor) -> torch.Tensor:
    """Conjugate rotations by the x-reflection: the rotation of the mirrored motion."""
    m = MIRROR_X.to(r)
    return m @ r @ m
