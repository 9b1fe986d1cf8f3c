"""Protocol subsets, action names, grouping, and the per-set summaries built on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from texturepose.evaluation.evaluate import evaluate_protocol, summarise, summarise_2d
from texturepose.evaluation.protocols import (
    H36M_P1,
    H36M_P2,
    JOINT_SETS,
    Protocol,
    ProtocolError,
    action_name,
    group_means,
    protocol_from_dict,
    select,
)
from texturepose.keypoints import INDEX, NUM_KEYPOINTS, SUPERSET, subset_indices

CAMS = ("54138969", "55011271", "58860488", "60457274")


def h36m_identity() -> dict[str, np.ndarray]:
    """S1, S9, S11 x 4 cameras x 2 sequences x 10 frames, stored as bytes like HDF5 gives."""
    rows = [
        (s, c, q, f)
        for s in ("S1", "S9", "S11")
        for c in CAMS
        for q in ("Directions 1", "WalkingDog 2")
        for f in range(10)
    ]
    subj, cam, seq, frame = zip(*rows, strict=True)
    return {
        "subject": np.array([s.encode() for s in subj], dtype=object),
        "camera": np.array(cam),
        "sequence": np.array(seq),
        "frame": np.array(frame),
    }


def test_h36m_protocol_subsets():
    ident = h36m_identity()
    p1, p2 = select(ident, H36M_P1), select(ident, H36M_P2)
    assert p1.sum() == 2 * 4 * 2 * 10  # S9 + S11, all cameras
    assert p2.sum() == 2 * 1 * 2 * 10  # frontal camera only
    assert not (p2 & ~p1).any()
    assert set(ident["camera"][p2]) == {"60457274"}
    assert {s.decode() for s in ident["subject"][p1]} == {"S9", "S11"}
    every5 = select(ident, Protocol("p1_10fps", subjects=("S9", "S11"), frame_step=5))
    assert every5.sum() == p1.sum() // 5
    assert set(ident["frame"][every5]) == {0, 5}


def test_selection_errors_name_what_is_there():
    ident = h36m_identity()
    with pytest.raises(ProtocolError, match=r"selects no sample.*'S1'"):
        select({k: v[:80] for k, v in ident.items()}, H36M_P1)  # only S1 in the first 80
    with pytest.raises(ProtocolError, match="no such identity field"):
        select({"subject": ident["subject"]}, H36M_P2)


def test_protocol_from_params():
    p = protocol_from_dict({"base": "h36m_p2", "frame_step": 5})
    assert p.cameras == ("60457274",) and p.frame_step == 5 and p.headline == "pa_mpjpe"
    q = protocol_from_dict({"name": "mine", "subjects": [9], "joints": "h36m14"})
    assert q.subjects == ("9",) and len(q.joint_names()) == 14
    with pytest.raises(ProtocolError, match="unknown protocol field"):
        protocol_from_dict({"base": "h36m_p1", "camera": "x"})
    with pytest.raises(ProtocolError, match="unknown joint set"):
        Protocol("x", joints="nope").joint_names()
    assert set(JOINT_SETS["h36m14"]) <= set(SUPERSET)


@pytest.mark.parametrize(
    "raw,action",
    [
        ("Directions 1", "Directions"),
        ("S9_Directions_1.54138969", "Directions"),
        ("S11 WalkingDog", "WalkDog"),
        ("TakingPhoto 1", "Photo"),
        ("SittingDown", "SittingDown"),
        (b"Eating_2", "Eating"),
        ("courtyard_basketball_00", "courtyard_basketball"),
    ],
)
def test_action_names(raw, action):
    assert action_name(raw) == action


def test_group_means_by_hand():
    df = group_means({"e": np.array([1.0, 3.0, 10.0, np.nan])}, ["b", "b", "a", "a"], by="seq")
    assert df["seq"].tolist() == ["a", "b"]
    assert df["n"].tolist() == [2, 2]
    assert df["e"].tolist() == [10.0, 2.0]


def _skeletons(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.3, size=(n, NUM_KEYPOINTS, 3))


def test_summarise_known_offsets_and_groups():
    gt = _skeletons(4)
    names = JOINT_SETS["h36m17"]
    pred = gt + np.array([0.1, 0.0, 0.0])  # a global shift: zero after root alignment
    cols = subset_indices("h36m17")
    pred[:, cols[5]] += [0.0, 0.02, 0.0]  # 20 mm on one of 17 joints (not the root)
    pred[1, cols[9]] += [0.0, 0.0, 0.034]
    out = summarise(pred, gt, SUPERSET, eval_joints=names, groups={"seq": ["a", "a", "b", "b"]})
    expect = np.array([20, 20 + 34, 20, 20]) / 17
    assert np.allclose(out.per_sample["mpjpe"], expect)
    assert np.isclose(out.metrics["mpjpe"], expect.mean())
    assert out.metrics["n"] == 4 and out.metrics["skipped"] == 0
    pj = out.per_joint.set_index("joint")
    assert np.isclose(pj.loc[names[5], "mpjpe"], 20) and np.isclose(pj.loc[names[9], "mpjpe"], 8.5)
    assert np.isclose(pj.loc["pelvis", "mpjpe"], 0)
    seq = out.per_group["seq"].set_index("seq")
    assert np.allclose(seq["mpjpe"], [expect[:2].mean(), expect[2:].mean()])


def test_summarise_skips_unknown_roots_and_counts():
    gt = _skeletons(3)
    mask = np.ones((3, NUM_KEYPOINTS))
    mask[1, INDEX["pelvis"]] = 0
    out = summarise(gt + 0.01, gt, SUPERSET, eval_joints=JOINT_SETS["h36m17"], mask=mask)
    assert out.metrics["skipped"] == 1 and out.per_sample["index"].tolist() == [0, 2]
    mid = summarise(gt, gt, SUPERSET, eval_joints=JOINT_SETS["lsp14"], root="mid_hip", mask=mask)
    assert mid.metrics["skipped"] == 0 and np.isclose(mid.metrics["mpjpe"], 0)
    with pytest.raises(ValueError, match="no sample can be evaluated"):
        summarise(gt, gt, SUPERSET, mask=np.zeros((3, NUM_KEYPOINTS)))


def test_summarise_vertices():
    gt = _skeletons(2)
    verts = np.random.default_rng(1).normal(size=(2, 50, 3))
    out = summarise(gt + 5.0, gt, SUPERSET, pred_vertices=verts + 5.0, gt_vertices=verts)
    assert np.allclose(out.per_sample["pve"], 0)  # the same root shift cancels
    bent = verts.copy()
    bent[:, :, 1] += 0.01
    out = summarise(gt, gt, SUPERSET, pred_vertices=bent, gt_vertices=verts)
    assert np.isclose(out.metrics["pve"], 10.0)


def test_evaluate_protocol_end_to_end():
    ident = h36m_identity()
    n = len(ident["subject"])
    gt = np.concatenate([_skeletons(n, 1), np.ones((n, NUM_KEYPOINTS, 1))], -1)
    pred = gt[..., :3].copy()
    walk = np.array(["Walking" in s for s in ident["sequence"]])
    pred[walk, INDEX["r_wrist"]] += [0.017 * 17, 0, 0]  # 17 mm MPJPE over 17 joints
    out = evaluate_protocol(pred, gt, ident, H36M_P2)
    assert out.metrics["n"] == 40
    assert np.isclose(out.metrics["mpjpe"], 8.5)  # half the sequences walk
    assert out.metrics["headline"] == out.metrics["pa_mpjpe"]
    act = out.per_group["action"].set_index("action")
    assert act.index.tolist() == ["Directions", "WalkDog"]
    assert np.allclose(act["mpjpe"], [0, 17]) and act["n"].tolist() == [20, 20]
    # per_sample indexes the whole set: every row is a frontal-camera S9/S11 sample.
    idx = out.per_sample["index"].to_numpy()
    assert set(ident["camera"][idx]) == {"60457274"} and len(set(idx)) == 40
    assert np.allclose(out.per_sample["mpjpe"], np.where(walk[idx], 17.0, 0.0))


def test_summarise_2d():
    rng = np.random.default_rng(3)
    gt = rng.uniform(0, 200, size=(5, NUM_KEYPOINTS, 2))
    vis = np.zeros((5, NUM_KEYPOINTS))
    vis[:, subset_indices("lsp14")] = 1
    vis[4, [INDEX["l_shoulder"], INDEX["r_shoulder"]]] = 0  # no torso: skipped
    out = summarise_2d(gt, gt, vis, eval_joints=JOINT_SETS["lsp14"], thresholds=(0.1, 0.2))
    assert out.metrics["pck@0.1"] == 1.0 and out.metrics["skipped"] == 1
    assert out.metrics["n"] == 4 and out.metrics["err_norm"] == 0.0
    assert isinstance(out.per_joint, pd.DataFrame) and len(out.per_joint) == 14


def test_pred_mask_drops_points_the_model_lacks():
    gt = _skeletons(2)
    pred = gt.copy()
    pred[:, INDEX["spine"]] += 1.0  # a point this "model" does not regress: must not count
    pm = np.ones(NUM_KEYPOINTS, bool)
    pm[INDEX["spine"]] = False
    out = summarise(pred, gt, SUPERSET, eval_joints=JOINT_SETS["h36m17"], pred_mask=pm)
    assert np.isclose(out.metrics["mpjpe"], 0)
    assert out.per_joint.set_index("joint").loc["spine", "n"] == 0
    pm[INDEX["pelvis"]] = False  # without its root nothing can be evaluated
    with pytest.raises(ValueError, match="no sample can be evaluated"):
        summarise(pred, gt, SUPERSET, eval_joints=JOINT_SETS["h36m17"], pred_mask=pm)
