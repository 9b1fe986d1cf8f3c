"""The keypoint superset: the one place that names keypoints and maps every dataset into them.

Every dataset reader maps its native order into the superset with :func:`to_superset`, every body
model regresses the superset from its mesh, and losses/metrics index it by name. Points that the
datasets share (shoulders, elbows, wrists, hips, knees, ankles) are one superset entry, as in SPIN:
LSP, COCO, MPII and Human3.6M annotate them at nearly the same anatomical place. The left/right
mirror of any name (superset, SMPL, Anny) is :func:`mirror_name`, the one flip helper.

The bottom layer: imports nothing from the package.
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


#: Left/right name conventions: superset ``l_``/``r_``, SMPL ``left_``/``right_`` prefixes and
#: Anny's (Blender) ``.L``/``.R`` suffixes.
_MIRROR_PREFIXES = (("l_", "r_"), ("left_", "right_"))
_MIRROR_SUFFIXES = ((".L", ".R"),)


def mirror_name(name: str) -> str:
    """The name of the mirror point/joint (left <-> right); unpaired names map to themselves."""
    for a, b in _MIRROR_PREFIXES:
        for x, y in ((a, b), (b, a)):
            if name.startswith(x):
                return y + name[len(x):]
    for a, b in _MIRROR_SUFFIXES:
        for x, y in ((a, b), (b, a)):
            if name.endswith(x):
                return name[: -len(x)] + y
    return name


def flip_permutation(names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Index of each name's mirror in ``names``: ``flipped[..., flip_permutation(names), :]``."""
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in names if mirror_name(n) not in index]
    if missing:
        raise ValueError(f"no mirror partner for {missing}")
    return np.array([index[mirror_name(n)] for n in names], dtype=np.int64)


#: Superset permutation for a horizontal flip: ``flipped[:, FLIP_PERMUTATION]``.
FLIP_PERMUTATION: np.ndarray = flip_permutation(SUPERSET)


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


# Native orders scattered into the superset by name (SPIN's 24, MPI-INF-3DHP's 28 and 17,
# OpenPose/COCO-18 of 3DPW). ``None`` marks a native point with no superset entry.
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
