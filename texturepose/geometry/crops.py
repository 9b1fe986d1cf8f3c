"""Square person crops and the transform between crop and original-image pixels.

A crop is a square box of side ``size`` (original pixels) centred at ``center``, resampled to
``res x res`` pixels. The transform is kept in HDF5 so that every crop maps back to its image.
"""

from __future__ import annotations

import cv2
import numpy as np


def crop_matrix(center: np.ndarray, size: float, res: int) -> np.ndarray:
    """2x3 affine matrix taking original-image pixels to crop pixels."""
    scale = res / float(size)
    cx, cy = float(center[0]), float(center[1])
    # Pixel centres: original x maps to (x - (cx - size/2)) * scale - 0.5 + 0.5 (same convention
    # both ways, so round trips are exact).
    return np.array(
        [[scale, 0.0, res / 2.0 - scale * cx], [0.0, scale, res / 2.0 - scale * cy]],
        dtype=np.float64,
    )


def to_crop(points: np.ndarray, center: np.ndarray, size: float, res: int) -> np.ndarray:
    """Map ``(..., 2)`` original-image pixel coordinates into crop pixels."""
    m = crop_matrix(center, size, res)
    return points @ m[:, :2].T + m[:, 2]


def from_crop(points: np.ndarray, center: np.ndarray, size: float, res: int) -> np.ndarray:
    """Map ``(..., 2)`` crop pixel coordinates back to original-image pixels."""
    m = crop_matrix(center, size, res)
    return (points - m[:, 2]) / np.diag(m[:, :2])


def crop_image(
    image: np.ndarray, center: np.ndarray, size: float, res: int, border_value: int = 0
) -> np.ndarray:
    """Resample the square box to ``res x res`` (area-averaged when shrinking)."""
    m = crop_matrix(center, size, res)
    interp = cv2.INTER_AREA if size > res else cv2.INTER_LINEAR
    return cv2.warpAffine(
        image,
        m,
        (res, res),
        flags=interp,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(border_value,) * 3,
    )


def box_from_keypoints(
    xy: np.ndarray, valid: np.ndarray, margin: float = 1.2
) -> tuple[np.ndarray, float]:
    """Square box around the valid keypoints, enlarged by ``margin`` (SPIN uses 1.2)."""
    pts = xy[valid.astype(bool)]
    if len(pts) == 0:
        raise ValueError("cannot build a crop box: no valid keypoints")
    lo, hi = pts.min(0), pts.max(0)
    center = (lo + hi) / 2.0
    size = float(max(hi - lo).max() * margin)
    return center.astype(np.float32), max(size, 1.0)
