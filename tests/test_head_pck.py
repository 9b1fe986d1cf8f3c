"""The keypoint head's own PCK in the evaluation (``head_pck@t`` beside the mesh's ``pck@t``).

Oracle: a head that outputs the file's ground-truth 2D keypoints must score PCK 1.0 at every
threshold while the untrained mesh scores far less; a head shifted by a whole crop scores 0;
a model without a keypoint head reports no head PCK at all.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from faults.test_faults_evaluate import MODEL, RES, _eval_set, _model_file
from test_predict import _checkpoint

import texturepose.body
import texturepose.models.regressor as regressor_module
from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.evaluation.run import evaluate_checkpoint

SETS = [{"name": "held", "file": "held.h5", "kind": "3d",
         "protocol": {"name": "held", "joints": "h36m17", "root": "pelvis"}},
        {"name": "held2d", "file": "held.h5", "kind": "2d", "joints": "lsp14"}]


@pytest.fixture
def project(tmp_path, anny_body, monkeypatch, one_torch_thread):
    monkeypatch.setattr(texturepose.body, "body_from_section", lambda *a, **k: anny_body)
    _eval_set(tmp_path / "held.h5")
    return tmp_path


def _head_outputs(path, shift: float = 0.0):
    """soft_argmax's stand-in: the file's 2D labels as normalised crop coordinates (the crops
    of ``_eval_set`` are the whole image, so crop pixels are image pixels), plus ``shift``."""
    gt = Hdf5Dataset(path).column("keypoints_2d")[..., :2]
    xy = torch.from_numpy(gt / (RES / 2.0) - 1.0).float() + shift

    def fake(heatmaps):
        b = heatmaps.shape[0]
        return xy[:b].clone(), torch.ones(b, xy.shape[1])
    return fake


def test_a_head_that_outputs_the_labels_scores_one_and_the_mesh_less(project, anny_body,
                                                                     monkeypatch):
    monkeypatch.setattr(regressor_module, "soft_argmax", _head_outputs(project / "held.h5"))
    _model_file(project / "final.pt", anny_body)
    metrics, _, _ = evaluate_checkpoint(project / "final.pt", SETS, project, project / "eval")
    for name in ("held", "held2d"):
        m = metrics[name]
        assert m["head_pck@0.1"] == pytest.approx(1.0) and m["head_pck@0.2"] == 1.0
        assert m["pck@0.2"] < 0.9


def test_a_head_a_crop_away_scores_zero(project, anny_body, monkeypatch):
    monkeypatch.setattr(regressor_module, "soft_argmax",
                        _head_outputs(project / "held.h5", shift=2.0))
    _model_file(project / "final.pt", anny_body)
    metrics, _, _ = evaluate_checkpoint(project / "final.pt", SETS, project, project / "eval")
    assert metrics["held"]["head_pck@0.2"] == 0.0


def test_a_model_without_a_keypoint_head_reports_no_head_pck(project, anny_body):
    _checkpoint(project / "final.pt", anny_body,
                model={**MODEL, "head": "pooled", "feedback": False})
    metrics, _, _ = evaluate_checkpoint(project / "final.pt", SETS, project, project / "eval")
    assert not [k for k in metrics["held"] if k.startswith("head_")]
    assert np.isfinite(metrics["held"]["pck@0.2"])
