"""Vertex regressors for Anny's superset keypoints (built once, cached as an .npz).

How each point is derived (all as fixed linear combinations of mesh vertices, like SMPL's
``J_regressor``, so keypoints follow shape and pose and are differentiable):

* Face and feet points (nose, eyes, ears, big/small toes, heels): Anny's own regressor
  (``anny/data/keypoints/coco.pth``). Its COCO limb points (shoulders, elbows, ...) are not
  used: the superset shares one entry per limb joint and 3D data (H36M) annotates joint
  centres, so the joint-centre regressors below take their place.
* Joint centres (hips, knees, ankles, shoulders, elbows, wrists, spine, thorax, LSP neck): the
  head of an Anny bone (hip = ``upperleg01``, knee = ``lowerleg01``, ankle = ``foot``,
  shoulder = ``upperarm01``, elbow = ``lowerarm01``, wrist = ``wrist``, spine = ``spine03``,
  thorax = ``neck01``, neck = ``head``). For each, non-negative weights summing to one over the
  400 rest-pose vertices nearest the bone head (among vertices skinned to the bone or its parent)
  are fitted by NNLS so that the weighted vertices reproduce Anny's posed bone head over 96
  random phenotypes and poses (0.35 rad per bone). The fit residual is stored with the cache
  (``residual_mm``) and logged; measured: wrists 0.6, ankles 2.6, neck 3.5, thorax 5.3,
  elbows 5.3, shoulders 7, spine 10, hips 14, knees 25 mm (LBS moves knee skin non-linearly).
* pelvis: midpoint of the two hips; jaw (H36M "neck/nose"): midpoint of the LSP neck and the
  nose; head (H36M "head"): centroid of the vertices skinned to the ``head`` bone;
  head_top: mean of the 10 highest head vertices at rest.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import roma
import torch
from scipy.optimize import nnls

from texturepose.files import atomic_path
from texturepose.keypoints import INDEX, NUM_KEYPOINTS

if TYPE_CHECKING:
    from texturepose.body.anny_model import AnnyBody

log = logging.getLogger(__name__)

CACHE_NAME = "texturepose_keypoints_v1.npz"

JOINT_BONES: dict[str, str] = {
    "l_hip": "upperleg01.L", "r_hip": "upperleg01.R",
    "l_knee": "lowerleg01.L", "r_knee": "lowerleg01.R",
    "l_ankle": "foot.L", "r_ankle": "foot.R",
    "l_shoulder": "upperarm01.L", "r_shoulder": "upperarm01.R",
    "l_elbow": "lowerarm01.L", "r_elbow": "lowerarm01.R",
    "l_wrist": "wrist.L", "r_wrist": "wrist.R",
    "spine": "spine03", "thorax": "neck01", "neck": "head",
}  # fmt: skip
#: Points taken as they are from Anny's own regressor (its coco.pth also has the feet points).
FROM_ANNY = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear",
    "l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel",
)  # fmt: skip


def anny_keypoint_regressor(body: AnnyBody, coco, cache_dir: str | os.PathLike) -> torch.Tensor:
    """(K, V) float32 weights; loaded from ``cache_dir/CACHE_NAME`` or built and saved there."""
    path = Path(cache_dir) / CACHE_NAME
    if path.exists():
        with np.load(path) as z:
            w = z["weights"]
        if w.shape == (NUM_KEYPOINTS, body.num_vertices):
            return torch.from_numpy(w).float()
        log.warning("%s has shape %s, rebuilding", path, w.shape)
    w, residual_mm = build_regressor(body, coco)
    with atomic_path(path) as tmp:
        np.savez(tmp, weights=w, residual_mm=residual_mm)
    log.info("Anny keypoint regressors saved to %s (joint fit residual %.2f mm mean)", path,
             float(np.mean(list(residual_mm))))
    return torch.from_numpy(w).float()


def _random_samples(body: AnnyBody, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = torch.rand(n, body.num_shape, generator=g)
    aa = torch.randn(n, body.num_joints, 3, generator=g) * 0.35
    return roma.rotvec_to_rotmat(aa), shape


@torch.no_grad()
def build_regressor(body: AnnyBody, coco) -> tuple[np.ndarray, np.ndarray]:
    native = body.native
    labels = list(native.bone_labels)
    v_count = body.num_vertices
    w = np.zeros((NUM_KEYPOINTS, v_count), np.float64)
    coco_w = coco.regression_weights.double().numpy()
    for k, name in enumerate(coco.labels):
        sup = _coco_label_to_superset(name)
        if sup in FROM_ANNY:
            w[INDEX[sup]] = coco_w[k]

    rest = native(None, None)
    rest_v = rest["vertices"][0].double().numpy()  # Anny frame, z up, facing -y
    rotmats, shape = _random_samples(body, 96)
    out = native(body.native_pose(rotmats), shape)
    verts = out["vertices"].double().numpy()  # (N, V, 3)
    heads = out["bone_poses"][:, :, :3, 3].double().numpy()  # (N, 104, 3)
    rest_heads = rest["bone_poses"][0, :, :3, 3].double().numpy()
    skin_w = native.vertex_bone_weights.double().numpy()
    skin_i = native.vertex_bone_indices.numpy()

    residual = []
    for name, bone in JOINT_BONES.items():
        b = labels.index(bone)
        parent = native.bone_parents[b]
        related = (np.isin(skin_i, [b, parent]) * skin_w).sum(1) > 0.05
        cand = np.flatnonzero(related)
        d = np.linalg.norm(rest_v[cand] - rest_heads[b], axis=1)
        cand = cand[np.argsort(d)[:400]]
        a = verts[:, cand, :].transpose(0, 2, 1).reshape(-1, len(cand))  # (3N, C)
        y = heads[:, b, :].reshape(-1)
        lam = 10.0
        a_aug = np.vstack([a, lam * np.ones((1, len(cand)))])
        y_aug = np.concatenate([y, [lam]])
        x, _ = nnls(a_aug, y_aug, maxiter=5000)
        x /= x.sum()
        w[INDEX[name], cand] = x
        err = np.linalg.norm((verts[:, cand, :] * x[None, :, None]).sum(1) - heads[:, b], axis=1)
        residual.append(err.mean() * 1000.0)
        log.debug("Anny %s <- %s: %.2f mm", name, bone, residual[-1])

    w[INDEX["pelvis"]] = 0.5 * (w[INDEX["l_hip"]] + w[INDEX["r_hip"]])
    w[INDEX["jaw"]] = 0.5 * (w[INDEX["neck"]] + w[INDEX["nose"]])

    def mean_of(ids: np.ndarray) -> np.ndarray:
        row = np.zeros(v_count)
        row[ids] = 1.0 / len(ids)
        return row

    def skinned(prefixes: tuple[str, ...]) -> np.ndarray:
        ids = [i for i, lab in enumerate(labels) if lab.startswith(prefixes)]
        return np.flatnonzero((np.isin(skin_i, ids) * skin_w).sum(1) > 0.5)

    head_v = skinned(("head",))
    w[INDEX["head"]] = mean_of(head_v)
    w[INDEX["head_top"]] = mean_of(head_v[np.argsort(-rest_v[head_v, 2])[:10]])
    return w.astype(np.float32), np.array(residual)


def _coco_label_to_superset(label: str) -> str:
    """Anny's COCO labels ('nose', 'left_eye', ...) -> superset names ('l_eye')."""
    lab = label.lower().replace("-", "_").replace(" ", "_")
    for long, short in (("left_", "l_"), ("right_", "r_")):
        if lab.startswith(long):
            lab = short + lab[len(long):]
    return lab
