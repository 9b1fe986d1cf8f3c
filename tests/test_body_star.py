"""STAR on a made-up STAR-format npz, against a numpy STAR written from the paper's formulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
from body_fakes import make_model, save_npz
from scipy.spatial.transform import Rotation
from test_body_smpl import reference_lbs

from texturepose.body.base import BodyModelError
from texturepose.body.star_model import StarBody
from texturepose.keypoints import INDEX

F64 = torch.float64


@pytest.fixture(scope="module")
def star_file(tmp_path_factory) -> tuple[dict, Path]:
    model = make_model(np.random.default_rng(11), "star", verts_per_joint=6)
    folder = tmp_path_factory.mktemp("star")
    return model, save_npz(model, folder / "STAR_NEUTRAL.npz")


def star_features_from_axis_angle(aa: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """STAR's corrective input as its authors compute it: from axis-angle, not from matrices."""
    angle = np.linalg.norm(aa[1:], axis=1, keepdims=True)
    axis = aa[1:] / np.maximum(angle, 1e-12)
    quat = np.concatenate([np.sin(angle / 2) * axis, np.cos(angle / 2) - 1], axis=1)
    return np.concatenate([quat.reshape(-1), beta[1:2]])


def test_vertices_match_numpy_star(star_file):
    model, path = star_file
    body = StarBody(path, dtype=F64, keypoint_vertex_ids=model["vertex_ids"])
    rng = np.random.default_rng(12)
    aa = rng.normal(0, 0.7, (3, 24, 3))
    aa[0, 4] = [0.0, 3.1, 0.0]  # near pi: the matrix->quaternion sign must give w >= 0
    aa[1, 7] = [0.0, 0.0, 0.0]
    rot = Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(3, 24, 3, 3)
    betas = rng.normal(0, 1, (3, 10))
    out = body(torch.from_numpy(rot), torch.from_numpy(betas))
    feats = iter([star_features_from_axis_angle(a, b) for a, b in zip(aa, betas, strict=True)])
    ref_v, ref_j = reference_lbs(model, rot, betas, pose_features=lambda r, b: next(feats))
    np.testing.assert_allclose(out.vertices.numpy(), ref_v, atol=1e-10)
    np.testing.assert_allclose(out.keypoints[:, INDEX["l_knee"]].numpy(), ref_j[:, 4], atol=1e-10)
    assert body.name == "star" and body.num_joints == 24


def test_beta1_drives_pose_correctives(star_file):
    """Only STAR's second shape coefficient enters the correctives; check against the model."""
    model, path = star_file
    body = StarBody(path, dtype=F64, keypoint_vertex_ids=model["vertex_ids"])
    rest = body.rest_rotmats(1)
    b = torch.zeros(1, 10, dtype=F64)
    b[0, 1] = 1.0
    # At rest the quaternion features vanish: the corrective is beta1 * posedirs[..., 92].
    expected = model["v_template"] + model["shapedirs"][:, :, 1] + model["posedirs"][:, :, 92]
    np.testing.assert_allclose(body(rest, b).vertices[0].numpy(), expected, atol=1e-12)


def test_gradients_match_finite_differences(tmp_path):
    model = make_model(np.random.default_rng(13), "star", verts_per_joint=4)
    body = StarBody(save_npz(model, tmp_path / "s.npz"), dtype=F64,
                    keypoint_vertex_ids=model["vertex_ids"])  # fmt: skip
    aa = torch.tensor(np.random.default_rng(14).normal(0, 0.5, (1, 24, 3)), requires_grad=True)
    betas = torch.randn(1, 10, dtype=F64, requires_grad=True)
    proj = torch.randn(4, (body.num_vertices + 30) * 3, dtype=F64)

    def run(aa, betas):
        out = body(smplx.lbs.batch_rodrigues(aa.view(-1, 3)).view(1, 24, 3, 3), betas)
        return proj @ torch.cat([out.vertices, out.keypoints], dim=1).reshape(-1)

    assert torch.autograd.gradcheck(run, (aa, betas), eps=1e-6, atol=1e-6)


def test_bad_inputs(star_file, tmp_path):
    model, path = star_file
    with pytest.raises(BodyModelError) as e:
        StarBody(tmp_path / "STAR_NEUTRAL.npz")
    msg = str(e.value)
    assert str(tmp_path / "STAR_NEUTRAL.npz") in msg and "star.is.tue.mpg.de" in msg
    with pytest.raises(BodyModelError, match="STAR_NEUTRAL.npz"):
        StarBody(tmp_path)  # a folder without the file
    smpl = make_model(np.random.default_rng(15), "smpl", verts_per_joint=6)
    with pytest.raises(BodyModelError, match=r"key 'posedirs' has shape \(\d+, 3, 207\)"):
        StarBody(save_npz(smpl, tmp_path / "smpl.npz"))  # an SMPL file given as STAR
    with pytest.raises(BodyModelError, match="at least 2"):
        StarBody(path, num_betas=1, keypoint_vertex_ids=model["vertex_ids"])
    with pytest.raises(BodyModelError, match="has 10 shape directions"):
        StarBody(path, num_betas=300, keypoint_vertex_ids=model["vertex_ids"])
    with pytest.raises(BodyModelError, match="6890"):
        StarBody(path)  # official vertex ids do not fit the small made-up mesh
    with pytest.raises(ValueError, match="unknown names"):
        StarBody(path, keypoint_vertex_ids={"left_eye": 0})
