"""Native keypoint orders that :mod:`texturepose.data.keypoints` does not list yet (SPIN's 24,
MPI-INF-3DHP's 28 and 17, OpenPose/COCO-18 of 3DPW), scattered into the superset by name.

Names are the superset's; ``None`` marks a native point with no superset entry.
"""

from __future__ import annotations

import numpy as np

from texturepose.data.keypoints import INDEX, NUM_KEYPOINTS, SUPERSET

#: SPIN's 24 ground-truth joints ("part"/"S" in its npz files) are the superset's first 24.
SPIN24: tuple[str | None, ...] = SUPERSET[:24]

#: MPI-INF-3DHP's 28 training joints (annot.mat), in the dataset's order.
MPI3DHP28: tuple[str | None, ...] = (
    None, None, None, "spine", "pelvis", "thorax", "head", "head_top",  # spine3, spine4, spine2
    None, "l_shoulder", "l_elbow", "l_wrist", None,  # l_clavicle ... l_hand
    None, "r_shoulder", "r_elbow", "r_wrist", None,
    "l_hip", "l_knee", "l_ankle", None, None,  # l_foot, l_toe
    "r_hip", "r_knee", "r_ankle", None, None,
)  # fmt: skip
#: The 17 test-set joints (annot_data.mat, mmpose's npz) as indices into the 28.
MPI3DHP28_TO_17 = (7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6)
MPI3DHP17: tuple[str | None, ...] = tuple(MPI3DHP28[i] for i in MPI3DHP28_TO_17)

#: OpenPose COCO-18 (3DPW's ``poses2d``).
OPENPOSE18: tuple[str | None, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip


def names_to_superset(points: np.ndarray, names: tuple[str | None, ...], fill: float = 0.0
                      ) -> np.ndarray:
    """Scatter ``(..., N, C)`` points given in the native order ``names`` into ``(..., K, C)``."""
    if points.shape[-2] != len(names):
        raise ValueError(f"expected {len(names)} points on axis -2, got shape {points.shape}")
    src = np.array([i for i, n in enumerate(names) if n is not None])
    dst = np.array([INDEX[n] for n in names if n is not None])
    out = np.full(points.shape[:-2] + (NUM_KEYPOINTS, points.shape[-1]), fill, points.dtype)
    out[..., dst, :] = points[..., src, :]
    return out
