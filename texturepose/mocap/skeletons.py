"""Per-skeleton maps from BVH joints to superset keypoints, and skeleton auto-detection.

BVH joint centres are the rig's pivots, not anatomical landmarks: each map picks the joint
closest to the body model's keypoint of the same name (checked against Anny's rest keypoints, see
docs/mocap.md). The pelvis is the midpoint of the two hip joints (as in the body models), the
"spine" point a lower-lumbar joint, "thorax" the neck-base joint and "neck" the skull-base joint.
Toes are left out: every rig places its toe joint somewhere else on the foot (ball, toe base,
tip), and a wrong target bends the ankle more than no target does.

To add a skeleton: add a :class:`SkeletonMap` to :data:`SKELETONS` with a ``signature`` (joint
names only that rig has), the ``keypoints`` map, and the units/up axis/position-channel
convention, which the checks in tests/test_bvh.py verify on a genuine clip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from texturepose.keypoints import INDEX, NUM_KEYPOINTS
from texturepose.mocap.bvh import BvhClip, joint_positions

log = logging.getLogger(__name__)

Target = str | tuple[str, ...]  # one BVH joint, or several whose mean is the keypoint


@dataclass(frozen=True)
class SkeletonMap:
    """How to read one rig. ``keypoints``: superset name -> BVH joint name(s).

    ``units``: the file's length unit (a key of :data:`texturepose.mocap.bvh.UNITS`); ``up``: the
    world up axis after forward kinematics (``y`` or ``z``); ``position_mode``: how position
    channels combine with offsets (``replace`` or ``add``, see :mod:`texturepose.mocap.bvh`).
    """

    name: str
    signature: tuple[str, ...]
    keypoints: dict[str, Target]
    units: str = "cm"
    up: str = "y"
    position_mode: str = "replace"
    description: str = ""

    def joints_used(self) -> set[str]:
        out: set[str] = set()
        for t in self.keypoints.values():
            out.update((t,) if isinstance(t, str) else t)
        return out


def _sided(pattern: dict[str, str], left: str, right: str) -> dict[str, Target]:
    """Expand ``{'hip': 'UpperLeg_{s}'}`` into l_/r_ entries with the rig's side tokens."""
    out: dict[str, Target] = {}
    for key, joint in pattern.items():
        out["l_" + key] = joint.format(s=left)
        out["r_" + key] = joint.format(s=right)
    return out


_LIMBS = ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")

SKELETONS: tuple[SkeletonMap, ...] = (
    SkeletonMap(
        name="cgspeed_daz",
        signature=("hip", "abdomen", "chest", "lThigh", "rShin", "lShldr", "rForeArm"),
        keypoints={
            **{
                f"l_{k}": j
                for k, j in zip(
                    _LIMBS, ("lThigh", "lShin", "lFoot", "lShldr", "lForeArm", "lHand"), strict=True
                )
            },
            **{
                f"r_{k}": j
                for k, j in zip(
                    _LIMBS, ("rThigh", "rShin", "rFoot", "rShldr", "rForeArm", "rHand"), strict=True
                )
            },
            "pelvis": ("lThigh", "rThigh"),
            "spine": "abdomen",
            "thorax": "neck",
            "neck": "head",
            "l_eye": "leftEye",
            "r_eye": "rightEye",
        },  # fmt: skip
        units="cm",
        description="CMU mocap, cgspeed 'Daz-friendly' BVH release (43 joints, first frame T-pose)",
    ),
    SkeletonMap(
        name="character_creator",
        signature=("CC_Base_Hip", "CC_Base_L_Thigh", "CC_Base_R_Calf", "CC_Base_L_Upperarm"),
        keypoints={
            **_sided(
                {
                    "hip": "CC_Base_{s}_Thigh",
                    "knee": "CC_Base_{s}_Calf",
                    "ankle": "CC_Base_{s}_Foot",
                    "shoulder": "CC_Base_{s}_Upperarm",
                    "elbow": "CC_Base_{s}_Forearm",
                    "wrist": "CC_Base_{s}_Hand",
                    "eye": "CC_Base_{s}_Eye",
                },
                "L",
                "R",
            ),
            "pelvis": ("CC_Base_L_Thigh", "CC_Base_R_Thigh"),
            "spine": "CC_Base_Spine01",
            "thorax": "CC_Base_NeckTwist01",
            "neck": "CC_Base_Head",
        },  # fmt: skip
        units="cm",
        # The root's position channels move it from its OFFSET (rest height), unlike most rigs.
        position_mode="add",
        description="Reallusion Character Creator / iClone 'CC_Base' rig (100-101 joints)",
    ),
    SkeletonMap(
        name="bandai_namco",
        signature=("joint_Root", "Hips", "UpperLeg_L", "LowerLeg_R", "UpperArm_L", "Hand_R"),
        keypoints={
            **_sided(
                {
                    "hip": "UpperLeg_{s}",
                    "knee": "LowerLeg_{s}",
                    "ankle": "Foot_{s}",
                    "shoulder": "UpperArm_{s}",
                    "elbow": "LowerArm_{s}",
                    "wrist": "Hand_{s}",
                },
                "L",
                "R",
            ),
            "pelvis": ("UpperLeg_L", "UpperLeg_R"),
            "spine": "Spine",
            "thorax": "Neck",
            "neck": "Head",
        },  # fmt: skip
        units="cm",
        description="Bandai Namco Research Motion Dataset rig (joint_Root, Hips, ... 6 channels "
        "per joint)",
    ),
)


class UnknownSkeletonError(ValueError):
    """A BVH whose joint names match no known skeleton map."""


def detect_skeleton(clip: BvhClip, skeletons: tuple[SkeletonMap, ...] = SKELETONS) -> SkeletonMap:
    """The map whose signature joints all appear in the clip (the most specific if several)."""
    names = set(clip.names)
    hits = [s for s in skeletons if set(s.signature) <= names]
    if not hits:
        joints = ", ".join(n for n in clip.names if not n.endswith("_End"))
        raise UnknownSkeletonError(
            f"{clip.path}: unknown BVH skeleton ({clip.num_joints} joints, root "
            f"{clip.names[0]!r}; joints: {joints}"
            f"). Known skeletons: {', '.join(s.name for s in skeletons)}. To add it, write a "
            "SkeletonMap in texturepose/mocap/skeletons.py mapping its joint names to the "
            "superset keypoints (hips, knees, ankles, shoulders, elbows, wrists, spine, thorax, "
            "neck)"
        )
    best = max(hits, key=lambda s: len(s.signature))
    missing = best.joints_used() - names
    if missing:
        raise UnknownSkeletonError(
            f"{clip.path}: looks like skeleton {best.name!r} but lacks joints {sorted(missing)}"
        )
    return best


#: Rotation taking a Z-up right-handed world to Y-up: (x, y, z) -> (x, z, -y).
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def mocap_keypoints(
    clip: BvhClip, skeleton: SkeletonMap, frames: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Superset keypoints ``(T, K, 3)`` in metres, world Y up, and the mask ``(K,)`` of mapped
    points. Applies the skeleton's position convention and up axis."""
    clip.position_mode = skeleton.position_mode
    pos = joint_positions(clip, frames)
    if skeleton.up == "z":
        pos = pos @ Z_UP_TO_Y_UP.T
    elif skeleton.up != "y":
        raise ValueError(f"skeleton {skeleton.name}: up must be 'y' or 'z', got {skeleton.up!r}")
    out = np.zeros(pos.shape[:1] + (NUM_KEYPOINTS, 3))
    mask = np.zeros(NUM_KEYPOINTS, bool)
    for kp, target in skeleton.keypoints.items():
        ids = [clip.index(t) for t in ((target,) if isinstance(target, str) else target)]
        out[:, INDEX[kp]] = pos[:, ids].mean(1)
        mask[INDEX[kp]] = True
    return out, mask


def up_axis_from_data(keypoints: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The world axis (one of +-X, +-Y, +-Z) nearest the mean ankles-to-neck direction.

    A data check of a skeleton's declared ``up``: over a clip people are upright on average.
    """
    top = [INDEX[n] for n in ("neck", "thorax") if mask[INDEX[n]]]
    low = [INDEX[n] for n in ("l_ankle", "r_ankle") if mask[INDEX[n]]]
    if not top or not low:
        raise ValueError("need a neck/thorax and ankle keypoints to find the up axis")
    d = (keypoints[:, top].mean(1) - keypoints[:, low].mean(1)).mean(0)
    axis = np.zeros(3)
    k = int(np.argmax(np.abs(d)))
    axis[k] = np.sign(d[k])
    return axis
