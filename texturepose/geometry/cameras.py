"""Cameras: SPIN's weak-perspective -> perspective conversion, intrinsics, projection.

Camera frame (OpenCV): x right, y down, z forward (into the scene), metres. Pixel coordinates:
``u`` to the right, ``v`` down, and pixel ``(row i, column j)`` covers ``[j, j+1) x [i, i+1)``, so
its centre is at ``(j + 0.5, i + 0.5)``; the default principal point ``(w/2, h/2)`` is the image
centre. The rasteriser samples coverage at pixel centres and texture sampling uses
``grid_sample(..., align_corners=False)``, which follow the same convention.

Body models return vertices in their canonical frame (Y up, facing +Z). To put a body into the
camera frame facing the camera (SPIN convention), its global orientation includes the 180 degree
rotation about x, :data:`BODY_TO_CAMERA` = ``diag(1, -1, -1)``: Y up becomes -y (up in the image)
and the body's front (+Z) faces the camera (-z).
"""

from __future__ import annotations

import torch

#: 180 degree rotation about x: canonical body frame (Y up, facing +Z) -> OpenCV camera frame.
BODY_TO_CAMERA = torch.diag(torch.tensor([1.0, -1.0, -1.0]))

#: SPIN's perspective focal length for 224-px crops; it scales with the crop resolution.
SPIN_FOCAL_224 = 5000.0


def weak_to_perspective_translation(
    cam: torch.Tensor, focal: float | torch.Tensor = SPIN_FOCAL_224, res: int = 224,
    eps: float = 1e-9,
) -> torch.Tensor:
    """Weak-perspective camera ``(s, tx, ty)`` -> perspective translation ``(tx, ty, 2f/(res s))``.

    ``cam`` is ``(B, 3)`` in SPIN's normalised crop coordinates (the crop spans [-1, 1]);
    ``focal`` is one focal length in pixels of the ``res`` crop or one per sample ``(B,)``. A
    point ``X`` at depth 0 of the body frame then projects to the same pixel under both cameras:
    ``u = f (X + tx) / t_z + res/2 = (s (X + tx) + 1) res / 2``. ``s`` is clamped to ``eps`` so
    that a degenerate prediction gives a far camera rather than a division by zero.
    """
    if cam.dim() != 2 or cam.shape[-1] != 3:
        raise ValueError(f"cam must be (B, 3) [s, tx, ty], got {tuple(cam.shape)}")
    s = cam[:, 0].clamp(min=eps)
    tz = 2.0 * torch.as_tensor(focal, dtype=cam.dtype, device=cam.device) / (res * s)
    return torch.stack([cam[:, 1], cam[:, 2], tz], dim=-1)


def weak_perspective_project(points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """``(B, K, 3)`` camera-oriented points and ``(B, 3)`` cameras ``(s, tx, ty)`` ->
    ``(B, K, 2)`` normalised crop coordinates: ``x_n = s (X + tx)``, ``y_n = s (Y + ty)``."""
    return cam[:, None, :1] * (points[..., :2] + cam[:, None, 1:])


def crop_perspective_project(
    points: torch.Tensor, cam: torch.Tensor, focal: float | torch.Tensor, res: int,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Perspective projection of camera-oriented body points into a ``res`` crop whose camera
    has focal length ``focal`` (pixels of that crop; a float or ``(B,)``) and its principal
    point at the crop centre, with the body at ``weak_to_perspective_translation``. Returns
    ``(B, K, 2)`` normalised crop coordinates ``x_n = 2 f X_c / (res Z_c)``."""
    f = torch.as_tensor(focal, dtype=points.dtype, device=points.device)
    p = points + weak_to_perspective_translation(cam, f, res)[:, None, :]
    scale = (2.0 * f / res).reshape(-1, 1, 1) if f.dim() else 2.0 * f / res
    return scale * p[..., :2] / p[..., 2:].clamp(min=eps)


def intrinsics(
    focal: float | tuple[float, float],
    res: int | tuple[int, int],
    cx: float | None = None,
    cy: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Pinhole intrinsics ``(3, 3)``. ``res`` is a square size or ``(width, height)``; the
    principal point defaults to the image centre ``(w/2, h/2)``; ``focal`` is ``f`` or
    ``(fx, fy)`` in pixels."""
    w, h = (res, res) if isinstance(res, int) else res
    fx, fy = (focal, focal) if isinstance(focal, (int, float)) else focal
    cx = w / 2.0 if cx is None else cx
    cy = h / 2.0 if cy is None else cy
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=dtype,
                        device=device)


def batched_intrinsics(
    focal: float | torch.Tensor,
    res: int | tuple[int, int],
    batch: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(B, 3, 3)`` intrinsics with the principal point at the image centre; ``focal`` is a
    float or a ``(B,)`` tensor of focal lengths in pixels."""
    w, h = (res, res) if isinstance(res, int) else res
    f = torch.as_tensor(focal, dtype=dtype, device=device).expand(batch)
    k = torch.zeros(batch, 3, 3, dtype=dtype, device=device)
    k[:, 0, 0] = f
    k[:, 1, 1] = f
    k[:, 0, 2] = w / 2.0
    k[:, 1, 2] = h / 2.0
    k[:, 2, 2] = 1.0
    return k


def project(points_cam: torch.Tensor, K: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pixel coordinates ``(B, N, 2)`` of camera-frame points ``(B, N, 3)`` under ``K (B, 3, 3)``
    (or a shared ``(3, 3)``). Depths are clamped to ``eps`` to stay finite behind the camera."""
    if K.dim() == 2:
        K = K.unsqueeze(0)
    z = points_cam[..., 2:3].clamp(min=eps)
    xy = points_cam[..., :2] / z
    u = K[:, None, 0, 0:1] * xy[..., 0:1] + K[:, None, 0, 1:2] * xy[..., 1:2] + K[:, None, 0, 2:3]
    v = K[:, None, 1, 1:2] * xy[..., 1:2] + K[:, None, 1, 2:3]
    return torch.cat([u, v], dim=-1)


def world_to_camera(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``X_cam = R X + t`` for points ``(B, N, 3)``, ``R (B, 3, 3)``, ``t (B, 3)`` (OpenCV
    extrinsics: the rotation and translation from world to camera)."""
    return points @ R.transpose(-1, -2) + t[:, None, :]


def camera_to_world(points_cam: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`world_to_camera`."""
    return (points_cam - t[:, None, :]) @ R


def pixel_rays(uv: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame ray directions ``(B, N, 3)`` with ``z = 1`` through pixel positions
    ``uv (B, N, 2)``: the points at unit depth that project to ``uv``."""
    if K.dim() == 2:
        K = K.unsqueeze(0)
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy, skew = K[:, 0, 2, None], K[:, 1, 2, None], K[:, 0, 1, None]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - skew * y) / fx
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def crop_focal(focal: float | torch.Tensor | None, res: int,
               default_224: float = SPIN_FOCAL_224) -> torch.Tensor | float:
    """Focal lengths (pixels of a ``res`` crop) to project with: ``focal`` where it is known
    (``> 0``; a float or ``(B,)`` from the samples' calibrated cameras), elsewhere SPIN's
    convention ``default_224 * res / 224``."""
    default = default_224 * res / 224.0
    if focal is None:
        return default
    f = torch.as_tensor(focal)
    if f.dim() == 0:
        return float(f) if float(f) > 0 else default
    return torch.where(f > 0, f, torch.full_like(f, default))


def perspective_vertices(
    vertices: torch.Tensor, cam: torch.Tensor, res: int,
    focal: float | torch.Tensor | None = None, focal_224: float = SPIN_FOCAL_224,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | float]:
    """Camera-frame vertices and intrinsics ``(B, 3, 3)`` of the perspective camera of a ``res``
    crop for the predicted weak-perspective ``cam``: focal ``focal`` where known (see
    :func:`crop_focal`), else SPIN's ``focal_224 * res / 224``. Returns the focal lengths too."""
    f = crop_focal(focal, res, focal_224)
    f_t = torch.as_tensor(f, dtype=vertices.dtype, device=vertices.device)
    t = weak_to_perspective_translation(cam, f_t, res)
    k = batched_intrinsics(f_t, res, vertices.shape[0], dtype=vertices.dtype,
                           device=vertices.device)
    return vertices + t[:, None, :], k, f
