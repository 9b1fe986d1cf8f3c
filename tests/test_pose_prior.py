"""The pose prior against closed forms: full shrinkage gives the l2 prior; the mean Mahalanobis
distance of the fitting poses follows from their covariance's eigenvalues; a direction the mocap
moves along costs less than one it does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texturepose.geometry.rotations import axis_angle_to_matrix, matrix_to_rot6d
from texturepose.losses.pose_prior import GaussianPosePrior, l2_pose_prior


def _poses(n: int, joints: int, sigma: np.ndarray, seed: int = 0) -> torch.Tensor:
    """``(n, J, 3, 3)`` rotations, joint j's axis-angle drawn with per-axis std ``sigma[j]``."""
    rng = np.random.default_rng(seed)
    aa = rng.normal(size=(n, joints, 3)) * sigma
    return axis_angle_to_matrix(torch.from_numpy(aa)).double()


def _mean6d(joints: int) -> torch.Tensor:
    return matrix_to_rot6d(torch.eye(3, dtype=torch.float64).expand(joints, 3, 3)).reshape(-1)


def test_full_shrinkage_is_the_l2_prior():
    rot = _poses(500, 4, np.full((4, 3), 0.3))
    prior = GaussianPosePrior.fit(rot, _mean6d(4), shrinkage=1.0)
    x = matrix_to_rot6d(_poses(7, 4, np.full((4, 3), 0.5), seed=1)).float()
    mean = _mean6d(4).float()
    assert float(prior(x, mean)) == pytest.approx(float(l2_pose_prior(x, mean)), rel=1e-5)


def test_mean_distance_of_the_fitting_poses_matches_the_eigenvalue_closed_form():
    # over its own poses the mean of d^T (var * cov_s^-1) d / D is
    # var / D * sum_i l_i / ((1 - a) l_i + a var), l_i the raw covariance's eigenvalues
    rot = _poses(400, 3, np.array([[0.1, 0.5, 0.2]] * 3))
    mean = _mean6d(3)
    d = (matrix_to_rot6d(rot)[:, 1:] - mean.reshape(-1, 6)[1:]).reshape(400, -1)
    lam = torch.linalg.eigvalsh(d.T @ d / 400)
    var = float(lam.sum()) / len(lam)
    for a in (0.05, 0.5):
        prior = GaussianPosePrior.fit(rot, mean, shrinkage=a)
        expected = var / len(lam) * float((lam / ((1 - a) * lam + a * var)).sum())
        got = float(prior(matrix_to_rot6d(rot).float(), mean.float()))
        assert got == pytest.approx(expected, rel=1e-3)
        assert got < var  # shrinkage forgives the directions the mocap never takes


def test_a_frequent_direction_costs_less_than_a_rare_one():
    # joint 1 bends a lot about x and hardly about y (6D keeps the first two columns: a bend
    # about x or about y moves two of its entries alike)
    sigma = np.array([[0.0, 0.0, 0.0], [0.8, 0.05, 0.8]])
    prior = GaussianPosePrior.fit(_poses(2000, 2, sigma), _mean6d(2))
    mean = _mean6d(2).float()
    bend_x = axis_angle_to_matrix(torch.tensor([[[0.0, 0, 0], [0.3, 0, 0]]], dtype=torch.float64))
    bend_y = axis_angle_to_matrix(torch.tensor([[[0.0, 0, 0], [0, 0.3, 0]]], dtype=torch.float64))
    x, y = matrix_to_rot6d(bend_x).float(), matrix_to_rot6d(bend_y).float()
    # the same angle: l2 cannot tell them apart, the Gaussian prior can
    assert float(l2_pose_prior(x, mean)) == pytest.approx(float(l2_pose_prior(y, mean)), rel=1e-4)
    assert float(prior(x, mean)) < 0.5 * float(prior(y, mean))  # 0.26 with shrinkage 0.1


def test_bad_input_is_refused():
    rot = _poses(10, 3, np.full((3, 3), 0.3))
    with pytest.raises(ValueError, match="shrinkage must be in"):
        GaussianPosePrior.fit(rot, _mean6d(3), shrinkage=0.0)
    with pytest.raises(ValueError, match="the mean pose has 2 joints, the mocap poses 3"):
        GaussianPosePrior.fit(rot, _mean6d(2))
    with pytest.raises(ValueError, match="do not vary"):
        GaussianPosePrior.fit(_poses(10, 3, np.zeros((3, 3))), _mean6d(3))
    prior = GaussianPosePrior.fit(rot, _mean6d(3))
    with pytest.raises(ValueError, match="fitted to 12 pose coordinates, the pose has 6"):
        prior(torch.zeros(1, 2, 6), _mean6d(2).float())


def test_one_anchor_per_sample_is_each_sample_against_its_own():
    # model.start: lifted anchors the prior at each crop's lifted start, not the mean pose
    x = matrix_to_rot6d(_poses(5, 4, np.full((4, 3), 0.5), seed=2)).float()
    anchors = matrix_to_rot6d(_poses(5, 4, np.full((4, 3), 0.5), seed=3)).float()
    want = torch.stack([l2_pose_prior(x[i:i + 1], anchors[i].reshape(-1)) for i in range(5)])
    assert float(l2_pose_prior(x, anchors)) == pytest.approx(float(want.mean()), rel=1e-6)
    rot = _poses(300, 4, np.full((4, 3), 0.3))
    prior = GaussianPosePrior.fit(rot, _mean6d(4))
    want = torch.stack([prior(x[i:i + 1], anchors[i].reshape(-1)) for i in range(5)])
    assert float(prior(x, anchors)) == pytest.approx(float(want.mean()), rel=1e-5)
    # an anchor equal to the pose costs nothing
    assert float(l2_pose_prior(x, x)) == 0.0
