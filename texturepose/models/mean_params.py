"""The regressor's starting point: mean pose (from mocap), mean shape and a mean camera.

The mean rotation of each joint is the rotation closest (Frobenius) to the average of its mocap
rotation matrices: the special-orthogonal Procrustes projection of their sum (roma). The global
orientation is not averaged (mocap headings are arbitrary): it is fixed so that an upright
person faces the camera in the OpenCV camera frame (x right, y down, z forward), i.e. a 180°
rotation about x of the Y-up, +Z-facing body frame, as in SPIN.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import roma
import torch

from texturepose.files import atomic_path
from texturepose.geometry.rotations import matrix_to_rot6d

log = logging.getLogger(__name__)

#: Body frame (Y up, facing +Z) -> OpenCV camera frame (Y down, looking along +Z): R_x(180°).
CAMERA_FACING = np.diag([1.0, -1.0, -1.0])
#: SPIN's mean weak-perspective camera: scale 0.9 of the normalised crop, centred.
DEFAULT_CAM = (0.9, 0.0, 0.0)
KEYS = ("rot6d", "shape", "cam")


def compute_mean_params(
    rotmats: np.ndarray | torch.Tensor,
    shape: np.ndarray | torch.Tensor,
    cam: tuple[float, float, float] = DEFAULT_CAM,
) -> dict[str, np.ndarray]:
    """Mean parameters from mocap poses.

    Args:
        rotmats: ``(N, J, 3, 3)`` rotation matrices of the body model's regressed joints.
        shape: ``(N, S)`` shape parameters of the poses' bodies, or ``(S,)`` (e.g. the body
            model's ``mean_shape`` when the mocap has none).
        cam: mean weak-perspective camera ``(s, tx, ty)``.

    Returns:
        ``{"rot6d": (J*6,), "shape": (S,), "cam": (3,)}`` float32 arrays.
    """
    r = torch.as_tensor(np.asarray(rotmats), dtype=torch.float64)
    if r.dim() != 4 or r.shape[-2:] != (3, 3) or r.shape[0] < 1:
        raise ValueError(f"mocap rotmats must be (N>=1, J, 3, 3), got {tuple(r.shape)}")
    if not torch.isfinite(r).all():
        raise ValueError("mocap rotmats contain NaN or infinite values")
    ortho = (r.transpose(-1, -2) @ r - torch.eye(3, dtype=r.dtype)).abs().amax()
    if ortho > 1e-3 or (torch.linalg.det(r) < 0).any():
        raise ValueError(
            f"mocap rotmats are not rotation matrices (max |R^T R - I| = {float(ortho):.2e})"
        )
    mean_r = roma.special_procrustes(r.sum(dim=0))  # (J, 3, 3)
    mean_r[0] = torch.as_tensor(CAMERA_FACING, dtype=mean_r.dtype)
    s = np.asarray(shape, dtype=np.float64)
    if s.ndim == 2:
        s = s.mean(axis=0)
    if s.ndim != 1 or not np.isfinite(s).all():
        raise ValueError(f"shape must be (N, S) or (S,) finite values, got {s.shape}")
    c = np.asarray(cam, dtype=np.float64)
    if c.shape != (3,) or c[0] <= 0:
        raise ValueError(f"cam must be (s > 0, tx, ty), got {cam}")
    log.info("mean parameters from %d mocap poses of %d joints", r.shape[0], r.shape[1])
    return {
        "rot6d": matrix_to_rot6d(mean_r).reshape(-1).numpy().astype(np.float32),
        "shape": s.astype(np.float32),
        "cam": c.astype(np.float32),
    }


def save_mean_params(path: str | os.PathLike, params: dict[str, np.ndarray]) -> Path:
    """Write the mean parameters to ``path`` (.npz), atomically."""
    path = Path(path)
    missing = [k for k in KEYS if k not in params]
    if missing:
        raise ValueError(f"mean params lack {missing}; expected keys {KEYS}")
    with atomic_path(path) as tmp:
        np.savez(tmp, **{k: np.asarray(params[k], dtype=np.float32) for k in KEYS})
    return path


def load_mean_params(
    path: str | os.PathLike, num_joints: int | None = None, num_shape: int | None = None
) -> dict[str, np.ndarray]:
    """Read mean parameters written by :func:`save_mean_params`, checking sizes when given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"mean parameters file {path} does not exist: run the stage that computes them "
            f"from the mocap poses (compute_mean_params + save_mean_params)"
        )
    with np.load(path) as z:
        missing = [k for k in KEYS if k not in z.files]
        if missing:
            raise ValueError(f"{path}: mean params lack arrays {missing}; expected {KEYS}")
        params = {k: z[k].astype(np.float32) for k in KEYS}
    check_mean_params(params, num_joints, num_shape, source=str(path))
    return params


def check_mean_params(
    params: dict[str, np.ndarray],
    num_joints: int | None = None,
    num_shape: int | None = None,
    source: str = "mean params",
) -> None:
    """Raise ``ValueError`` naming ``source`` when sizes do not fit the body model."""
    shapes = {k: tuple(np.shape(params[k])) for k in KEYS if k in params}
    if set(shapes) != set(KEYS):
        raise ValueError(f"{source}: expected arrays {KEYS}, got {sorted(params)}")
    j6 = num_joints * 6 if num_joints is not None else shapes["rot6d"][0]
    s = num_shape if num_shape is not None else shapes["shape"][0]
    expected = {"rot6d": (j6,), "shape": (s,), "cam": (3,)}
    for k in KEYS:
        if shapes[k] != expected[k]:
            raise ValueError(
                f"{source}: '{k}' has shape {shapes[k]}, expected {expected[k]} for a body model "
                f"with {j6 // 6} joints and {s} shape parameters: recompute the mean params for "
                f"this body model"
            )
        if not np.isfinite(params[k]).all():
            raise ValueError(f"{source}: '{k}' holds NaN or infinite values")


def mean_params_from_mocap(
    path: str | os.PathLike,
    joint_names: tuple[str, ...] | None = None,
    cam: tuple[float, float, float] = DEFAULT_CAM,
) -> dict[str, np.ndarray]:
    """Mean parameters from the mocap-poses HDF5 (:mod:`texturepose.mocap.poses`): its
    ``rotmats`` and the clips' fitted ``shape``. ``joint_names``, when given
    (``BodyModel.joint_names``), must equal the file's, so a file of another body model is
    refused."""
    from texturepose.mocap.poses import read_mocap_h5

    mocap = read_mocap_h5(path)
    if joint_names is not None and tuple(mocap["joint_names"]) != tuple(joint_names):
        raise ValueError(
            f"{path}: mocap joints {mocap['joint_names']} are not the body model's "
            f"{tuple(joint_names)}: rerun the mocap stage for this body model"
        )
    return compute_mean_params(mocap["rotmats"], mocap["shape"], cam)
