"""STAR (Osman, Bolkart, Black, ECCV 2020) behind the :class:`BodyModel` interface.

STAR shares SMPL's mesh topology (6890 vertices), kinematic tree (24 joints) and skinning; it
differs in the pose-corrective blend shapes, which are driven by each non-root joint's unit
quaternion minus the identity quaternion, ``(x, y, z, w - 1)`` (92 numbers), plus the second
shape coefficient ``beta[1]``: 93 inputs to ``posedirs`` of shape (V, 3, 93). This follows the
published formulation and the authors' reference code (github.com/ahmedosman/STAR). The quaternion
is taken from the rotation matrix with ``w >= 0``, which is what STAR's axis-angle code yields for
angles up to pi.

The model file is the user's ``STAR_NEUTRAL.npz`` (or ``STAR_MALE``/``STAR_FEMALE``) from
https://star.is.tue.mpg.de. Keypoints, UVs and part labels are as for SMPL (same topology).
"""

from __future__ import annotations

import logging
from pathlib import Path

import roma
import torch

from texturepose.body.base import BodyModelError
from texturepose.body.chumpy_free import check_fields, load_model_file, model_error
from texturepose.body.smpl_model import (
    SMPL_HEAD_TOP_VERTEX,
    SMPL_JOINT_NAMES,
    LbsBody,
    load_h36m_regressor,
    parents_from_kintree,
    smpl_vertex_keypoints,
)

log = logging.getLogger(__name__)

STAR_WANTED = "STAR_NEUTRAL.npz (or STAR_MALE.npz / STAR_FEMALE.npz, the STAR model, 24 joints)"
STAR_SOURCE = "https://star.is.tue.mpg.de (registration required)"


def star_pose_features(rotmats: torch.Tensor, beta1: torch.Tensor) -> torch.Tensor:
    """STAR's corrective input ``(B, 4*(J-1) + 1)``: ``(x, y, z, w-1)`` per non-root joint, beta1.

    (Quaternion per joint from its rotation matrix, then the second shape coefficient.)
    """
    q = roma.rotmat_to_unitquat(rotmats[:, 1:])  # (B, J-1, 4), XYZW
    q = torch.where(q[..., 3:] < 0, -q, q)  # the hemisphere with w >= 0
    feat = torch.cat([q[..., :3], q[..., 3:] - 1.0], dim=-1).reshape(rotmats.shape[0], -1)
    return torch.cat([feat, beta1.reshape(-1, 1)], dim=1)


class StarBody(LbsBody):
    """STAR with 24 regressed joints and ``num_betas`` (>= 2) shape coefficients.

    Args:
        model_path: the STAR ``.npz`` file, or a folder holding ``STAR_NEUTRAL.npz``.
        num_betas: shape coefficients (STAR files have 300; the correctives use beta[1]).
        dtype: float32 for training, float64 for gradient checks.
        h36m_regressor_path, uv_path, keypoint_vertex_ids: as for :class:`SmplBody` (STAR uses the
            SMPL mesh, so SMPL's regressor and UV file apply).
    """

    def __init__(
        self,
        model_path: Path | str,
        num_betas: int = 10,
        dtype: torch.dtype = torch.float32,
        h36m_regressor_path: Path | str | None = None,
        uv_path: Path | str | None = None,
        keypoint_vertex_ids: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        path = Path(model_path)
        if path.is_dir():
            path = path / "STAR_NEUTRAL.npz"
        data = load_model_file(path, STAR_WANTED, STAR_SOURCE)
        nj = len(SMPL_JOINT_NAMES)
        spec = {
            "v_template": ("V", 3), "f": ("F", 3), "shapedirs": ("V", 3, None),
            "posedirs": ("V", 3, 4 * (nj - 1) + 1), "J_regressor": (nj, "V"),
            "kintree_table": (2, nj), "weights": ("V", nj),
        }  # fmt: skip
        a = check_fields(data, spec, path, STAR_WANTED, STAR_SOURCE)

        def fail(problem: str) -> BodyModelError:
            return model_error(path, STAR_WANTED, STAR_SOURCE, problem)

        nv = a["v_template"].shape[0]
        if a["f"].min() < 0 or a["f"].max() >= nv:
            raise fail(f"faces index vertices outside [0, {nv})")
        n_avail = a["shapedirs"].shape[2]
        if not 2 <= num_betas <= n_avail:
            raise fail(
                f"num_betas={num_betas}: STAR needs at least 2 (its correctives use beta[1]) "
                f"and the file has {n_avail} shape directions"
            )
        vkp = smpl_vertex_keypoints("smplh") | {"head_top": SMPL_HEAD_TOP_VERTEX}
        unknown = set(keypoint_vertex_ids or {}) - set(vkp)
        if unknown:
            raise ValueError(
                f"keypoint_vertex_ids: unknown names {sorted(unknown)}; use {sorted(vkp)}"
            )
        vkp |= {k: int(v) for k, v in (keypoint_vertex_ids or {}).items()}
        h36m = None if h36m_regressor_path is None else load_h36m_regressor(h36m_regressor_path, nv)
        self.model_path = path
        self._setup(
            name="star", joint_names=SMPL_JOINT_NAMES, v_template=a["v_template"],
            shapedirs=a["shapedirs"][:, :, :num_betas], posedirs=a["posedirs"],
            j_regressor=a["J_regressor"], parents=parents_from_kintree(a["kintree_table"], fail),
            weights=a["weights"], faces=a["f"], vertex_keypoints=vkp, h36m_regressor=h36m,
            uv_path=uv_path, dtype=dtype,
        )  # fmt: skip
        log.info("loaded star from %s: %d vertices, %d betas", path, nv, num_betas)

    def _pose_features(self, rotmats: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return star_pose_features(rotmats, shape[:, 1])
