"""SMPL and SMPL-X behind the :class:`BodyModel` interface, from the user's own model files.

The files are read without chumpy (:mod:`texturepose.body.chumpy_free`); skinning uses smplx's
own building blocks (``blend_shapes``, ``batch_rigid_transform``) on rotation matrices, so the
result equals ``smplx.SMPLLayer(..., pose2rot=False)`` (checked in the tests). SMPL's native frame
(metres, Y up, facing +Z, left at +X) is already the project's canonical frame.

SMPL-X: the 21 body joints plus the global orientation are regressed; jaw, eyes and fingers stay at
rest (flat hands, neutral face). A joint at rest moves rigidly with its parent, so each of those
joints is folded exactly into its nearest body ancestor (skinning weights added, its pose
correctives dropped because they are zero at rest): a 22-joint model with identical output.

Keypoints (see docs/body.md): limb joints, pelvis, neck and spine are posed skeleton joints;
nose/eyes/ears/feet are smplx's vertex picks; head_top is a vertex (SMPL 411, SMPL-X the highest
template vertex); spine/thorax/jaw/head come from an optional H36M regressor (SPIN's
``J_regressor_h36m.npy``), without which thorax/jaw/head are absent and spine is SMPL's spine2.
Part labels: each face gets the joint with the largest summed skinning weight over its corners.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
from smplx.lbs import batch_rigid_transform, blend_shapes
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from texturepose.body.base import BodyModel, BodyModelError, BodyOutput
from texturepose.body.chumpy_free import check_fields, load_model_file, model_error
from texturepose.keypoints import INDEX, NUM_KEYPOINTS, flip_permutation

log = logging.getLogger(__name__)

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
SMPLX_BODY_JOINTS = 22  # pelvis + 21 body joints; SMPL-X's first 22 joints share SMPL's names

#: Superset keypoint -> skeleton joint whose posed location it takes.
SKELETON_KEYPOINTS: dict[str, str] = {
    "r_ankle": "right_ankle", "r_knee": "right_knee", "r_hip": "right_hip",
    "l_hip": "left_hip", "l_knee": "left_knee", "l_ankle": "left_ankle",
    "r_wrist": "right_wrist", "r_elbow": "right_elbow", "r_shoulder": "right_shoulder",
    "l_shoulder": "left_shoulder", "l_elbow": "left_elbow", "l_wrist": "left_wrist",
    "neck": "neck", "pelvis": "pelvis", "spine": "spine2",
}  # fmt: skip

#: Superset keypoint -> key of ``smplx.vertex_ids`` (nose, eyes, ears and OpenPose feet).
_SMPLX_VERTEX_KEYS: dict[str, str] = {
    "nose": "nose", "l_eye": "leye", "r_eye": "reye", "l_ear": "lear", "r_ear": "rear",
    "l_big_toe": "LBigToe", "l_small_toe": "LSmallToe", "l_heel": "LHeel",
    "r_big_toe": "RBigToe", "r_small_toe": "RSmallToe", "r_heel": "RHeel",
}  # fmt: skip
#: Top of the head on the SMPL topology (shared by STAR); used as head_top in public SMPL code.
SMPL_HEAD_TOP_VERTEX = 411

#: Rows of SPIN's ``J_regressor_h36m.npy`` used here (its order: SPIN's ``H36M_TO_J17``).
H36M_REGRESSOR_ROWS: dict[str, int] = {"spine": 7, "thorax": 8, "jaw": 9, "head": 10}
H36M_WANTED = (
    "J_regressor_h36m.npy, the (17, V) Human3.6M joint regressor of SPIN "
    "(https://github.com/nkolot/SPIN, fetch_data.sh)"
)


def smpl_vertex_keypoints(topology: str) -> dict[str, int]:
    """Default vertex ids of the vertex-picked keypoints for ``smplh`` (SMPL/STAR) or ``smplx``."""
    table = SMPLX_VERTEX_IDS[topology]
    return {k: int(table[v]) for k, v in _SMPLX_VERTEX_KEYS.items()}



def parents_from_kintree(kintree: np.ndarray, fail) -> np.ndarray:
    """Parent column of every joint (root -1) from a ``(2, J)`` kintree_table of ids."""
    ids = kintree[1].astype(np.int64)
    col = {int(i): c for c, i in enumerate(ids)}
    parents = np.full(len(ids), -1, dtype=np.int64)
    for c in range(1, len(ids)):
        p = col.get(int(kintree[0, c]), -1)
        if not 0 <= p < c:  # the chain below walks joints in order, so parents come first
            raise fail(
                f"kintree_table: joint {c} has parent id {kintree[0, c]}, not an earlier joint"
            )
        parents[c] = p
    return parents


def load_uv_obj(path: Path | str, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UV coordinates ``(T, 2)`` and per-face UV indices ``(F, 3)`` aligned with ``faces``.

    The OBJ must hold the same triangles as the model (``f v/vt ...`` lines, any face order and any
    rotation of the corners); its ``vt`` must lie in [0, 1].
    """
    path = Path(path)
    wanted = "an OBJ of the model mesh with texture coordinates ('vt' and 'f v/vt' lines)"
    if not path.is_file():
        raise BodyModelError(f"{path}: UV file not found. Expected {wanted}.")
    text = path.read_text(errors="replace")
    vt = re.findall(r"^vt\s+(\S+)\s+(\S+)", text, re.M)
    tri = re.findall(r"^f\s+(\d+)/(\d+)\S*\s+(\d+)/(\d+)\S*\s+(\d+)/(\d+)\S*\s*$", text, re.M)
    n_f_lines = len(re.findall(r"^f\s", text, re.M))
    if not vt or not tri or len(tri) != n_f_lines:
        raise BodyModelError(
            f"{path}: found {len(vt)} 'vt' lines and {len(tri)} of {n_f_lines} 'f' lines as "
            f"triangles 'f v/vt v/vt v/vt' (1-based). Expected {wanted}."
        )
    uv = np.asarray(vt, dtype=np.float64)
    idx = np.asarray(tri, dtype=np.int64).reshape(-1, 3, 2) - 1
    obj_v, obj_t = idx[..., 0], idx[..., 1]
    if uv.min() < -1e-6 or uv.max() > 1 + 1e-6 or obj_t.min() < 0 or obj_t.max() >= len(uv):
        raise BodyModelError(f"{path}: vt outside [0, 1] or face UV index out of range")
    # Match each model face to the OBJ face with the same vertex set, then align the corners.
    n = int(max(faces.max(), obj_v.max())) + 1

    def key(f: np.ndarray) -> np.ndarray:
        s = np.sort(f, axis=1)
        return (s[:, 0] * n + s[:, 1]) * n + s[:, 2]

    obj_keys = key(obj_v)
    order = np.argsort(obj_keys)
    pos = np.searchsorted(obj_keys[order], key(faces)).clip(max=len(order) - 1)
    match = order[pos]
    found = obj_keys[match] == key(faces)
    if not found.all():
        raise BodyModelError(
            f"{path}: {int((~found).sum())} of the model's {len(faces)} triangles are not in "
            f"the OBJ (first missing: {faces[~found][0].tolist()}). Expected {wanted}."
        )
    corner = np.argmax(obj_v[match][:, None, :] == faces[:, :, None], axis=2)  # (F, 3)
    face_uv = np.take_along_axis(obj_t[match], corner, axis=1)
    return uv, face_uv


def load_h36m_regressor(path: Path | str, num_vertices: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise BodyModelError(f"{path}: H36M regressor not found. Expected {H36M_WANTED}.")
    try:
        reg = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise BodyModelError(f"{path}: cannot read ({e}). Expected {H36M_WANTED}.") from e
    if reg.shape != (17, num_vertices):
        raise BodyModelError(
            f"{path}: shape {reg.shape}, expected (17, {num_vertices}) for this model's mesh. "
            f"Expected {H36M_WANTED}."
        )
    return reg


class LbsBody(BodyModel):
    """Shared plumbing of the SMPL-topology models: buffers, skinning and keypoints.

    Subclasses call :meth:`_setup` and implement :meth:`_pose_features`.
    """

    def _setup(
        self,
        *,
        name: str,
        joint_names: tuple[str, ...],
        v_template: np.ndarray,
        shapedirs: np.ndarray,
        posedirs: np.ndarray,
        j_regressor: np.ndarray,
        parents: np.ndarray,
        weights: np.ndarray,
        faces: np.ndarray,
        vertex_keypoints: dict[str, int],
        h36m_regressor: np.ndarray | None,
        uv_path: Path | str | None,
        dtype: torch.dtype,
    ) -> None:
        self.name = name
        self.joint_names = joint_names
        self.num_shape = shapedirs.shape[2]
        nv = v_template.shape[0]

        def buf(key: str, value: np.ndarray | None, kind: torch.dtype = dtype) -> None:
            tensor = (
                None if value is None else torch.as_tensor(np.ascontiguousarray(value), dtype=kind)
            )
            self.register_buffer(key, tensor, persistent=False)

        buf("v_template", v_template)
        buf("shapedirs", shapedirs)
        buf("posedirs", posedirs.reshape(nv * 3, -1).T)  # (P, V*3) as in smplx
        # Joints are linear in the shape: regress template and shape directions once.
        buf("j_template", j_regressor @ v_template)
        buf("j_shapedirs", np.einsum("jv,vcs->jcs", j_regressor, shapedirs))
        buf("lbs_weights", weights)
        buf("parents", parents, torch.long)
        buf("faces", faces.astype(np.int64), torch.long)
        face_parts = np.argmax(weights[faces].sum(axis=1), axis=1)
        buf("face_parts", face_parts, torch.long)
        self.part_names = joint_names
        buf("flip_joint_permutation", flip_permutation(joint_names), torch.long)
        buf("mean_shape", np.zeros(self.num_shape))
        if uv_path is not None:
            uv, face_uv = load_uv_obj(uv_path, faces)
            buf("uv", uv)
            buf("face_uv", face_uv, torch.long)
        else:
            self.uv = self.face_uv = None
        self._setup_keypoints(vertex_keypoints, h36m_regressor, nv)

    def _setup_keypoints(
        self, vertex_keypoints: dict[str, int], h36m: np.ndarray | None, nv: int
    ) -> None:
        joints = {k: self.joint_names.index(j) for k, j in SKELETON_KEYPOINTS.items()}
        regressed: dict[str, np.ndarray] = {}
        if h36m is not None:
            regressed = {k: h36m[r] for k, r in H36M_REGRESSOR_ROWS.items()}
            joints = {k: v for k, v in joints.items() if k not in regressed}
        for k, v in vertex_keypoints.items():
            if not 0 <= v < nv:
                raise BodyModelError(
                    f"{self.name}: keypoint {k!r} uses vertex {v}, but the mesh has {nv} vertices; "
                    "the default vertex ids are for the official mesh (SMPL/STAR 6890, SMPL-X "
                    "10475 vertices): wrong model file, or pass keypoint_vertex_ids"
                )
        # Gather table into cat([joints, vertex picks, regressed, zero row]).
        sources = list(joints) + list(vertex_keypoints) + list(regressed)
        gather = np.full(NUM_KEYPOINTS, len(sources), dtype=np.int64)
        for i, k in enumerate(sources):
            gather[INDEX[k]] = i
        mask = gather < len(sources)
        self.register_buffer("kp_joints", torch.tensor(list(joints.values())), persistent=False)
        self.register_buffer(
            "kp_vertices", torch.tensor(list(vertex_keypoints.values()), dtype=torch.long),
            persistent=False,
        )  # fmt: skip
        reg = np.stack(list(regressed.values())) if regressed else None
        reg_t = None if reg is None else torch.as_tensor(reg, dtype=self.v_template.dtype)
        self.register_buffer("kp_regressor", reg_t, persistent=False)
        self.register_buffer("kp_gather", torch.as_tensor(gather), persistent=False)
        self.register_buffer("keypoint_mask", torch.as_tensor(mask), persistent=False)
        # The full 17 rows, for evaluation on the H36M protocol (None without the file).
        self.register_buffer(
            "h36m_regressor",
            None if h36m is None else torch.as_tensor(h36m, dtype=self.v_template.dtype),
            persistent=False,
        )

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    def _pose_features(self, rotmats: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward(self, rotmats: torch.Tensor, shape: torch.Tensor) -> BodyOutput:
        dtype = self.v_template.dtype
        if rotmats.dtype != dtype or shape.dtype != dtype:
            raise ValueError(
                f"{self.name}: model is {dtype}, got rotmats {rotmats.dtype} and shape "
                f"{shape.dtype}; convert the inputs or build the model with dtype={rotmats.dtype}"
            )
        b, nj = rotmats.shape[:2]
        v_shaped = self.v_template + blend_shapes(shape, self.shapedirs)
        rest_joints = self.j_template + blend_shapes(shape, self.j_shapedirs)
        pose_offsets = self._pose_features(rotmats, shape) @ self.posedirs
        v_posed = v_shaped + pose_offsets.view(b, -1, 3)
        posed_joints, rel = batch_rigid_transform(rotmats, rest_joints, self.parents, dtype)
        # Blend only the 3x4 part of the joint transforms (the last row is constant).
        blend = torch.matmul(self.lbs_weights, rel[:, :, :3, :].reshape(b, nj, 12))
        blend = blend.view(b, -1, 3, 4)
        vertices = torch.einsum("bvij,bvj->bvi", blend[..., :3], v_posed) + blend[..., 3]
        return BodyOutput(vertices=vertices, keypoints=self._keypoints(vertices, posed_joints))

    def _keypoints(self, vertices: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        parts = [joints[:, self.kp_joints], vertices[:, self.kp_vertices]]
        if self.kp_regressor is not None:
            parts.append(torch.einsum("kv,bvc->bkc", self.kp_regressor, vertices))
        parts.append(vertices.new_zeros(vertices.shape[0], 1, 3))
        return torch.cat(parts, dim=1)[:, self.kp_gather]


_SMPL_BASIC = {"neutral": "neutral", "male": "m", "female": "f"}


def _smpl_files(kind: str, gender: str) -> tuple[list[str], str, str]:
    """Candidate file names inside a folder, the 'wanted' text and the registration site."""
    g = gender.upper()
    if kind == "smpl":
        b = _SMPL_BASIC[gender]
        names = [
            f"SMPL_{g}.npz", f"SMPL_{g}.pkl", f"basicmodel_{b}_lbs_10_207_0_v1.1.0.pkl",
            f"basicModel_{b}_lbs_10_207_0_v1.0.0.pkl",
        ]  # fmt: skip
        return (
            names,
            f"{names[1]} or {names[2]} (the SMPL model, 24 joints)",
            ("https://smpl.is.tue.mpg.de (registration required)"),
        )
    names = [f"SMPLX_{g}.npz", f"SMPLX_{g}.pkl"]
    return (
        names,
        f"{names[0]} (the SMPL-X model, 55 joints)",
        ("https://smpl-x.is.tue.mpg.de (registration required)"),
    )


def _resolve(model_path: Path | str, names: list[str], wanted: str, source: str) -> Path:
    path = Path(model_path)
    if not path.is_dir():
        return path
    for folder in (path, path / names[0].split("_")[0].lower()):
        for n in names:
            if (folder / n).is_file():
                return folder / n
    raise model_error(path, wanted, source, f"folder holds none of {names}")


class SmplBody(LbsBody):
    """SMPL (``kind="smpl"``, 24 regressed joints) or SMPL-X (``kind="smplx"``, 22 body joints).

    Args:
        model_path: the model file (.pkl or .npz), or a folder holding ``SMPL_NEUTRAL.pkl`` etc.
        kind: ``smpl`` or ``smplx``.
        gender: ``neutral``, ``male`` or ``female`` (used to pick the file inside a folder).
        h36m_regressor_path: optional SPIN ``J_regressor_h36m.npy`` (17, V) for spine, thorax,
            jaw and head; without it thorax/jaw/head are absent (``keypoint_mask`` False).
        uv_path: optional OBJ with the mesh's texture coordinates; without it ``uv`` is None and
            the texture loss cannot run with this model.
        num_betas: number of shape coefficients (at most what the file has).
        dtype: float32 for training, float64 for gradient checks.
        keypoint_vertex_ids: override of the vertex ids of vertex-picked keypoints (superset
            names: nose, l_eye, ..., head_top), e.g. for a mesh other than the official one.
    """

    def __init__(
        self,
        model_path: Path | str,
        kind: str = "smpl",
        gender: str = "neutral",
        h36m_regressor_path: Path | str | None = None,
        uv_path: Path | str | None = None,
        num_betas: int = 10,
        dtype: torch.dtype = torch.float32,
        keypoint_vertex_ids: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if kind not in ("smpl", "smplx"):
            raise ValueError(f"kind must be 'smpl' or 'smplx', got {kind!r}")
        if gender not in _SMPL_BASIC:
            raise ValueError(f"gender must be one of {sorted(_SMPL_BASIC)}, got {gender!r}")
        names, wanted, source = _smpl_files(kind, gender)
        path = _resolve(model_path, names, wanted, source)
        data = load_model_file(path, wanted, source)
        nj = 24 if kind == "smpl" else 55
        spec = {
            "v_template": ("V", 3), "f": ("F", 3), "shapedirs": ("V", 3, None),
            "posedirs": ("V", 3, 9 * (nj - 1)), "J_regressor": (nj, "V"),
            "kintree_table": (2, nj), "weights": ("V", nj),
        }  # fmt: skip
        a = check_fields(data, spec, path, wanted, source)

        def fail(problem: str) -> BodyModelError:
            return model_error(path, wanted, source, problem)

        nv = a["v_template"].shape[0]
        if a["f"].min() < 0 or a["f"].max() >= nv:
            raise fail(f"faces index vertices outside [0, {nv})")
        # SMPL-X stores 300 shape then 100 expression directions (10 + 10 in v1.0 files).
        n_avail = a["shapedirs"].shape[2]
        if kind == "smplx":
            n_avail = 300 if n_avail >= 400 else min(n_avail, 10)
        if not 1 <= num_betas <= n_avail:
            raise fail(f"num_betas={num_betas} but the file has {n_avail} shape directions")
        parents = parents_from_kintree(a["kintree_table"], fail)
        weights, posedirs, jreg = a["weights"], a["posedirs"], a["J_regressor"]
        joint_names = SMPL_JOINT_NAMES
        if kind == "smplx":
            nb = SMPLX_BODY_JOINTS
            ancestor = np.arange(nj)
            for j in range(nb, nj):  # parents come first, so one pass resolves chains
                ancestor[j] = ancestor[parents[j]] if parents[j] >= nb else parents[j]
            folded = weights[:, :nb].copy()
            np.add.at(folded, (slice(None), ancestor[nb:]), weights[:, nb:])
            weights, posedirs, jreg = folded, posedirs[:, :, : 9 * (nb - 1)], jreg[:nb]
            parents, joint_names = parents[:nb], SMPL_JOINT_NAMES[:nb]
        top = SMPL_HEAD_TOP_VERTEX if kind == "smpl" else int(np.argmax(a["v_template"][:, 1]))
        vkp = smpl_vertex_keypoints("smplh" if kind == "smpl" else "smplx") | {"head_top": top}
        vkp |= {k: int(v) for k, v in (keypoint_vertex_ids or {}).items() if k in vkp}
        unknown = set(keypoint_vertex_ids or {}) - set(vkp)
        if unknown:
            raise ValueError(
                f"keypoint_vertex_ids: unknown names {sorted(unknown)}; use {sorted(vkp)}"
            )
        h36m = None if h36m_regressor_path is None else load_h36m_regressor(h36m_regressor_path, nv)
        self.kind, self.model_path = kind, path
        self._setup(
            name=kind, joint_names=joint_names, v_template=a["v_template"],
            shapedirs=a["shapedirs"][:, :, :num_betas], posedirs=posedirs, j_regressor=jreg,
            parents=parents, weights=weights, faces=a["f"], vertex_keypoints=vkp,
            h36m_regressor=h36m, uv_path=uv_path, dtype=dtype,
        )  # fmt: skip
        log.info("loaded %s from %s: %d vertices, %d joints, %d betas", kind, path, nv,
                 len(joint_names), num_betas)  # fmt: skip

    def _pose_features(self, rotmats: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        # SMPL's pose corrective input: (R_j - I) of every non-root joint, flattened.
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        return (rotmats[:, 1:] - eye).reshape(rotmats.shape[0], -1)
