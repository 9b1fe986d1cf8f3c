"""SMPL / SMPL-X wrapper on made-up files of the official formats, against independent oracles."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import smplx
import torch
from body_fakes import file_arrays, make_model, save_chumpy_pkl, save_npz, write_uv_obj
from scipy.spatial.transform import Rotation

from texturepose.body.base import BodyModelError
from texturepose.body.chumpy_free import load_model_file
from texturepose.body.smpl_model import SKELETON_KEYPOINTS, SMPL_JOINT_NAMES, SmplBody
from texturepose.keypoints import INDEX

F64 = torch.float64


@pytest.fixture(scope="module")
def smpl_files(tmp_path_factory) -> tuple[dict, Path]:
    rng = np.random.default_rng(1)
    model = make_model(rng, "smpl", verts_per_joint=6)
    folder = tmp_path_factory.mktemp("smpl")
    save_npz(model, folder / "model.npz")
    return model, folder


def build(path: Path, model: dict, **kw) -> SmplBody:
    kw.setdefault("keypoint_vertex_ids", model["vertex_ids"])
    return SmplBody(path, **kw)


def random_pose(rng: np.random.Generator, batch: int, joints: int, scale: float = 0.6):
    aa = rng.normal(0, scale, (batch, joints, 3))
    return aa, Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(batch, joints, 3, 3)


def reference_lbs(model: dict, rotmats: np.ndarray, betas: np.ndarray, pose_features=None):
    """SMPL written out in numpy, one sample at a time: blend shapes, joints, chain, skinning."""
    parents = model["kintree_table"][0].astype(np.int64)
    parents[0] = -1
    nj = len(parents)
    verts_out, joints_out = [], []
    for r, beta in zip(rotmats, betas, strict=True):
        v = model["v_template"] + model["shapedirs"][:, :, : len(beta)] @ beta
        joints = model["J_regressor"] @ v
        if pose_features is None:
            feat = (r[1:] - np.eye(3)).reshape(-1)
        else:
            feat = pose_features(r, beta)
        v = v + model["posedirs"] @ feat
        world = np.zeros((nj, 4, 4))
        for j in range(nj):
            local = np.eye(4)
            local[:3, :3] = r[j]
            local[:3, 3] = joints[j] - (joints[parents[j]] if j else 0)
            world[j] = local if j == 0 else world[parents[j]] @ local
        skin = world.copy()
        skin[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints)
        blended = np.einsum("vj,jab->vab", model["weights"], skin)
        verts_out.append(np.einsum("vab,vb->va", blended[:, :3, :3], v) + blended[:, :3, 3])
        joints_out.append(world[:, :3, 3])
    return np.stack(verts_out), np.stack(joints_out)


def test_vertices_and_keypoints_match_numpy_lbs(smpl_files):
    model, folder = smpl_files
    body = build(folder / "model.npz", model, dtype=F64)
    rng = np.random.default_rng(2)
    _, rot = random_pose(rng, 3, 24)
    betas = rng.normal(0, 1, (3, 10))
    out = body(torch.from_numpy(rot), torch.from_numpy(betas))
    ref_v, ref_j = reference_lbs(model, rot, betas)
    np.testing.assert_allclose(out.vertices.numpy(), ref_v, atol=1e-12)
    kp = out.keypoints.numpy()
    for name, joint in SKELETON_KEYPOINTS.items():
        np.testing.assert_allclose(
            kp[:, INDEX[name]], ref_j[:, SMPL_JOINT_NAMES.index(joint)], atol=1e-12
        )
    for name, vid in model["vertex_ids"].items():
        np.testing.assert_allclose(kp[:, INDEX[name]], ref_v[:, vid], atol=1e-12)
    for name in ("thorax", "jaw", "head"):  # no H36M regressor: absent and zero
        assert not body.keypoint_mask[INDEX[name]]
        assert np.all(kp[:, INDEX[name]] == 0)
    assert int(body.keypoint_mask.sum()) == 27


def test_matches_smplx_smpl_layer(smpl_files):
    model, folder = smpl_files
    body = build(folder / "model.npz", model, dtype=F64)
    struct = smplx.utils.Struct(**file_arrays(model))
    ids = {"nose": 0, "reye": 1, "leye": 2, "rear": 3, "lear": 4}
    layer = smplx.SMPLLayer(
        model_path="", data_struct=struct, vertex_ids=ids, use_hands=False,
        use_feet_keypoints=False, dtype=F64, num_betas=10,
    )  # fmt: skip
    rng = np.random.default_rng(3)
    rot = torch.from_numpy(random_pose(rng, 2, 24)[1])
    betas = torch.from_numpy(rng.normal(0, 1, (2, 10)))
    native = layer(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:])
    # smplx casts the file's arrays through float32 (utils.to_np) even for a float64 layer.
    torch.testing.assert_close(body(rot, betas).vertices, native.vertices, atol=1e-6, rtol=0)


@pytest.mark.parametrize("protocol", [0, 2])
def test_chumpy_pkl_loads_without_chumpy(smpl_files, tmp_path, protocol):
    model, folder = smpl_files
    pkl = save_chumpy_pkl(model, tmp_path / "SMPL_NEUTRAL.pkl", protocol=protocol)
    assert "chumpy" not in sys.modules
    with pytest.raises(ModuleNotFoundError):  # a plain load needs chumpy: the file is faithful
        with open(pkl, "rb") as f:
            pickle.load(f, encoding="latin1")
    data = load_model_file(pkl, "x", "y")
    assert "chumpy" not in sys.modules
    np.testing.assert_array_equal(data["J_regressor"], model["J_regressor"])  # sparse -> dense
    np.testing.assert_array_equal(data["shapedirs"], model["shapedirs"])  # Ch -> its value
    assert data["bs_style"] == "lbs"
    from_pkl = build(tmp_path, model, dtype=F64)  # a folder: finds SMPL_NEUTRAL.pkl
    from_npz = build(folder / "model.npz", model, dtype=F64)
    rot = from_npz.rest_rotmats(2)
    rot[:, 5] = torch.from_numpy(Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix())
    betas = torch.linspace(-1, 1, 20, dtype=F64).view(2, 10)
    torch.testing.assert_close(from_pkl(rot, betas).vertices, from_npz(rot, betas).vertices)


def test_npz_with_pickled_sparse_regressor(smpl_files, tmp_path):
    """An npz saved from the pkl dict holds object arrays; they load through the safe path."""
    model, _ = smpl_files
    path = save_npz(
        {**model, "J_regressor": scipy.sparse.csc_matrix(model["J_regressor"])},
        tmp_path / "obj.npz",
    )
    with pytest.raises(ValueError):
        np.load(path, allow_pickle=False)["J_regressor"]
    body = build(path, model)
    torch.testing.assert_close(
        body.j_template, torch.from_numpy(model["J_regressor"] @ model["v_template"]).float()
    )


def test_malicious_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    payload = b"(dp0\nS'v_template'\np1\ncos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntRs."
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(BodyModelError, match="key 'f' is missing|not a numeric array"):
        SmplBody(path)
    assert not marker.exists()


def test_smplx_folded_joints_equal_full_55_joint_lbs(tmp_path):
    rng = np.random.default_rng(4)
    model = make_model(rng, "smplx", verts_per_joint=3, symmetric=False)
    path = save_npz(model, tmp_path / "SMPLX_NEUTRAL.npz")
    body = SmplBody(tmp_path, kind="smplx", dtype=F64, keypoint_vertex_ids=model["vertex_ids"])
    assert body.num_joints == 22 and body.joint_names == SMPL_JOINT_NAMES[:22]
    assert path.exists()
    rot = torch.from_numpy(random_pose(rng, 2, 22)[1])
    betas = torch.from_numpy(rng.normal(0, 1, (2, 10)))
    full = torch.eye(3, dtype=F64).repeat(2, 55, 1, 1)
    full[:, :22] = rot
    t = {k: torch.from_numpy(np.asarray(model[k], dtype=np.float64)) for k in
         ("v_template", "shapedirs", "posedirs", "J_regressor", "weights")}  # fmt: skip
    parents = torch.from_numpy(model["kintree_table"][0].astype(np.int64))
    parents[0] = -1
    verts, joints = smplx.lbs.lbs(
        betas, full, t["v_template"], t["shapedirs"][:, :, :10],
        t["posedirs"].reshape(-1, t["posedirs"].shape[-1]).T, t["J_regressor"], parents,
        t["weights"], pose2rot=False,
    )  # fmt: skip
    out = body(rot, betas)
    torch.testing.assert_close(out.vertices, verts, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.keypoints[:, INDEX["l_wrist"]], joints[:, 20])


def test_gradients_match_finite_differences(tmp_path):
    model = make_model(np.random.default_rng(5), "smpl", verts_per_joint=4)
    body = build(save_npz(model, tmp_path / "m.npz"), model, dtype=F64)
    aa = torch.tensor(np.random.default_rng(6).normal(0, 0.5, (1, 24, 3)), requires_grad=True)
    betas = torch.randn(1, 10, dtype=F64, requires_grad=True)

    # Random projections of all outputs keep the analytic Jacobian to a few backward passes.
    proj = torch.randn(4, (body.num_vertices + 30) * 3, dtype=F64)

    def run(aa, betas):
        out = body(smplx.lbs.batch_rodrigues(aa.view(-1, 3)).view(1, 24, 3, 3), betas)
        return proj @ torch.cat([out.vertices, out.keypoints], dim=1).reshape(-1)

    assert torch.autograd.gradcheck(run, (aa, betas), eps=1e-6, atol=1e-6)


def test_uv_obj_and_part_labels(smpl_files, tmp_path):
    model, folder = smpl_files
    uv, face_uv = write_uv_obj(model, tmp_path / "smpl_uv.obj", np.random.default_rng(7))
    body = build(folder / "model.npz", model, uv_path=tmp_path / "smpl_uv.obj")
    # Same texture coordinate at every corner of every face, whatever order the OBJ used.
    np.testing.assert_allclose(body.uv[body.face_uv].numpy(), uv[face_uv], atol=1e-6)
    # Each made-up face lies in one joint's vertex cluster: its part is that joint.
    owner = model["weights"].argmax(1)
    np.testing.assert_array_equal(body.face_parts.numpy(), owner[model["f"][:, 0]])
    assert body.part_names == SMPL_JOINT_NAMES
    assert build(folder / "model.npz", model).uv is None


def test_h36m_regressor_gives_torso_and_head_points(smpl_files, tmp_path):
    model, folder = smpl_files
    reg = np.random.default_rng(8).dirichlet(np.ones(len(model["v_template"])), 17)
    np.save(tmp_path / "J_regressor_h36m.npy", reg)
    body = build(folder / "model.npz", model, h36m_regressor_path=tmp_path / "J_regressor_h36m.npy")
    out = body(body.rest_rotmats(1), torch.zeros(1, 10))
    for name, row in {"spine": 7, "thorax": 8, "jaw": 9, "head": 10}.items():
        expected = torch.from_numpy(reg[row]).float() @ out.vertices[0]
        torch.testing.assert_close(out.keypoints[0, INDEX[name]], expected)
    assert int(body.keypoint_mask.sum()) == 30
    assert body.h36m_regressor.shape == (17, len(model["v_template"]))


# ---- bad input: every case names the file and what was expected -------------------------------


def test_missing_file_names_path_file_and_site(tmp_path):
    path = tmp_path / "nope" / "SMPL_NEUTRAL.pkl"
    with pytest.raises(BodyModelError) as e:
        SmplBody(path)
    msg = str(e.value)
    assert str(path) in msg and "SMPL_NEUTRAL.pkl" in msg and "smpl.is.tue.mpg.de" in msg
    with pytest.raises(BodyModelError, match="smpl-x.is.tue.mpg.de"):
        SmplBody(tmp_path, kind="smplx")  # a folder without SMPLX_NEUTRAL.npz
    with pytest.raises(BodyModelError, match="folder holds none"):
        SmplBody(tmp_path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.pop("weights"), "key 'weights' is missing"),
        (lambda m: m.update(posedirs=m["posedirs"][:, :, :93]), r"key 'posedirs' has shape"),
        (lambda m: m.update(J_regressor=m["J_regressor"][:22]), r"key 'J_regressor' has shape"),
        (
            lambda m: m.update(weights=m["weights"][:-1]),
            r"key 'weights' has shape .*expected \(156",
        ),
        (lambda m: m.update(f=m["f"] + 1000), "faces index vertices outside"),
        (lambda m: m.update(kintree_table=m["kintree_table"][:, ::-1]), "kintree_table"),
    ],
)
def test_wrong_keys_and_shapes(smpl_files, tmp_path, change, match):
    model, _ = smpl_files
    broken = {k: np.copy(v) for k, v in model.items() if isinstance(v, np.ndarray)}
    change(broken)
    path = tmp_path / "bad.npz"
    np.savez(path, **broken)
    with pytest.raises(BodyModelError, match=match) as e:
        build(path, model)
    assert str(path) in str(e.value) and "smpl.is.tue.mpg.de" in str(e.value)


def test_other_bad_inputs(smpl_files, tmp_path):
    model, folder = smpl_files
    good = folder / "model.npz"
    with pytest.raises(BodyModelError, match="key 'shapedirs' is a chumpy expression"):
        build(save_chumpy_pkl(model, tmp_path / "e.pkl", expr_key="shapedirs"), model)
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(BodyModelError, match="not a dict"):
        SmplBody(tmp_path / "list.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(BodyModelError, match="cannot read"):
        SmplBody(tmp_path / "junk.pkl")
    (tmp_path / "m.obj").write_text("")
    with pytest.raises(BodyModelError, match="unknown extension"):
        SmplBody(tmp_path / "m.obj")
    with pytest.raises(BodyModelError, match="num_betas=11"):
        build(good, model, num_betas=11)
    with pytest.raises(BodyModelError, match="6890"):  # official vertex ids on a small mesh
        SmplBody(good)
    with pytest.raises(BodyModelError, match=r"J_regressor_h36m.npy"):
        build(good, model, h36m_regressor_path=tmp_path / "missing.npy")
    np.save(tmp_path / "h36m.npy", np.zeros((17, 6890)))
    with pytest.raises(BodyModelError, match=r"expected \(17, 156\)"):
        build(good, model, h36m_regressor_path=tmp_path / "h36m.npy")
    with pytest.raises(BodyModelError, match="UV file not found"):
        build(good, model, uv_path=tmp_path / "none.obj")
    other = make_model(np.random.default_rng(9), "smpl", verts_per_joint=6)
    write_uv_obj(other, tmp_path / "other.obj", np.random.default_rng(9))
    with pytest.raises(BodyModelError, match="triangles are not in the OBJ"):
        build(good, model, uv_path=tmp_path / "other.obj")
    body = build(good, model)
    with pytest.raises(ValueError, match="model is torch.float32"):
        body(body.rest_rotmats(1).double(), torch.zeros(1, 10, dtype=F64))
    with pytest.raises(ValueError, match=r"rotmats must be \(B, 24, 3, 3\)"):
        body(torch.eye(3).expand(1, 23, 3, 3), torch.zeros(1, 10))
    with pytest.raises(ValueError, match="kind must be"):
        SmplBody(good, kind="smplh")
