"""Fault catalogue, evaluate stage: a failure midway keeps the previous reports/eval/<set>/
whole; a model file trained with another body model is refused before any work, naming the
file, both joint counts and what to do; a model file whose body section names a missing or
unusable body-model file says what helps (its own section wins over params.yaml)."""

from __future__ import annotations

import numpy as np
import pytest
from test_predict import _checkpoint

import texturepose.body
import texturepose.evaluation.run as eval_run
from texturepose.data.hdf5 import Hdf5Writer
from texturepose.evaluation.run import EvaluationError, evaluate_checkpoint
from texturepose.keypoints import NUM_KEYPOINTS

RES = 32
MODEL = {"backbone": "resnet18", "pretrained": None, "hidden": 32, "dropout": 0.0,
         "head": "keypoints", "feedback": True, "res": RES}
SETS = [{"name": "held", "file": "held.h5", "kind": "3d",
         "protocol": {"name": "held", "joints": "h36m17", "root": "pelvis"}}]


def _model_file(path, body, num_joints=None, section=None):
    return _checkpoint(path, body, num_joints, section, model=MODEL)


def _eval_set(path, n=4):
    rng = np.random.default_rng(0)
    with Hdf5Writer(path, dataset="synthetic", split="test", crop_res=RES, source="test",
                    licence="none") as w:
        for i in range(n):
            kp3 = np.concatenate([rng.normal(0, 0.3, (NUM_KEYPOINTS, 3)) + [0, 0, 5],
                                  np.ones((NUM_KEYPOINTS, 1))], 1)
            kp2 = np.concatenate([rng.uniform(4, RES - 4, (NUM_KEYPOINTS, 2)),
                                  np.ones((NUM_KEYPOINTS, 1))], 1)
            w.add({"image": rng.integers(0, 255, (RES, RES, 3), dtype=np.uint8),
                   "crop_center": np.array([RES / 2, RES / 2]), "crop_size": float(RES),
                   "keypoints_2d": kp2, "visible": np.ones(NUM_KEYPOINTS, np.uint8),
                   "keypoints_3d": kp3, "image_name": f"im{i}.png", "subject": "S9",
                   "sequence": "walk", "camera": "c0", "frame": i, "person": 0})
    return path


@pytest.fixture
def project(tmp_path, anny_body, monkeypatch, one_torch_thread):
    """A project root with an evaluation set, a model file and a previous reports/eval/held/."""
    monkeypatch.setattr(texturepose.body, "body_from_section", lambda *a, **k: anny_body)
    _eval_set(tmp_path / "held.h5")
    _model_file(tmp_path / "final.pt", anny_body)
    old = tmp_path / "eval" / "held"
    old.mkdir(parents=True)
    for name in ("per_joint.csv", "per_sample.csv", "by_joint.png", "overlays.png"):
        (old / name).write_text(f"previous {name}\n")
    return tmp_path


def _files(folder):
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_a_failure_midway_keeps_the_previous_set_folder_whole(project, monkeypatch):
    before = _files(project / "eval" / "held")

    def fail(*args, **kwargs):  # after the tables and the plot were written
        raise OSError("disk full")

    monkeypatch.setattr(eval_run, "overlay_grid", fail)
    with pytest.raises(OSError, match="disk full"):
        evaluate_checkpoint(project / "final.pt", SETS, project, project / "eval")
    assert _files(project / "eval" / "held") == before
    assert sorted(p.name for p in (project / "eval").iterdir()) == ["held"]  # no temporary


def test_a_finished_run_swaps_the_whole_folder_in(project):
    (project / "eval" / "held" / "stale.csv").write_text("of an earlier run\n")
    metrics, artifacts, _ = evaluate_checkpoint(project / "final.pt", SETS, project,
                                                project / "eval")
    folder = project / "eval" / "held"
    assert np.isfinite(metrics["held"]["pa_mpjpe"])
    assert not (folder / "stale.csv").exists()  # the folder is this run's, not a mix
    assert "previous" not in (folder / "per_joint.csv").read_text()
    assert (folder / "overlays.png").read_bytes()[:4] == b"\x89PNG"
    assert all(p.parent == folder and p.is_file() for p in artifacts)
    assert sorted(p.name for p in (project / "eval").iterdir()) == ["held"]


def test_a_model_file_with_other_joint_counts_is_refused(project, anny_body):
    _model_file(project / "other.pt", anny_body, num_joints=22)
    before = _files(project / "eval" / "held")
    with pytest.raises(EvaluationError) as e:
        evaluate_checkpoint(project / "other.pt", SETS, project, project / "eval")
    msg = str(e.value)
    assert str(project / "other.pt") in msg
    assert f"22 joints / {anny_body.num_shape} shape values" in msg
    assert f"'anny' here has {anny_body.num_joints} joints" in msg
    assert "Retrain it with this body model (dvc repro train)" in msg
    assert "body-model files it was trained with" in msg
    assert _files(project / "eval" / "held") == before


def test_a_model_files_missing_body_file_says_what_helps(tmp_path, anny_body):
    section = {"model": "smpl", "model_path": "models/SMPL_NEUTRAL.pkl"}
    ckpt = _model_file(tmp_path / "smpl.pt", anny_body, section=section)
    with pytest.raises(EvaluationError) as e:
        evaluate_checkpoint(ckpt, SETS, tmp_path, tmp_path / "eval")
    msg = str(e.value)
    assert str(tmp_path / "models" / "SMPL_NEUTRAL.pkl") in msg and str(ckpt) in msg
    assert "editing params.yaml does not help" in msg and "dvc repro train" in msg
    assert "params.yaml (body section)" not in msg
    assert not (tmp_path / "eval").exists()


def test_a_model_files_unusable_body_file_says_what_helps(tmp_path, anny_body):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "SMPL_NEUTRAL.pkl").write_bytes(b"not a pickle")
    section = {"model": "smpl", "model_path": "models/SMPL_NEUTRAL.pkl"}
    ckpt = _model_file(tmp_path / "smpl.pt", anny_body, section=section)
    with pytest.raises(EvaluationError) as e:
        evaluate_checkpoint(ckpt, SETS, tmp_path, tmp_path / "eval")
    msg = str(e.value)
    assert "SMPL_NEUTRAL.pkl" in msg and "editing params.yaml does not help" in msg
    assert "point the body model path in params.yaml" not in msg
