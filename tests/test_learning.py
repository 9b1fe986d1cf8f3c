"""The regressor learns: it overfits a handful of synthetic crops with the 2D loss alone.

This is the suite's guard against the failure the project once had (every trained model
predicting the mean pose): a fixed subset of rendered crops, no augmentation, the default
architecture (ImageNet EfficientNet-Lite0, keypoint head, IEF with residual feedback) at a
lower resolution, a fixed number of steps; the model in eval mode must then place the mesh's
LSP-14 keypoints within 0.2 torso diameters on at least 90% of those crops' joints.
"""

from __future__ import annotations

import numpy as np
import pytest
import roma
import torch
from conftest import torch_threads

from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.evaluation.run import pck_2d
from texturepose.inference.predict import predict_dataset
from texturepose.synthetic import PoseClips, SynthConfig, synthesize
from texturepose.synthetic.rig import RigConfig
from texturepose.training.config import TrainConfig
from texturepose.training.data import build_data
from texturepose.training.factory import build_models, build_trainer
from texturepose.training.fit import fit

RES = 64
STEPS = 350
CROPS = SynthConfig(subjects_train=2, subjects_test=0, clips_per_subject=2, frames_per_clip=2,
                    frame_step=1, crop_res=RES, texture_res=128, batch_size=16, seed=7,
                    rig=RigConfig(num_cameras=4), created="fixed")  # 2 x 2 x 2 x 4 = 32 crops


def _poses(num_joints: int) -> PoseClips:
    """Varied poses: random joint rotations (0.3 rad per axis), upright roots."""
    g = torch.Generator().manual_seed(1)
    rv = torch.randn(16, num_joints, 3, generator=g) * 0.3
    rv[:, 0] = 0
    rot = roma.rotvec_to_rotmat(rv).numpy().astype(np.float32)
    clip = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["d"] * 4)
    return PoseClips(rot, clip, np.tile(np.arange(4), 4))


@pytest.fixture(autouse=True)
def _two_threads():
    with torch_threads(2):
        yield


def test_the_regressor_overfits_a_few_crops_with_the_2d_loss(anny_body, tmp_path):
    torch.manual_seed(0)
    poses = _poses(anny_body.num_joints)
    counts = synthesize(tmp_path / "data" / "processed", CROPS, anny_body, poses)
    assert counts["train"] == 32
    path = tmp_path / "data" / "processed" / "synthetic_train.h5"
    cfg = TrainConfig.from_params({
        "seed": 0,
        "model": {"res": RES},
        "loss": {"keypoints_2d": 5.0, "keypoint_head": 1.0, "adversarial": 0.0, "texture": 0.0,
                 "multiview_pose": 0.0, "shape_consistency": 0.0},
        "train": {"steps": STEPS, "batch_size": 16, "lr": 1e-3, "backbone_lr": 1e-3,
                  "warmup_steps": 20, "lr_schedule": "cosine", "log_every": 0,
                  "checkpoint_every": 0, "overlay_every": 0, "num_workers": 0},
        "data": {"augment": {"enabled": False}, "pairs_per_batch": 0},
    })
    models = build_models(cfg, anny_body, poses.rotmats)
    trainer = build_trainer(cfg, anny_body, models)
    data = build_data(cfg, anny_body, {"synthetic": (path, None)})
    ds = Hdf5Dataset(path)
    before = pck_2d(predict_dataset(models.regressor, anny_body, ds, RES), ds, {}).metrics
    result = fit(trainer, data, progress=False)
    assert result.finished
    after = pck_2d(predict_dataset(models.regressor, anny_body, ds, RES), ds, {}).metrics
    assert before["pck@0.2"] < 0.5, before  # the mean pose does not explain these crops
    assert after["pck@0.2"] >= 0.90, (before, after)
