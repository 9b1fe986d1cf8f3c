"""BVH parser and forward kinematics: genuine clips of the three skeletons, and broken files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from texturepose.keypoints import INDEX
from texturepose.mocap.bvh import BvhError, joint_positions, read_bvh
from texturepose.mocap.skeletons import (
    UnknownSkeletonError,
    detect_skeleton,
    mocap_keypoints,
    up_axis_from_data,
)

CLIPS = {  # small genuine clips, one per skeleton (two for the CC rig: with/without wrapper root)
    "cgspeed_daz": "mocap/cmu/daz_friendly/aclstm_salsa_10.bvh",
    "character_creator": "mocap/cmu/iclone_cc_rig/cmu_06_09.bvh",
    "character_creator_wrapped": "mocap/cmu/iclone_cc_rig/cmu_02_03.bvh",
    "bandai_namco": "mocap/bandai-namco-1/data/dataset-1_walk_normal_001.bvh",
}


def _header_frames(path: Path) -> int:
    return int(re.search(r"Frames:\s*(\d+)", path.read_text()).group(1))


@pytest.mark.parametrize("key", sorted(CLIPS))
def test_genuine_clip_parses_and_fk_is_rigid(shared_data, key):
    path = shared_data / CLIPS[key]
    clip = read_bvh(path)
    skeleton = detect_skeleton(clip)
    assert skeleton.name == key.replace("_wrapped", "")
    assert clip.num_frames == _header_frames(path)
    assert clip.motion.shape == (clip.num_frames, sum(len(c) for c in clip.channels))
    assert clip.units == skeleton.units == "cm"  # the size guess agrees with the map
    clip.position_mode = skeleton.position_mode
    frames = np.arange(0, clip.num_frames, 7)
    pos = joint_positions(clip, frames)
    # Bones are rigid: every parent-child distance is the same in every frame (edges from a root
    # are excluded: Bandai's joint_Root -> Hips carries the world translation).
    child = np.flatnonzero((clip.parents >= 0) & (clip.parents[clip.parents] >= 0))
    lengths = np.linalg.norm(pos[:, child] - pos[:, clip.parents[child]], axis=-1)
    assert np.abs(lengths - lengths[0]).max() < 1e-6
    kp, mask = mocap_keypoints(clip, skeleton, frames)
    assert mask.sum() >= 15
    up = up_axis_from_data(kp, mask)
    np.testing.assert_array_equal(up, [0, 1, 0])  # Y up after FK, for all three rigs
    # Standing people: ankles near the floor, body height plausible for adults (metres).
    height = kp[:, INDEX["neck"], 1] - kp[:, [INDEX["l_ankle"], INDEX["r_ankle"]], 1].min(1)
    assert 1.1 < np.median(height) < 1.8
    shoulder_w = np.linalg.norm(kp[:, INDEX["l_shoulder"]] - kp[:, INDEX["r_shoulder"]], axis=-1)
    assert np.median(shoulder_w) > 0.2
    # Not mirrored: in a right-handed Y-up world, forward = left x up; the eyes (or, for rigs
    # without eyes, the wrists' usual side) lie forward of the neck joint.
    lr = kp[:, INDEX["l_hip"]] - kp[:, INDEX["r_hip"]]
    fwd = np.cross(lr, [0.0, 1.0, 0.0])
    front = (
        [INDEX["l_eye"], INDEX["r_eye"]]
        if mask[INDEX["l_eye"]]
        else [INDEX["l_wrist"], INDEX["r_wrist"]]
    )
    ahead = kp[:, front].mean(1) - kp[:, INDEX["neck"]]
    assert np.median(np.einsum("ti,ti->t", ahead, fwd)) > 0


def test_euler_order_against_scipy(shared_data):
    """The child of a joint with ZXY channels sits at parent + Rz Rx Ry offset (one frame)."""
    from scipy.spatial.transform import Rotation

    clip = read_bvh(shared_data / CLIPS["cgspeed_daz"])
    j = clip.index("lShin")  # knee; its child is lFoot
    c = clip.index("lFoot")
    assert clip.channels[j] == ("Zrotation", "Xrotation", "Yrotation")
    t = 300
    from texturepose.mocap.bvh import forward_kinematics

    g_rot, g_pos = forward_kinematics(clip, [t])
    s = clip.channel_start[j]
    z, x, y = np.radians(clip.motion[t, s : s + 3])
    rz = Rotation.from_rotvec([0, 0, z]).as_matrix()
    rx = Rotation.from_rotvec([x, 0, 0]).as_matrix()
    ry = Rotation.from_rotvec([0, y, 0]).as_matrix()
    parent_rot = g_rot[0, clip.parents[j]]
    expect = g_pos[0, j] + parent_rot @ rz @ rx @ ry @ (clip.offsets[c] * clip.scale)
    np.testing.assert_allclose(g_pos[0, c], expect, atol=1e-9)


def test_cgspeed_first_frame_is_a_t_pose(shared_data):
    clip = read_bvh(shared_data / CLIPS["cgspeed_daz"])
    kp, _ = mocap_keypoints(clip, detect_skeleton(clip), np.array([0, 200]))
    for side in ("l", "r"):
        arm = kp[0, INDEX[f"{side}_wrist"]] - kp[0, INDEX[f"{side}_shoulder"]]
        assert abs(arm[1]) / np.linalg.norm(arm) < 0.1  # horizontal arm in the T-pose
    arm = kp[1, INDEX["l_wrist"]] - kp[1, INDEX["l_shoulder"]]
    assert abs(arm[1]) / np.linalg.norm(arm) > 0.3  # and not in a dancing frame


def test_character_creator_root_moves_from_its_offset(shared_data):
    """CC rigs give root positions relative to the rest offset: with 'replace' the feet would sink
    a metre below the floor; with the map's 'add' they stand on it."""
    clip = read_bvh(shared_data / CLIPS["character_creator"])
    sk = detect_skeleton(clip)
    kp, _ = mocap_keypoints(clip, sk)
    ankles = kp[:, [INDEX["l_ankle"], INDEX["r_ankle"]], 1]
    assert -0.05 < np.percentile(ankles, 5) < 0.2
    clip.position_mode = "replace"
    wrong = joint_positions(clip)[:, clip.index("CC_Base_L_Foot"), 1]
    assert np.percentile(wrong, 5) < -0.5


# --- malformed files ---------------------------------------------------------------------------

GOOD = """HIERARCHY
ROOT hip
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT knee
  {
    OFFSET 0 -40 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -40 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.0333333
0 90 0 0 0 0 0 0 0
0 90 1 0 0 0 90 0 0
0 90 2 0 0 0 0 90 0
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "clip.bvh"
    p.write_text(text)
    return p


def test_tiny_file_forward_kinematics(tmp_path):
    clip = read_bvh(_write(tmp_path, GOOD), units="cm")
    assert clip.names == ["hip", "knee", "knee_End"]
    pos = joint_positions(clip)
    np.testing.assert_allclose(pos[0, 2], [0, 0.1, 0], atol=1e-12)
    # Frame 1: knee rotated 90 deg about Z moves the shin (0, -0.4, 0) to (+0.4, 0, 0).
    np.testing.assert_allclose(pos[1, 2], [0.4, 0.5, 0.01], atol=1e-12)
    # Frame 2: 90 deg about X: (0, -0.4, 0) -> (0, 0, -0.4).
    np.testing.assert_allclose(pos[2, 2], [0, 0.5, 0.02 - 0.4], atol=1e-12)


@pytest.mark.parametrize(
    ("edit", "line", "words"),
    [
        (lambda t: t[: t.index("0 90 2")], 20, "truncated"),  # last frame line missing
        (lambda t: t.replace("0 90 1 0 0 0 90 0 0", "0 90 1 0 0 0 90 0"), 20, "8 values"),
        (lambda t: t.replace("0 90 1 0 0 0 90 0 0", "0 90 1 0 zero 0 90 0 0"), 20, "'zero'"),
        (lambda t: t.replace("0 90 1 0 0 0 90 0 0", "0 90 1 0 nan 0 90 0 0"), 20, "non-finite"),
        (lambda t: t[: t.index("MOTION")], 15, "no MOTION"),
        (lambda t: t.replace("CHANNELS 3 Zrotation", "CHANNELS 4 Zrotation"), 9, "lists 3"),
        (lambda t: t.replace("Frames: 3", "Frames: three"), 17, "integer"),
        (lambda t: t.replace("Frames: 3", "Frames: 2"), 21, "Frames: 2"),
        (lambda t: t.replace("OFFSET 0 -40 0\n    CHANNELS", "OFFSET 0 -x 0\n    CHANNELS"), 8,
         "non-numeric OFFSET"),
        (lambda t: t.replace("  }\n}\nMOTION", "  }\nMOTION"), 15, "still open"),
    ],
)  # fmt: skip
def test_malformed_files_name_file_and_line(tmp_path, edit, line, words):
    path = _write(tmp_path, edit(GOOD))
    with pytest.raises(BvhError) as info:
        read_bvh(path, units="cm")
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    assert words in msg
    assert info.value.line == line


def test_truncated_genuine_clip(shared_data, tmp_path):
    """A genuine file cut mid-line: the error names the last (short) line."""
    text = (shared_data / CLIPS["bandai_namco"]).read_text()
    cut = text[: int(len(text) * 0.8)]
    path = _write(tmp_path, cut)
    with pytest.raises(BvhError) as info:
        read_bvh(path)
    assert info.value.line == cut.count("\n") + 1
    assert "values, expected" in str(info.value)


def test_unknown_skeleton_error_lists_joints(tmp_path):
    clip = read_bvh(_write(tmp_path, GOOD), units="cm")
    with pytest.raises(UnknownSkeletonError, match="hip, knee.*SkeletonMap"):
        detect_skeleton(clip)
