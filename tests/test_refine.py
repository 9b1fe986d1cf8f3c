"""Test-time refinement (inference/refine.py): fitting the mesh to 2D keypoints.

Oracle: the 2D keypoints of a known, articulated body projected with a known camera. Fitting
from the rest pose must reproduce them far better than the start, the confidence must decide
which keypoints count, and the ``stay`` term must hold the fit near the regressor's estimate.
"""

from __future__ import annotations

import pytest
import torch

from texturepose.geometry.cameras import crop_perspective_project
from texturepose.geometry.rotations import axis_angle_to_matrix
from texturepose.inference.refine import refine_to_keypoints

RES, FOCAL = 96, 5000.0 * 96 / 224


@pytest.fixture(scope="module")
def target(anny_body):
    """A bent pose's projected keypoints, the rest pose to start from, and the camera."""
    g = torch.Generator().manual_seed(0)
    rest = anny_body.rest_rotmats(2)
    bend = axis_angle_to_matrix(0.35 * torch.randn(2, anny_body.num_joints, 3, generator=g))
    bend[:, 0] = torch.eye(3)  # keep the global orientation: the fit starts facing the camera
    posed = rest @ bend
    shape = anny_body.mean_shape.expand(2, -1).clone()
    cam = torch.tensor([[0.9, 0.02, -0.05], [1.0, -0.03, 0.04]])
    with torch.no_grad():
        xy = crop_perspective_project(anny_body.keypoints(posed, shape), cam, FOCAL, RES)
    return rest, shape, cam, xy


def _error(body, rotmats, shape, cam, xy, weight):
    with torch.no_grad():
        proj = crop_perspective_project(body.keypoints(rotmats, shape), cam, FOCAL, RES)
    w = weight * body.keypoint_mask.float()
    return float(((proj - xy).norm(dim=-1) * w).sum() / w.sum())


def test_the_fit_reproduces_the_keypoints_of_a_known_pose(anny_body, target, one_torch_thread):
    rest, shape, cam, xy = target
    conf = torch.ones(xy.shape[:2])
    start = _error(anny_body, rest, shape, cam, xy, conf)
    r, s, c = refine_to_keypoints(anny_body, rest, shape, cam, xy, conf, FOCAL, RES,
                                  steps=150, lr=0.02, stay=0.0)
    assert r.shape == rest.shape and s.shape == shape.shape and c.shape == cam.shape
    # the fitted rotations stay rotations
    eye = torch.eye(3).expand_as(r)
    assert torch.allclose(r @ r.transpose(-1, -2), eye, atol=1e-4)
    assert _error(anny_body, r, s, c, xy, conf) < 0.2 * start


def test_keypoints_of_zero_confidence_are_ignored(anny_body, target, one_torch_thread):
    rest, shape, cam, xy = target
    conf = torch.ones(xy.shape[:2])
    half = torch.zeros_like(conf)
    half[:, ::2] = 1.0  # only every other keypoint counts
    wrong = xy.clone()
    wrong[:, 1::2] += 0.5  # and the others point far away
    r, s, c = refine_to_keypoints(anny_body, rest, shape, cam, wrong, half, FOCAL, RES,
                                  steps=150, lr=0.02, stay=0.0)
    start = _error(anny_body, rest, shape, cam, xy, half)
    assert _error(anny_body, r, s, c, xy, half) < 0.3 * start


def test_stay_holds_the_fit_near_the_estimate(anny_body, target, one_torch_thread):
    rest, shape, cam, xy = target
    conf = torch.ones(xy.shape[:2])
    moved = {}
    for stay in (0.0, 100.0):
        r, _, _ = refine_to_keypoints(anny_body, rest, shape, cam, xy, conf, FOCAL, RES,
                                      steps=60, lr=0.02, stay=stay)
        moved[stay] = float((r - rest).abs().mean())
    assert moved[100.0] < 0.5 * moved[0.0]


def test_an_evaluation_set_with_refine_steps_is_scored_after_the_fit(tmp_path, anny_body,
                                                                      monkeypatch,
                                                                      one_torch_thread):
    """``refine_steps`` on an evaluation set: the same samples scored after the fit, marked
    with its step count, beside the plain set."""
    from faults.test_faults_evaluate import _eval_set, _model_file

    import texturepose.body
    from texturepose.evaluation.run import evaluate_checkpoint

    monkeypatch.setattr(texturepose.body, "body_from_section", lambda *a, **k: anny_body)
    _eval_set(tmp_path / "held.h5")
    _model_file(tmp_path / "final.pt", anny_body)
    plain = {"name": "plain", "file": "held.h5", "kind": "2d", "joints": "lsp14"}
    sets = [plain, {**plain, "name": "refined", "refine_steps": 5}]
    metrics, _, _ = evaluate_checkpoint(tmp_path / "final.pt", sets, tmp_path, tmp_path / "eval")
    assert "refine_steps" not in metrics["plain"] and metrics["refined"]["refine_steps"] == 5
    assert metrics["refined"]["n"] == metrics["plain"]["n"] == 4
    assert metrics["refined"]["err_norm"] != metrics["plain"]["err_norm"]


def test_refine_steps_on_a_model_without_a_keypoint_head_is_refused(tmp_path, anny_body,
                                                                    monkeypatch,
                                                                    one_torch_thread):
    """Nothing to fit to: the set is refused by name instead of scored as if refined."""
    from faults.test_faults_evaluate import MODEL, _eval_set
    from test_predict import _checkpoint

    import texturepose.body
    from texturepose.evaluation.run import EvaluationError, evaluate_checkpoint

    monkeypatch.setattr(texturepose.body, "body_from_section", lambda *a, **k: anny_body)
    _eval_set(tmp_path / "held.h5")
    pooled = {**MODEL, "head": "pooled", "feedback": False}
    _checkpoint(tmp_path / "final.pt", anny_body, model=pooled)
    sets = [{"name": "refined", "file": "held.h5", "kind": "2d", "refine_steps": 5}]
    with pytest.raises(EvaluationError, match="evaluate.sets refined: refine_steps needs"):
        evaluate_checkpoint(tmp_path / "final.pt", sets, tmp_path, tmp_path / "eval")
