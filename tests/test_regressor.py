"""The IEF regressor, its config checks and the mean parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import roma
import torch

from texturepose.geometry.rotations import axis_angle_to_matrix, rot6d_to_matrix
from texturepose.losses.keypoints import keypoint_2d_loss, weak_perspective_project
from texturepose.models.keypoint_head import soft_argmax
from texturepose.models.mean_params import (
    compute_mean_params,
    load_mean_params,
    save_mean_params,
)
from texturepose.models.regressor import Regressor, RegressorConfig

J, S = 8, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mean_params(seed: int = 0) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(torch.randn(50, J, 3, generator=g) * 0.4)
    return compute_mean_params(rot, torch.full((S,), 0.5))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backbone": "resnet101"}, "model.backbone = 'resnet101' is not a known backbone"),
        ({"iterations": 0}, "model.iterations = 0 must be >= 1"),
        ({"iterations": "3"}, "model.iterations = '3' must be an integer"),
        ({"iterations": 2.5}, "must be an integer"),
        ({"dropout": 1.5}, r"model.dropout = 1.5 must be a number in \[0, 1\)"),
        ({"hidden": 0}, "model.hidden = 0 must be a positive integer"),
        ({"pretrained": 3}, "model.pretrained = 3 must be null, 'imagenet' or a file path"),
        ({"backbone": "resnet18", "pretrained": "imagenet"}, "only available for"),
        ({"head_stride": 2}, "model.head_stride = 2 must be one of"),
    ],
)
def test_bad_config_values_give_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RegressorConfig(**kwargs)


def test_mean_params_of_wrong_size_are_refused():
    with pytest.raises(ValueError, match="'rot6d' has shape"):
        Regressor(RegressorConfig(backbone="resnet18"), J + 1, S, _mean_params())


def test_outputs_and_iterations():
    torch.manual_seed(0)
    model = Regressor(RegressorConfig(backbone="resnet18", iterations=2), J, S, _mean_params())
    out = model(torch.rand(3, 3, 32, 32))
    assert out["rot6d"].shape == (3, J, 6)
    assert out["rotmats"].shape == (3, J, 3, 3)
    assert out["shape"].shape == (3, S) and out["cam"].shape == (3, 3)
    assert len(out["rotmats_iters"]) == len(out["shape_iters"]) == len(out["cam_iters"]) == 2
    assert out["rotmats_iters"][-1] is out["rotmats"]
    r = out["rotmats"].detach().double()
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3, dtype=r.dtype), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(3, J, dtype=r.dtype), atol=1e-5)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        model(torch.rand(3, 1, 32, 32))


def test_ief_starts_from_the_mean():
    mp = _mean_params()
    model = Regressor(RegressorConfig(backbone="resnet18"), J, S, mp).eval()
    with torch.no_grad():
        for dec in (model.dec_pose, model.dec_shape, model.dec_cam):
            dec.weight.zero_()
            dec.bias.zero_()
        out = model(torch.rand(2, 3, 32, 32))
    mean_r = rot6d_to_matrix(torch.from_numpy(mp["rot6d"]).view(J, 6))
    for it in range(3):
        assert torch.allclose(out["rotmats_iters"][it], mean_r.expand(2, J, 3, 3), atol=1e-6)
        assert torch.allclose(out["shape_iters"][it], torch.from_numpy(mp["shape"]).expand(2, S))
        assert torch.allclose(out["cam_iters"][it], torch.tensor([[0.9, 0.0, 0.0]] * 2))
    # With its genuine small initialisation the first prediction stays close to the mean.
    model2 = Regressor(RegressorConfig(backbone="resnet18"), J, S, mp).eval()
    with torch.no_grad():
        cam = model2(torch.rand(2, 3, 32, 32))["cam"]
    assert (cam - torch.tensor([0.9, 0.0, 0.0])).abs().max() < 0.2


def test_mean_params_closed_form(tmp_path: Path):
    """Rotations spread symmetrically about M (M exp(w), M exp(-w)) average exactly to M."""
    g = torch.Generator().manual_seed(1)
    centre = roma.random_rotmat(J, generator=g).double()
    w = torch.randn(20, J, 3, generator=g, dtype=torch.float64) * 0.5
    rot = torch.cat([centre @ axis_angle_to_matrix(w), centre @ axis_angle_to_matrix(-w)])
    shape = torch.rand(40, S, generator=g)
    mp = compute_mean_params(rot, shape, cam=(0.8, 0.1, -0.1))
    mean_r = rot6d_to_matrix(torch.from_numpy(mp["rot6d"]).double().view(J, 6))
    assert torch.allclose(mean_r[1:], centre[1:], atol=1e-5)
    # Global orientation: upright and facing the camera in the OpenCV frame (R_x(180°)).
    assert torch.allclose(mean_r[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])).double())
    assert np.allclose(mp["shape"], shape.mean(0).numpy(), atol=1e-6)
    assert np.allclose(mp["cam"], [0.8, 0.1, -0.1])
    path = save_mean_params(tmp_path / "sub" / "mean_params.npz", mp)
    assert [p.name for p in path.parent.iterdir()] == ["mean_params.npz"]  # no temp left over
    back = load_mean_params(path, num_joints=J, num_shape=S)
    assert all(np.array_equal(back[k], mp[k]) for k in mp)
    with pytest.raises(ValueError, match="expected \\(60,\\) for a body model with 10 joints"):
        load_mean_params(path, num_joints=10, num_shape=S)
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_mean_params(tmp_path / "absent.npz")
    with pytest.raises(ValueError, match="not rotation matrices"):
        compute_mean_params(rot * 2.0, shape)


def test_overfits_a_handful_of_samples():
    """Eight random images with targets from a fixed random linear 'body' (J rotations and S
    shape parameters -> K 3D keypoints): the 2D keypoint error must fall far below the mean's."""
    torch.manual_seed(0)
    k, n = 14, 8
    w_pose, w_shape = torch.randn(J * 9, k * 3) * 0.1, torch.randn(S, k * 3) * 0.1

    def body(r: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return (r.flatten(1) @ w_pose + s @ w_shape).view(-1, k, 3)

    gt_r = axis_angle_to_matrix(torch.randn(n, J, 3) * 0.4)
    gt_r[:, 0] = torch.diag(torch.tensor([1.0, -1.0, -1.0])) @ gt_r[:, 0]
    gt_cam = torch.stack(
        [0.9 + 0.1 * torch.randn(n), 0.1 * torch.randn(n), 0.1 * torch.randn(n)], 1
    )
    gt_2d = weak_perspective_project(body(gt_r, torch.rand(n, S)), gt_cam)
    conf = (torch.rand(n, k) > 0.2).float()
    target = torch.cat([gt_2d, conf[..., None]], dim=-1)

    def error(out) -> float:
        pred = weak_perspective_project(body(out["rotmats"], out["shape"]), out["cam"])
        return float(((pred - gt_2d).norm(dim=-1) * conf).sum() / conf.sum())

    images = torch.rand(n, 3, 32, 32)
    model = Regressor(RegressorConfig("resnet18", dropout=0.0, hidden=256), J, S, _mean_params())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch.no_grad():
        start = error(model.eval()(images))
    model.train()
    for _ in range(80):
        out = model(images)
        loss = sum(
            keypoint_2d_loss(weak_perspective_project(body(r, s), c), target)
            for r, s, c in zip(
                out["rotmats_iters"], out["shape_iters"], out["cam_iters"], strict=True
            )
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = error(model.eval()(images))
    assert start > 0.15  # the mean parameters do not explain the targets
    assert end < 0.06, f"keypoint error {end:.3f} (normalised crop units) after 80 steps"


def test_mean_params_from_a_mocap_file(tmp_path: Path):
    from texturepose.mocap.poses import MocapClipPoses, write_mocap_h5
    from texturepose.models.mean_params import mean_params_from_mocap

    g = torch.Generator().manual_seed(2)
    clips = []
    for c in range(2):
        rot = roma.random_rotmat((5, J), generator=g).numpy()
        clips.append(
            MocapClipPoses(
                name=f"clip{c}", source="test", licence="none", skeleton="test", path="-",
                fps=30.0, sample_fps=30.0, frames=np.arange(5), rotmats=rot,
                shape=np.full(S, 0.2 + 0.4 * c, np.float32), translation=np.zeros((5, 3)),
                fit_error_mm=np.zeros((5, 30)),
            )
        )  # fmt: skip
    names = tuple(f"j{i}" for i in range(J))
    path = write_mocap_h5(tmp_path / "poses.h5", clips, body_model="test", joint_names=names)
    mp = mean_params_from_mocap(path, joint_names=names)
    all_rot = torch.from_numpy(np.concatenate([c.rotmats for c in clips])).double()
    expected = compute_mean_params(all_rot, np.full((10, S), 0.4))
    assert all(np.allclose(mp[k], expected[k], atol=1e-6) for k in mp)
    assert np.allclose(mp["shape"], 0.4)
    with pytest.raises(ValueError, match="not the body model's"):
        mean_params_from_mocap(path, joint_names=names[::-1])


def test_mean_params_put_anny_upright_facing_the_camera(anny_body):
    """With the mean global orientation and camera, the real body model's rest pose projects
    head up, its left side on the image's right, nose towards the camera, inside the crop."""
    from texturepose.keypoints import INDEX

    mp = compute_mean_params(anny_body.rest_rotmats(3), anny_body.mean_shape)
    rot = rot6d_to_matrix(torch.from_numpy(mp["rot6d"]).view(1, anny_body.num_joints, 6))
    with torch.no_grad():
        kp = anny_body(rot, torch.from_numpy(mp["shape"])[None]).keypoints[0]
    xy = weak_perspective_project(kp[None], torch.from_numpy(mp["cam"])[None])[0]
    assert xy[INDEX["head_top"], 1] < xy[INDEX["pelvis"], 1] < xy[INDEX["l_ankle"], 1]
    assert xy[INDEX["l_shoulder"], 0] > 0 > xy[INDEX["r_shoulder"], 0]
    assert kp[INDEX["nose"], 2] < kp[INDEX["head"], 2]  # camera z looks into the scene
    known = anny_body.keypoint_mask
    assert (xy[known].abs() < 1).all()  # the whole body is inside the crop


def test_soft_argmax_of_a_peak_is_its_cell_centre():
    logits = torch.full((1, 2, 4, 8), -50.0)
    logits[0, 0, 1, 6] = 50.0  # row 1, column 6 of an 8 x 4 grid
    logits[0, 1] = 0.0  # flat: the centre, no confidence
    xy, conf = soft_argmax(logits)
    torch.testing.assert_close(xy[0, 0], torch.tensor([2 * 6.5 / 8 - 1, 2 * 1.5 / 4 - 1]))
    torch.testing.assert_close(xy[0, 1], torch.zeros(2), atol=1e-6, rtol=0)
    assert float(conf[0, 0]) == pytest.approx(1 - 1 / 32)
    assert float(conf[0, 1]) == pytest.approx(0.0, abs=1e-6)


def test_keypoint_head_with_feedback():
    """The keypoint head's outputs and the residual feedback, which needs the body's keypoints;
    the backbone's frozen stages get no gradient."""
    cfg = RegressorConfig(backbone="resnet18", dropout=0.0, hidden=64, head="keypoints",
                          feedback=True, frozen_stages=2)
    model = Regressor(cfg, J, S, _mean_params())
    images = torch.rand(2, 3, 64, 64)
    with pytest.raises(ValueError, match="keypoints_fn"):
        model(images)
    calls = []

    def keypoints_fn(rotmats, shape):
        calls.append(rotmats.shape)
        return torch.zeros(len(rotmats), 30, 3) + rotmats[:, :1, 0, :] + shape[:, None, :3]

    out = model(images, keypoints_fn=keypoints_fn)
    assert out["keypoints_2d"].shape == (2, 30, 2) and out["keypoint_confidence"].shape == (2, 30)
    assert (out["keypoints_2d"].abs() <= 1).all()
    assert len(calls) == cfg.iterations and calls[0] == (2, J, 3, 3)
    (out["cam"].sum() + out["keypoints_2d"].sum()).backward()
    assert model.backbone.conv1.weight.grad is None
    assert model.backbone.layer1[0].conv1.weight.grad is None
    assert model.backbone.layer2[0].conv1.weight.grad is not None
    assert model.keypoint_head.logits.weight.grad is not None
    assert model.keypoint_head.logits.bias is None
    with pytest.raises(ValueError, match="feedback needs model.head: keypoints"):
        RegressorConfig(backbone="resnet18", feedback=True)
    with pytest.raises(ValueError, match="model.head = 'heat'"):
        RegressorConfig(backbone="resnet18", head="heat")


def _turn_setup(anny_body, facing):
    from texturepose.keypoints import FLIP_PERMUTATION

    mp = compute_mean_params(anny_body.rest_rotmats(3), anny_body.mean_shape)
    cfg = RegressorConfig(backbone="resnet18", dropout=0.0, hidden=32, head="keypoints",
                          feedback=True, facing=facing)
    model = Regressor(cfg, anny_body.num_joints, anny_body.num_shape, mp)
    pose, shape = model.mean_rot6d.expand(2, -1), model.mean_shape.expand(2, -1)
    cam = model.mean_cam.expand(2, -1)
    rotmats = rot6d_to_matrix(pose.reshape(2, -1, 6))
    with torch.no_grad():
        front = weak_perspective_project(anny_body.keypoints(rotmats, shape), cam)
    back = front[:, FLIP_PERMUTATION]  # same places, left and right labels swapped
    return model, rotmats, shape, cam, front, back


def test_a_back_view_turns_the_start_by_half_a_turn(anny_body):
    """Keypoints of the mean pose seen from behind (its left/right labels swapped) mark the
    crop as facing away; turning the start by 180 degrees projects near those keypoints; the
    mean pose's own keypoints leave it as it is."""
    from texturepose.models.regressor import facing_sign

    model, rotmats, shape, cam, front, back = _turn_setup(anny_body, "turn")
    kp2d = torch.stack([front[0], back[1]])
    with torch.no_grad():
        flip = model._faces_away(kp2d, rotmats, shape, cam, anny_body.keypoints)
        turned = model._turn_root(rotmats, flip)
        now = weak_perspective_project(anny_body.keypoints(turned, shape), cam)
    assert flip.tolist() == [False, True]
    torch.testing.assert_close(turned[0], rotmats[0])
    torch.testing.assert_close(turned[1, 1:], rotmats[1, 1:])
    assert facing_sign(front)[0] > 0 > facing_sign(now)[1]
    known = anny_body.keypoint_mask
    start_err = (front[1] - back[1])[known].norm(dim=-1).mean()
    turned_err = (now[1] - back[1])[known].norm(dim=-1).mean()
    assert turned_err < 0.2 * start_err, (start_err, turned_err)
    with pytest.raises(ValueError, match="facing: turn needs"):
        RegressorConfig(backbone="resnet18", head="keypoints", facing="turn")
    with pytest.raises(ValueError, match="model.facing = 'left' must be one of"):
        RegressorConfig(backbone="resnet18", head="keypoints", feedback=True, facing="left")


@pytest.mark.parametrize("facing", ["turn", "canonical"])
def test_forward_starts_a_back_view_turned(anny_body, facing, monkeypatch):
    """Through ``forward``: with the keypoint head saying "seen from behind", an untrained
    model (corrections near 0) returns the turned mean pose, its camera mirrored as the turn
    needs; a front view returns the mean pose, for every facing mode."""
    import texturepose.models.regressor as regressor_module

    model, rotmats, shape, cam, front, back = _turn_setup(anny_body, facing)
    heads = torch.stack([front[0], back[1]])
    monkeypatch.setattr(regressor_module, "soft_argmax",
                        lambda logits: (heads, torch.ones(2, heads.shape[1])))
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64), keypoints_fn=anny_body.keypoints)
        now = weak_perspective_project(anny_body.keypoints(out["rotmats"], out["shape"]),
                                       out["cam"])
    torch.testing.assert_close(out["keypoints_2d"], heads)  # the head's own, unmirrored
    torch.testing.assert_close(out["rotmats"], rot6d_to_matrix(out["rot6d"]))
    known = anny_body.keypoint_mask
    err = (now - heads)[:, known].norm(dim=-1).mean(dim=1)
    base = (front - heads)[:, known].norm(dim=-1).mean(dim=1)
    assert err[0] < 0.05 and err[1] < 0.2 * base[1], (err, base)


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
@pytest.mark.parametrize("stride", [8, 4])
def test_keypoint_head_stride(backbone, stride):
    """``head_stride`` 4 gives heatmaps on the stride-4 grid (twice as fine), 8 the stride-8
    one, and both see the whole pyramid; coordinates stay in the crop's [-1, 1]."""
    from texturepose.models.keypoint_head import KeypointHead
    from texturepose.models.pretrained import build_backbone

    net = build_backbone(backbone, None)
    maps = net.feature_maps(torch.rand(2, 3, 64, 64))
    assert {k: v.shape[1] for k, v in maps.items() if k != "pooled"} == net.map_channels
    assert maps["s4"].shape[-1] == 16 and maps["s8"].shape[-1] == 8
    head = KeypointHead(net.map_channels, 30, width=16, stride=stride)
    logits = head(maps)
    assert logits.shape == (2, 30, 64 // stride, 64 // stride)
    kp, _ = soft_argmax(logits)
    assert (kp.abs() <= 1).all()
    logits.sum().backward()
    assert head.lateral["s32"].weight.grad is not None
