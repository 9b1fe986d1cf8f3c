"""The pose lifter (model.start: lifted): its input normalisation, the closed-form camera, the
regressor's lifted start, and that fitting it to mocap views lifts unseen views of held-out
poses far better than the mean pose does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texturepose.geometry.cameras import weak_perspective_project
from texturepose.geometry.rotations import rot6d_to_matrix
from texturepose.keypoints import NUM_KEYPOINTS
from texturepose.models.lifter import (
    SCALE_RANGE,
    PoseLifter,
    fit_weak_camera,
    normalize_keypoints,
)
from texturepose.models.mean_params import compute_mean_params
from texturepose.models.regressor import Regressor, RegressorConfig


def test_normalisation_ignores_the_crop_framing():
    g = torch.Generator().manual_seed(0)
    kp = torch.randn(4, NUM_KEYPOINTS, 2, generator=g)
    w = (torch.rand(4, NUM_KEYPOINTS, generator=g) > 0.2).float()
    mask = torch.ones(NUM_KEYPOINTS, dtype=torch.bool)
    a = normalize_keypoints(kp, w, mask)
    b = normalize_keypoints(2.5 * kp + torch.tensor([0.3, -0.7]), w, mask)
    assert torch.allclose(a, b, atol=1e-5)
    x = a[:, : 2 * NUM_KEYPOINTS].view(4, NUM_KEYPOINTS, 2)
    # unit RMS radius over the weighted points, zeros where the weight is
    rms = ((x ** 2).sum(-1) * w).sum(1) / w.sum(1)
    assert torch.allclose(rms, torch.ones(4), atol=1e-5)
    assert (x[w == 0] == 0).all()
    # a keypoint the body model does not regress is ignored like a dropped one
    mask[3] = False
    c = normalize_keypoints(kp, w, mask)
    assert (c[:, 2 * NUM_KEYPOINTS + 3] == 0).all()


def test_weak_camera_is_recovered_exactly():
    g = torch.Generator().manual_seed(1)
    points = torch.randn(3, NUM_KEYPOINTS, 3, generator=g)
    cam = torch.tensor([[0.9, 0.1, -0.2], [1.7, -0.3, 0.05], [0.5, 0.0, 0.4]])
    kp = weak_perspective_project(points, cam)
    w = torch.ones(3, NUM_KEYPOINTS)
    w[0, :5] = 0.0
    kp[0, :5] += 10.0  # outliers with zero weight change nothing
    assert torch.allclose(fit_weak_camera(points, kp, w), cam, atol=1e-5)
    # degenerate keypoints (all at one point) give a scale in the sane range, not 0
    flat = fit_weak_camera(points, torch.zeros(3, NUM_KEYPOINTS, 2), w)
    assert (flat[:, 0] >= SCALE_RANGE[0]).all()


def _mean_params(j: int = 24, s: int = 10) -> dict[str, np.ndarray]:
    eye = np.broadcast_to(np.eye(3), (4, j, 3, 3)).copy()
    return compute_mean_params(eye, np.zeros(s))


def test_an_unfitted_lifter_answers_the_mean_pose():
    mp = _mean_params()
    lifter = PoseLifter(NUM_KEYPOINTS, 24, torch.from_numpy(mp["rot6d"]))
    out = lifter(torch.randn(5, NUM_KEYPOINTS, 2), torch.ones(5, NUM_KEYPOINTS))
    assert out.shape == (5, 24, 6)
    assert torch.allclose(out, torch.from_numpy(mp["rot6d"]).view(1, 24, 6).expand(5, -1, -1),
                          atol=0.05)


@pytest.mark.parametrize("kwargs, match", [
    ({"start": "lifted", "head": "pooled"}, "needs model.head: keypoints"),
    ({"start": "lifted", "head": "keypoints", "feedback": True, "facing": "turn"},
     "chooses the facing itself"),
    ({"start": "guess"}, "model.start"),
    ({"lift_grad": True}, "lift_grad needs model.start: lifted"),
    ({"start": "lifted", "head": "keypoints", "feedback": True, "lift_grad": 1}, "true or false"),
])
def test_bad_start_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RegressorConfig(**kwargs)


def test_the_ief_starts_from_the_lifted_pose_on_the_person(anny_body, one_torch_thread):
    body = anny_body
    mp = compute_mean_params(body.rest_rotmats(2).numpy(), body.mean_shape.numpy())
    cfg = RegressorConfig(backbone="resnet18", head="keypoints", feedback=True, dropout=0.0,
                          start="lifted", hidden=64)
    torch.manual_seed(0)
    reg = Regressor(cfg, body.num_joints, body.num_shape, mp).eval()
    assert not any(p.requires_grad for p in reg.lifter.parameters())
    with torch.no_grad():
        reg.lifter.out.bias.normal_(0.0, 0.2)  # a lifter that answers something else
        for dec in (reg.dec_pose, reg.dec_shape, reg.dec_cam):
            dec.weight.zero_()
        out = reg(torch.rand(2, 3, 64, 64), keypoints_fn=body.keypoints)
    start = out["start_rot6d"]
    lifted = reg.lifter(out["keypoints_2d"], out["keypoint_confidence"])
    assert torch.allclose(start, lifted, atol=1e-5)
    # with silent corrections the output is the start, placed by the closed-form camera
    assert torch.allclose(out["rot6d"], start, atol=1e-5)
    kp = body.keypoints(rot6d_to_matrix(start), out["shape"])
    cam = fit_weak_camera(kp, out["keypoints_2d"], out["keypoint_confidence"])
    assert torch.allclose(out["cam"], cam, atol=1e-4)


def test_fitting_lifts_unseen_views_of_held_out_poses(anny_body, one_torch_thread):
    """Random poses (every joint but the root turned by up to ~0.5 rad), 200 steps: on
    unseen views of poses it never saw, the lifted 3D keypoints must be far closer than the
    mean pose's (PA-MPJPE; the depth of each bone is what the lifter has to guess)."""
    import roma

    from texturepose.evaluation.metrics import pa_mpjpe
    from texturepose.training.lift import LiftSettings, MocapViews, fit_lifter

    body = anny_body
    g = torch.Generator().manual_seed(3)
    n = 448
    rotvec = 0.3 * torch.randn(n, body.num_joints, 3, generator=g)
    rotvec[:, 0] = 0.0
    rot = roma.rotvec_to_rotmat(rotvec)
    train, test = rot[:384], rot[384:]
    shapes = body.mean_shape[None].expand(4, -1)
    mp = compute_mean_params(train.numpy(), body.mean_shape.numpy())
    torch.manual_seed(0)
    lifter = PoseLifter(NUM_KEYPOINTS, body.num_joints, torch.from_numpy(mp["rot6d"]),
                        hidden=256, blocks=1)
    settings = LiftSettings(steps=200, batch_size=64, noise=0.0, drop=0.0)
    errors = fit_lifter(lifter, body, train, shapes, settings, body.mean_shape, seed=0,
                        progress=False)
    assert errors[-1] < errors[0]
    views = MocapViews(body, test, shapes, settings, seed=11)
    xy, w, _, kp = views.sample(64)
    with torch.no_grad():
        pred = body.keypoints(rot6d_to_matrix(lifter(xy, w)), body.mean_shape[None].expand(64, -1))
        mean = body.keypoints(rot6d_to_matrix(torch.from_numpy(mp["rot6d"]).view(1, -1, 6)),
                              body.mean_shape[None]).expand(64, -1, -1)
    mask = body.keypoint_mask.numpy()
    lifted = float(np.mean(pa_mpjpe(pred[:, mask].numpy(), kp[:, mask].numpy())))
    baseline = float(np.mean(pa_mpjpe(mean[:, mask].numpy(), kp[:, mask].numpy())))
    assert lifted < 0.85 * baseline, (lifted, baseline)  # measured 0.74x


def test_without_ief_iterations_the_lifted_start_is_the_answer(anny_body, one_torch_thread):
    body = anny_body
    mp = compute_mean_params(body.rest_rotmats(2).numpy(), body.mean_shape.numpy())
    cfg = RegressorConfig(backbone="resnet18", head="keypoints", feedback=True, dropout=0.0,
                          start="lifted", iterations=0, hidden=64)
    reg = Regressor(cfg, body.num_joints, body.num_shape, mp).eval()
    out = reg(torch.rand(2, 3, 64, 64), keypoints_fn=body.keypoints)
    assert torch.equal(out["rot6d"], out["start_rot6d"])
    assert len(out["rotmats_iters"]) == 1
    # only the keypoint head learns in this mode: the pose carries no gradient
    assert not out["rot6d"].requires_grad and out["keypoints_2d"].requires_grad
    with pytest.raises(ValueError, match="0 only with model.start: lifted"):
        RegressorConfig(head="keypoints", feedback=True, iterations=0)


def test_lift_grad_trains_the_head_through_the_frozen_lifter(anny_body, one_torch_thread):
    """With ``lift_grad`` a loss on the lifted pose (and its camera) reaches the keypoint head,
    the lifter's own weights stay out of it, and the forward values are those without it."""
    body = anny_body
    mp = compute_mean_params(body.rest_rotmats(2).numpy(), body.mean_shape.numpy())
    outs = {}
    for grad in (False, True):
        cfg = RegressorConfig(backbone="resnet18", head="keypoints", feedback=True, dropout=0.0,
                              start="lifted", iterations=0, hidden=64, lift_grad=grad)
        torch.manual_seed(0)
        reg = Regressor(cfg, body.num_joints, body.num_shape, mp).eval()
        with torch.no_grad():
            reg.lifter.out.weight.normal_(0.0, 0.05)  # a lifter whose answer depends on its input
        out = reg(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)),
                  keypoints_fn=body.keypoints)
        outs[grad] = out
        if grad:
            (out["rot6d"].pow(2).sum() + out["cam"].sum()).backward()
            assert reg.keypoint_head.logits.weight.grad.abs().sum() > 0
            assert all(p.grad is None for p in reg.lifter.parameters())
        else:
            assert not out["rot6d"].requires_grad
    torch.testing.assert_close(outs[True]["rot6d"].detach(), outs[False]["rot6d"])
    torch.testing.assert_close(outs[True]["cam"].detach(), outs[False]["cam"])
