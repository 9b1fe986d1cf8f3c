"""Made-up SMPL/SMPL-X/STAR model files (right format, invented numbers) for tests and bench.

The licences of the real files forbid shipping them, so tests build small bodies of the same
format: a skeleton shaped roughly like SMPL's, vertex clusters around each joint, skinning to the
joint and its parent, random shape and pose correctives. ``symmetric=True`` makes the whole model
exactly left-right symmetric (vertices, weights, regressor, shape and pose correctives) so that
mirroring a pose must mirror the output.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse

SMPL_PARENTS = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
)
# SMPL-X: SMPL's first 22 joints, then jaw and eyes (head), then 15 joints per hand (wrists).
_HAND = [0, 1, 2] * 5  # three-joint fingers: 1st joint -> wrist, then chained
SMPLX_PARENTS = np.concatenate(
    [
        SMPL_PARENTS[:22],
        [15, 15, 15],
        [20 if k == 0 else 25 + 3 * (i // 3) + k - 1 for i, k in enumerate(_HAND)],
        [21 if k == 0 else 40 + 3 * (i // 3) + k - 1 for i, k in enumerate(_HAND)],
    ]
).astype(np.int64)
CENTER = {0, 3, 6, 9, 12, 15}  # pelvis, spines, neck, head: on the mid-plane
# Mirror joint of each SMPL joint (left <-> right).
SMPL_MIRROR = np.array(
    [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22]
)
# Rough SMPL rest joints (metres, Y up, facing +Z, left at +X) for the left/center joints.
_REST = {
    0: (0, -0.22, 0.02), 1: (0.06, -0.31, 0.01), 3: (0, -0.11, -0.01), 4: (0.1, -0.69, 0.0),
    6: (0, 0.03, 0.01), 7: (0.09, -1.09, -0.03), 9: (0, 0.08, 0.03), 10: (0.12, -1.14, 0.09),
    12: (0, 0.29, -0.01), 13: (0.08, 0.19, 0.0), 15: (0, 0.36, 0.05), 16: (0.17, 0.23, -0.01),
    18: (0.43, 0.21, -0.03), 20: (0.69, 0.22, -0.04), 22: (0.77, 0.21, -0.05),
}  # fmt: skip


def smpl_rest_joints() -> np.ndarray:
    j = np.zeros((24, 3))
    for i, p in _REST.items():
        j[i] = p
        j[SMPL_MIRROR[i]] = (-p[0], p[1], p[2])
    return j


def _pose_op(p: np.ndarray, kind: str) -> np.ndarray:
    """Pose correctives of the mirrored body: joint swap, then the features' reflection signs."""
    nv = p.shape[0]
    s = np.array([-1.0, 1.0, 1.0])
    out = np.empty_like(p)
    if kind == "star":  # features (x, y, z, w-1) per joint: M R M has quaternion (x, -y, -z, w)
        q = p[:, :, :92].reshape(nv, 3, 23, 4) * np.array([1.0, -1.0, -1.0, 1.0])
        qm = np.empty_like(q)
        qm[:, :, SMPL_MIRROR[1:] - 1] = q
        out[:, :, :92] = qm.reshape(nv, 3, 92)
        out[:, :, 92:] = p[:, :, 92:]  # beta1 is unchanged
    else:  # features (R - I)[a, b] per joint: M R M flips the signs s_a s_b
        q = p.reshape(nv, 3, 23, 3, 3) * (s[:, None] * s[None, :])
        qm = np.empty_like(q)
        qm[:, :, SMPL_MIRROR[1:] - 1] = q
        out = qm.reshape(nv, 3, -1)
    return out * s[None, :, None]  # the displacement itself is reflected


def _symmetrize(x: np.ndarray, mirror: np.ndarray, op) -> np.ndarray:
    """Average with the mirrored copy so that ``x[mirror[i]] == op(x)[i]`` exactly."""
    return (x + op(x[mirror])) / 2


def make_model(
    rng: np.random.Generator,
    kind: str = "smpl",
    verts_per_joint: int = 6,
    num_betas: int = 10,
    symmetric: bool = True,
    num_vertices: int | None = None,
) -> dict:
    """Arrays of a made-up model in the file layout (``kind``: smpl, smplx, star).

    Extra keys (not written to files): ``mirror`` (vertex mirror permutation of a symmetric
    model, else None) and ``vertex_ids`` (vertex picks for the keypoints).
    """
    parents = SMPLX_PARENTS if kind == "smplx" else SMPL_PARENTS
    nj = len(parents)
    rest = np.zeros((nj, 3))
    rest[:24] = smpl_rest_joints()
    for j in range(24, nj):
        rest[j] = rest[parents[j]] + rng.normal(0, 0.03, 3)
    if symmetric:
        assert kind != "smplx" and verts_per_joint % 2 == 0
        side = [j for j in range(24) if rest[j, 0] > 0 or j in CENTER]
        owner_h = np.concatenate(
            [[j] * (verts_per_joint // 2 if j in CENTER else verts_per_joint) for j in side]
        ).astype(np.int64)
        off = rng.normal(0, 0.04, (len(owner_h), 3))
        off[np.isin(owner_h, list(CENTER)), 0] = (
            np.abs(off[np.isin(owner_h, list(CENTER)), 0]) + 0.01
        )
        v_h = rest[owner_h] + off
        mid_owner = np.repeat(sorted(CENTER), 2)
        v_mid = rest[mid_owner] + rng.normal(0, 0.04, (len(mid_owner), 3)) * (0, 1, 1)
        h = len(owner_h)
        owner = np.concatenate([owner_h, SMPL_MIRROR[owner_h], mid_owner])
        v = np.concatenate([v_h, v_h * (-1, 1, 1), v_mid])
        mirror = np.concatenate(
            [np.arange(h, 2 * h), np.arange(h), 2 * h + np.arange(len(mid_owner))]
        )
    else:
        nv = num_vertices or verts_per_joint * nj
        owner = np.arange(nv) % nj
        v = rest[owner] + rng.normal(0, 0.04, (nv, 3))
        mirror = None
    nv = len(v)
    weights = np.zeros((nv, nj))
    weights[np.arange(nv), owner] = 0.7
    weights[np.arange(nv), np.maximum(parents[owner], 0)] += 0.3
    jreg = np.zeros((nj, nv))
    jreg[owner, np.arange(nv)] = 1.0
    jreg /= jreg.sum(axis=1, keepdims=True)
    n_pose = 4 * 23 + 1 if kind == "star" else 9 * (nj - 1)
    n_shape = 400 if kind == "smplx" else num_betas
    shapedirs = rng.normal(0, 0.02, (nv, 3, n_shape))
    posedirs = rng.normal(0, 0.01, (nv, 3, n_pose))
    if symmetric:
        shapedirs = _symmetrize(shapedirs, mirror, lambda x: x * np.array([-1.0, 1, 1])[:, None])
        posedirs = _symmetrize(posedirs, mirror, lambda x: _pose_op(x, kind))
    # Triangles inside each joint's cluster (mirrored with reversed winding when symmetric).
    tris = []
    for j in range(nj):
        idx = (
            np.flatnonzero(owner[: len(owner_h)] == j) if symmetric else np.flatnonzero(owner == j)
        )
        for _ in range(len(idx) if len(idx) >= 3 else 0):
            tris.append(rng.choice(idx, 3, replace=False))
    f = np.array(tris, dtype=np.int64).reshape(-1, 3)
    _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
    f = f[np.sort(first)]  # a real mesh has no duplicate triangles
    if symmetric:
        f = np.concatenate([f, mirror[f][:, ::-1]])
    kintree = np.stack([np.where(parents < 0, 4294967295, parents), np.arange(nj)]).astype(np.int64)
    if symmetric:
        head = np.flatnonzero(owner_h == 15)
        foot = np.flatnonzero(owner_h == 10)
        mid_head = 2 * h + np.flatnonzero(mid_owner == 15)
        left = {"l_eye": head[0], "l_ear": head[1], "l_big_toe": foot[0],
                "l_small_toe": foot[1], "l_heel": foot[2]}  # fmt: skip
        v_ids = left | {"r_" + k[2:]: mirror[i] for k, i in left.items()}
        v_ids |= {"nose": mid_head[0], "head_top": mid_head[1]}
    else:
        names = ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_big_toe", "l_small_toe",
                 "l_heel", "r_big_toe", "r_small_toe", "r_heel", "head_top")  # fmt: skip
        v_ids = {k: 3 * i + 1 for i, k in enumerate(names)}
    return {
        "v_template": v, "f": f, "shapedirs": shapedirs, "posedirs": posedirs,
        "J_regressor": jreg, "kintree_table": kintree, "weights": weights,
        "mirror": mirror, "vertex_ids": {k: int(i) for k, i in v_ids.items()},
    }  # fmt: skip


FILE_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights")


def file_arrays(model: dict) -> dict[str, np.ndarray]:
    return {k: model[k] for k in FILE_KEYS}


def save_npz(model: dict, path: Path, **extra: np.ndarray) -> Path:
    np.savez(path, **file_arrays(model), **extra)
    return path


class _FakeCh:
    """Pickles like chumpy's ``Ch``: class ``chumpy.ch.Ch`` with its ``__dict__`` as state."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self._dirty_vars = set()
        self._itr = None
        self._depends_on_deps = {}

    def __getstate__(self) -> dict:
        return dict(self.__dict__)


class _FakeChExpr(_FakeCh):
    """A chumpy operator node (no stored value)."""

    def __init__(self) -> None:
        self.a, self.b = _FakeCh(np.zeros(3)), _FakeCh(np.ones(3))


def save_chumpy_pkl(
    model: dict, path: Path, protocol: int = 2, expr_key: str | None = None
) -> Path:
    """Pickle the model like the official SMPL files: Ch objects and a sparse J_regressor.

    The fake ``chumpy`` modules exist only while pickling, so loading must not need them.
    ``expr_key``: store that field as a chumpy expression instead of a value.
    """
    ch = types.ModuleType("chumpy.ch")
    ops = types.ModuleType("chumpy.ch_ops")
    _FakeCh.__module__, _FakeCh.__qualname__ = "chumpy.ch", "Ch"
    _FakeChExpr.__module__, _FakeChExpr.__qualname__ = "chumpy.ch_ops", "add"
    ch.Ch, ops.add = _FakeCh, _FakeChExpr
    a = file_arrays(model)
    data = {
        "v_template": _FakeCh(a["v_template"]), "shapedirs": _FakeCh(a["shapedirs"]),
        "posedirs": a["posedirs"], "J_regressor": scipy.sparse.csc_matrix(a["J_regressor"]),
        "weights": _FakeCh(a["weights"]), "f": a["f"].astype(np.uint32),
        "kintree_table": a["kintree_table"], "J": _FakeCh(a["J_regressor"] @ a["v_template"]),
        "bs_style": "lbs", "bs_type": "lrotmin", "vert_sym_idxs": np.arange(len(a["f"])),
    }  # fmt: skip
    if expr_key:
        data[expr_key] = _FakeChExpr()
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch", "chumpy.ch_ops")}
    sys.modules.update(
        {"chumpy": types.ModuleType("chumpy"), "chumpy.ch": ch, "chumpy.ch_ops": ops}
    )
    try:
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=protocol)
    finally:
        for k, m in saved.items():
            if m is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = m
    return path


def write_uv_obj(
    model: dict, path: Path, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """An OBJ of the mesh with random UVs, faces shuffled and corners rotated.

    Returns the UVs and per-face UV indices aligned with the model's own faces (the oracle).
    """
    f = model["f"]
    uv = rng.uniform(0, 1, (len(f) * 3, 2))
    face_uv = np.arange(len(f) * 3).reshape(-1, 3)
    order = rng.permutation(len(f))
    roll = rng.integers(0, 3, len(f))
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in model["v_template"]]
    lines += [f"vt {a:.9f} {b:.9f}" for a, b in uv]
    for i in order:
        c = np.roll(np.arange(3), roll[i])
        lines.append("f " + " ".join(f"{f[i, k] + 1}/{face_uv[i, k] + 1}" for k in c))
    path.write_text("\n".join(lines) + "\n")
    return np.round(uv, 9), face_uv
