"""The keypoint superset: the one place that names keypoints and maps every dataset into them.

Every dataset reader maps its native order into the superset with :func:`to_superset`, every body
model regresses the superset from its mesh, and losses/metrics index it by name. Points that the
datasets share (shoulders, elbows, wrists, hips, knees, ankles) are one superset entry, as in SPIN:
LSP, COCO, MPII and Human3.6M annotate them at nearly the same anatomical place.
"""

from __future__ import annotations

import numpy as np

#: Superset names, in order. LSP-14 first (SPIN's order), then the extra H36M/MPII points, the
#: COCO face points and the OpenPose feet.
SUPERSET: tuple[str, ...] = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
    "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
    "neck", "head_top",
    "pelvis", "thorax", "spine", "jaw", "head",
    "nose", "l_eye", "r_eye", "l_ear", "r_ear",
    "l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel",
)  # fmt: skip
NUM_KEYPOINTS = len(SUPERSET)
INDEX: dict[str, int] = {name: i for i, name in enumerate(SUPERSET)}

#: Native orders of the datasets, by name. ``None`` marks a native point with no superset entry.
NATIVE_ORDERS: dict[str, tuple[str | None, ...]] = {
    # LSP and LSPET share the order (Johnson & Everingham).
    "lsp14": (
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
        "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
        "neck", "head_top",
    ),
    "mpii16": (
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
        "pelvis", "thorax", "neck", "head_top",  # MPII "upper neck" is LSP's neck
        "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
    ),
    "coco17": (
        "nose", "l_eye", "r_eye", "l_ear", "r_ear",
        "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
        "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
    ),
    # Human3.6M's 17 evaluation joints (the usual order of the 32-joint skeleton's subset).
    "h36m17": (
        "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle",
        "spine", "thorax", "jaw", "head",  # "Neck/Nose" is the jaw point, "Head" the crown
        "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
    ),
    # Full 32-joint Human3.6M skeleton of the D3_Positions files.
    "h36m32": (
        "pelvis", "r_hip", "r_knee", "r_ankle", None, None,
        "l_hip", "l_knee", "l_ankle", None, None,
        None, "spine", "thorax", "jaw", "head",
        None, "l_shoulder", "l_elbow", "l_wrist", None, None, None, None,
        None, "r_shoulder", "r_elbow", "r_wrist", None, None, None, None,
    ),
    "openpose25": (
        "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
        "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle",
        "r_eye", "l_eye", "r_ear", "l_ear",
        "l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel",
    ),
}  # fmt: skip
NATIVE_ORDERS["lspet14"] = NATIVE_ORDERS["lsp14"]

#: Indices of the H36M 32-joint skeleton that form the 17 evaluation joints.
H36M32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

#: Named subsets of the superset that metrics and losses use.
SUBSETS: dict[str, tuple[str, ...]] = {
    "lsp14": NATIVE_ORDERS["lsp14"],  # type: ignore[dict-item]
    "h36m17": NATIVE_ORDERS["h36m17"],  # type: ignore[dict-item]
    "coco17": NATIVE_ORDERS["coco17"],  # type: ignore[dict-item]
}


def subset_indices(name: str) -> np.ndarray:
    """Superset indices of a named subset (``lsp14``, ``h36m17``, ``coco17``)."""
    if name not in SUBSETS:
        raise KeyError(f"unknown keypoint subset {name!r}; known: {sorted(SUBSETS)}")
    return np.array([INDEX[n] for n in SUBSETS[name]], dtype=np.int64)


def _flip_name(name: str) -> str:
    if name.startswith("l_"):
        return "r_" + name[2:]
    if name.startswith("r_"):
        return "l_" + name[2:]
    return name


#: Superset permutation for a horizontal flip: ``flipped[:, FLIP_PERMUTATION]``.
FLIP_PERMUTATION: np.ndarray = np.array([INDEX[_flip_name(n)] for n in SUPERSET], dtype=np.int64)


def superset_map(order: str) -> np.ndarray:
    """For a native order, the superset index of each native point (-1 where none)."""
    if order not in NATIVE_ORDERS:
        raise KeyError(f"unknown keypoint order {order!r}; known: {sorted(NATIVE_ORDERS)}")
    return np.array([INDEX[n] if n else -1 for n in NATIVE_ORDERS[order]], dtype=np.int64)


def to_superset(points: np.ndarray, order: str, fill: float = 0.0) -> np.ndarray:
    """Scatter native keypoints ``(..., N, C)`` into the superset ``(..., K, C)``.

    Superset entries the dataset does not annotate are set to ``fill`` (use a zero confidence
    column so that losses ignore them).
    """
    mapping = superset_map(order)
    if points.shape[-2] != len(mapping):
        raise ValueError(
            f"keypoints in order {order!r} must have {len(mapping)} points on axis -2, "
            f"got shape {points.shape}"
        )
    out = np.full(points.shape[:-2] + (NUM_KEYPOINTS, points.shape[-1]), fill, points.dtype)
    keep = mapping >= 0
    out[..., mapping[keep], :] = points[..., keep, :]
    return out


def from_superset(points: np.ndarray, order: str, fill: float = 0.0) -> np.ndarray:
    """Gather superset keypoints ``(..., K, C)`` into a native order ``(..., N, C)``."""
    mapping = superset_map(order)
    out = np.full(points.shape[:-2] + (len(mapping), points.shape[-1]), fill, points.dtype)
    keep = mapping >= 0
    out[..., keep, :] = points[..., mapping[keep], :]
    return out


#: Bones for drawing skeletons, as pairs of superset names.
SKELETON: tuple[tuple[str, str], ...] = (
    ("r_ankle", "r_knee"), ("r_knee", "r_hip"), ("l_ankle", "l_knee"), ("l_knee", "l_hip"),
    ("r_hip", "l_hip"), ("r_wrist", "r_elbow"), ("r_elbow", "r_shoulder"),
    ("l_wrist", "l_elbow"), ("l_elbow", "l_shoulder"), ("r_shoulder", "l_shoulder"),
    ("neck", "head_top"), ("r_shoulder", "neck"), ("l_shoulder", "neck"),
    ("nose", "l_eye"), ("nose", "r_eye"), ("l_eye", "l_ear"), ("r_eye", "r_ear"),
)  # fmt: skip
