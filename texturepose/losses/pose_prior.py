"""The pose prior: distance of the body pose from the mean pose (``loss.pose_prior``).

The body pose is every joint's 6D rotation but the global orientation's. With
``loss.pose_prior_kind: l2`` every coordinate counts the same (mean squared difference). With
``gaussian`` the distance is measured in the covariance of the mocap poses about the mean pose
(a Mahalanobis distance): directions the mocap moves along often (knees, elbows, hips) cost
little, those it hardly moves along (a twisted spine, a bent wrist) cost much. The precision is
scaled by the mocap's average variance, so that for isotropic poses both kinds give the same loss
and one weight means about the same for both. The covariance is shrunk towards that isotropic
one: 6D rotations have 6 numbers for 3 degrees of freedom, so the raw covariance is singular.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from texturepose.geometry.rotations import matrix_to_rot6d

log = logging.getLogger(__name__)

PRIOR_KINDS = ("l2", "gaussian")


def l2_pose_prior(rot6d: torch.Tensor, mean_rot6d: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of ``rot6d (B, J, 6)`` from ``mean_rot6d`` (``(J*6,)``, or
    ``(B, J, 6)``: one anchor per sample, e.g. a lifted start) over the non-root joints."""
    mean = mean_rot6d.reshape(-1, rot6d.shape[1], 6)[:, 1:]
    return (rot6d[:, 1:] - mean).square().mean()


class GaussianPosePrior(nn.Module):
    """Mahalanobis distance of the non-root 6D rotations from the mean pose, per coordinate."""

    def __init__(self, whitener: torch.Tensor) -> None:
        super().__init__()
        if whitener.dim() != 2 or whitener.shape[0] != whitener.shape[1]:
            raise ValueError(f"the whitener must be a square (D, D) matrix, got "
                             f"{tuple(whitener.shape)}")
        self.register_buffer("whitener", whitener.float())

    @classmethod
    def fit(cls, rotmats: np.ndarray | torch.Tensor, mean_rot6d: np.ndarray | torch.Tensor,
            shrinkage: float = 0.1) -> GaussianPosePrior:
        """The prior of mocap poses ``rotmats (N, J, 3, 3)`` about ``mean_rot6d (J*6,)``.

        ``shrinkage`` in (0, 1]: the share of the isotropic covariance mixed in (1 gives the
        l2 prior)."""
        if not 0.0 < shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
        r = torch.as_tensor(np.asarray(rotmats), dtype=torch.float64)
        if r.dim() != 4 or r.shape[-2:] != (3, 3) or r.shape[1] < 2:
            raise ValueError(f"mocap rotmats must be (N, J>=2, 3, 3), got {tuple(r.shape)}")
        mean = torch.as_tensor(np.asarray(mean_rot6d), dtype=torch.float64).reshape(-1, 6)
        if len(mean) != r.shape[1]:
            raise ValueError(f"the mean pose has {len(mean)} joints, the mocap poses {r.shape[1]}")
        d = (matrix_to_rot6d(r[:, 1:]) - mean[1:]).reshape(len(r), -1)
        cov = d.T @ d / len(d)  # second moment about the mean pose: the penalty's centre
        dim = cov.shape[0]
        var = float(torch.trace(cov)) / dim
        if not var > 0:
            raise ValueError("the mocap poses do not vary: no covariance to fit a prior to")
        eye = torch.eye(dim, dtype=cov.dtype)
        cov = (1.0 - shrinkage) * cov + shrinkage * var * eye
        # d^T P d = |L^T d|^2 with P = var * cov^-1 = L L^T
        chol = torch.linalg.cholesky(var * torch.linalg.inv(cov))
        log.info("Gaussian pose prior from %d mocap poses (%d coordinates, average variance "
                 "%.4f, shrinkage %.2f)", len(r), dim, var, shrinkage)
        return cls(chol)

    def forward(self, rot6d: torch.Tensor, mean_rot6d: torch.Tensor) -> torch.Tensor:
        """The prior of ``rot6d (B, J, 6)``: ``mean_b |L^T d_b|^2 / D``, ``d_b`` its difference
        from ``mean_rot6d`` (``(J*6,)`` or one anchor per sample ``(B, J, 6)``)."""
        mean = mean_rot6d.reshape(-1, rot6d.shape[1], 6)[:, 1:]
        d = (rot6d[:, 1:] - mean).flatten(1)
        if d.shape[1] != self.whitener.shape[0]:
            raise ValueError(f"the prior was fitted to {self.whitener.shape[0]} pose "
                             f"coordinates, the pose has {d.shape[1]}")
        return (d @ self.whitener.to(d.dtype)).square().sum(1).mean() / d.shape[1]
