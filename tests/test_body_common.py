"""What every body model must do, checked on each one: Anny (real), SMPL, SMPL-X and STAR (made-up
files of the official formats)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import roma
import torch
from body_fakes import make_model, save_npz

from texturepose.body.smpl_model import SmplBody
from texturepose.body.star_model import StarBody
from texturepose.geometry.rotations import MIRROR_X
from texturepose.keypoints import FLIP_PERMUTATION, NUM_KEYPOINTS

MODELS = ("anny", "smpl", "smplx", "star")


@pytest.fixture(scope="module")
def made_up(tmp_path_factory) -> dict:
    """Made-up SMPL/STAR (exactly left-right symmetric) and SMPL-X models, float32."""
    folder = tmp_path_factory.mktemp("bodies")
    rng = np.random.default_rng(21)
    out = {}
    for kind, sym in (("smpl", True), ("star", True), ("smplx", False)):
        model = make_model(rng, kind, verts_per_joint=6, symmetric=sym)
        path = save_npz(model, folder / f"{kind}.npz")
        ids = model["vertex_ids"]
        body = (
            StarBody(path, keypoint_vertex_ids=ids)
            if kind == "star"
            else SmplBody(path, kind=kind, keypoint_vertex_ids=ids)
        )
        out[kind] = (body, model)
    return out


@pytest.fixture(params=MODELS)
def body(request, made_up):
    if request.param == "anny":
        return request.getfixturevalue("anny_body")
    return made_up[request.param][0]


def random_inputs(body, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    aa = torch.randn(batch, body.num_joints, 3, generator=g) * 0.4
    shape = body.mean_shape + 0.1 * torch.randn(batch, body.num_shape, generator=g)
    return roma.rotvec_to_rotmat(aa), shape


def test_shapes_dtypes_and_absent_keypoints(body):
    rot, shape = random_inputs(body, 3)
    out = body(rot, shape)
    assert out.vertices.shape == (3, body.num_vertices, 3)
    assert out.keypoints.shape == (3, NUM_KEYPOINTS, 3)
    assert out.vertices.dtype == out.keypoints.dtype == torch.float32
    assert torch.isfinite(out.vertices).all()
    mask = body.keypoint_mask
    assert mask.dtype == torch.bool and mask.shape == (NUM_KEYPOINTS,)
    assert bool((out.keypoints[:, ~mask] == 0).all())
    assert bool((out.keypoints[:, mask].abs().sum(-1) > 0).all())
    # Absent points are absent on both sides: a flipped target never needs a missing point.
    assert torch.equal(mask, mask[torch.from_numpy(FLIP_PERMUTATION)])


def test_mesh_uv_and_part_attributes(body):
    nv, faces = body.num_vertices, body.faces
    assert faces.dtype == torch.int64 and faces.ndim == 2 and faces.shape[1] == 3
    assert 0 <= int(faces.min()) and int(faces.max()) < nv
    assert body.face_parts.shape == (len(faces),) and body.face_parts.dtype == torch.int64
    assert 0 <= int(body.face_parts.min()) and int(body.face_parts.max()) < len(body.part_names)
    if body.uv is not None:
        assert body.uv.ndim == 2 and body.uv.shape[1] == 2
        assert float(body.uv.min()) >= 0.0 and float(body.uv.max()) <= 1.0
        assert body.face_uv.shape == faces.shape
        assert 0 <= int(body.face_uv.min()) and int(body.face_uv.max()) < len(body.uv)
    assert body.mean_shape.shape == (body.num_shape,)
    perm = body.flip_joint_permutation
    assert torch.equal(perm[perm], torch.arange(body.num_joints))


def test_flip_pose_is_an_involution(body):
    rot, _ = random_inputs(body, 2, seed=1)
    twice = body.flip_pose(body.flip_pose(rot))
    torch.testing.assert_close(twice, rot, atol=1e-6, rtol=0)


def test_superset_flip_permutation_is_an_involution():
    assert np.array_equal(FLIP_PERMUTATION[FLIP_PERMUTATION], np.arange(NUM_KEYPOINTS))
    assert (FLIP_PERMUTATION != np.arange(NUM_KEYPOINTS)).sum() == 22  # 11 left/right pairs


@pytest.mark.parametrize("kind", ["smpl", "star"])
def test_mirrored_pose_gives_mirrored_body(made_up, kind):
    """On an exactly symmetric model, flip_pose + the superset flip must mirror everything."""
    body, model = made_up[kind]
    rot, shape = random_inputs(body, 2, seed=2)
    out = body(rot, shape)
    flipped = body(body.flip_pose(rot), shape)
    m = MIRROR_X
    mirror = torch.from_numpy(model["mirror"])
    torch.testing.assert_close(flipped.vertices[:, mirror], out.vertices @ m, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        flipped.keypoints[:, torch.from_numpy(FLIP_PERMUTATION)], out.keypoints @ m,
        atol=1e-5, rtol=0,
    )  # fmt: skip
    # The check has teeth: without the left/right swap the bodies differ.
    wrong = body(m @ rot @ m, shape)
    assert (wrong.vertices[:, mirror] - out.vertices @ m).abs().max() > 1e-2


def test_anny_gradients_match_finite_differences(anny_body):
    body = copy.deepcopy(anny_body).double()
    g = torch.Generator().manual_seed(3)
    aa0 = (torch.randn(1, body.num_joints, 3, generator=g) * 0.3).double()
    shape0 = body.mean_shape[None] + 0.1 * torch.randn(1, body.num_shape, generator=g).double()
    wv = torch.randn(body.num_vertices, 3, generator=g).double()
    wk = torch.randn(NUM_KEYPOINTS, 3, generator=g).double()

    def loss(aa, shape):
        out = body(roma.rotvec_to_rotmat(aa), shape)
        return (out.vertices[0] * wv).sum() + (out.keypoints[0] * wk).sum()

    aa, shape = aa0.clone().requires_grad_(), shape0.clone().requires_grad_()
    loss(aa, shape).backward()
    eps = 1e-6
    # A few pose coordinates (root, a spine bone, a hip, a shoulder) and two phenotypes.
    for j, c in ((0, 1), (3, 0), (8, 2), (15, 1)):
        d = torch.zeros_like(aa0)
        d[0, j, c] = eps
        fd = (loss(aa0 + d, shape0) - loss(aa0 - d, shape0)) / (2 * eps)
        torch.testing.assert_close(aa.grad[0, j, c], fd, rtol=1e-5, atol=1e-6)
    for s in (0, 4):
        d = torch.zeros_like(shape0)
        d[0, s] = eps
        fd = (loss(aa0, shape0 + d) - loss(aa0, shape0 - d)) / (2 * eps)
        torch.testing.assert_close(shape.grad[0, s], fd, rtol=1e-5, atol=1e-6)
