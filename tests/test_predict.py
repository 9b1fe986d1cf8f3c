"""`texturepose predict`: images, folders and videos in; overlays, meshes and JSON out; bad
inputs skipped with a message naming the file while the batch goes on."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import trimesh

from texturepose.cli import main
from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.geometry.crops import crop_image, from_crop
from texturepose.inference.batch import PeopleSpec, predict_paths
from texturepose.inference.inputs import InputError
from texturepose.inference.people import Person, people_from_keypoint_json
from texturepose.inference.photo import PhotoPredictor
from texturepose.losses.keypoints import normalized_to_pixels
from texturepose.models.mean_params import compute_mean_params
from texturepose.models.regressor import Regressor, RegressorConfig
from texturepose.synthetic import PoseClips, SynthConfig, synthesize
from texturepose.synthetic.rig import RigConfig
from texturepose.training.checkpoint import save_model

RES = 64
MODEL = {"backbone": "resnet18", "pretrained": None, "hidden": 64, "dropout": 0.0,
         "head": "keypoints", "feedback": True, "res": RES}


def _checkpoint(path, body, num_joints=None, section=None, model=MODEL):
    """An untrained model file (seed 0) of ``model``'s architecture for ``body``."""
    torch.manual_seed(0)
    j = num_joints or body.num_joints
    mp = compute_mean_params(body.rest_rotmats(2)[:, :1].expand(2, j, 3, 3).numpy(),
                             body.mean_shape.numpy())
    cfg = {k: v for k, v in model.items() if k != "res"}
    reg = Regressor(RegressorConfig(**cfg), j, body.num_shape, mp)
    return save_model(path, reg, model, section or {"model": "anny"}, mp, {"focal_224": 5000.0})


@pytest.fixture(scope="module")
def photo(anny_body, tmp_path_factory):
    """A synthetic render of a known pose, padded into a larger 'photo' (RGB uint8)."""
    root = tmp_path_factory.mktemp("render")
    rot = anny_body.rest_rotmats(1).numpy().astype(np.float32)
    clips = PoseClips(np.repeat(rot, 2, 0), np.array(["a", "a"]), np.arange(2))
    cfg = SynthConfig(subjects_train=1, subjects_test=0, clips_per_subject=1, frames_per_clip=1,
                      frame_step=1, crop_res=96, texture_res=64, batch_size=4, seed=3,
                      rig=RigConfig(num_cameras=1), created="fixed")
    synthesize(root, cfg, anny_body, clips)
    crop = Hdf5Dataset(root / "synthetic_train.h5")[0]["image"]
    return cv2.copyMakeBorder(crop, 20, 20, 40, 40, cv2.BORDER_CONSTANT, value=(80, 80, 80))


@pytest.fixture(scope="module")
def checkpoint(anny_body, tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "final.pt", anny_body)


def _write(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _write_clip(path, photo, frames, fps, shift):
    """An MP4 of ``frames`` frames: the photo rolled ``shift`` more pixels each frame."""
    h, w = photo.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        writer.write(cv2.cvtColor(np.roll(photo, shift * i, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_image_gives_mesh_json_and_overlay_that_agree(photo, checkpoint, anny_body, tmp_path):
    img = _write(tmp_path / "me.png", photo)
    h, w = photo.shape[:2]
    summary = predict_paths([img], tmp_path / "out", checkpoint,
                            PeopleSpec(bbox=f"40,20,{w - 40},{h - 20}"), progress=False)
    assert summary.people == 1 and not summary.skipped
    mesh = trimesh.load(tmp_path / "out" / "me_person0.obj", process=False)
    assert len(mesh.vertices) == anny_body.num_vertices and len(mesh.faces) == len(anny_body.faces)
    ply = trimesh.load(tmp_path / "out" / "me_person0.ply", process=False)
    np.testing.assert_allclose(ply.vertices, mesh.vertices, atol=1e-5)
    rec = json.loads((tmp_path / "out" / "me_person0.json").read_text())
    k = np.array(rec["camera"]["K"])
    x3 = np.array(rec["keypoints_3d"])
    uvw = x3 @ k.T  # the saved camera reprojects the saved 3D keypoints onto the 2D ones
    np.testing.assert_allclose(uvw[:, :2] / uvw[:, 2:], np.array(rec["keypoints_2d"]), atol=1e-2)
    assert len(rec["keypoint_names"]) == x3.shape[0] and rec["body_model"] == "anny"
    overlay = cv2.imread(str(tmp_path / "out" / "me_overlay.png"))
    assert overlay.shape == (h, 2 * w, 3)  # the photo with the mesh | the side view
    # The mesh is drawn where the person is: the overlay differs from the photo inside the box.
    front = cv2.cvtColor(overlay[:, :w], cv2.COLOR_BGR2RGB).astype(int)
    assert np.abs(front - photo).sum(-1)[20:h - 20, 40:w - 40].mean() > 5


def test_video_gives_an_overlay_video_with_the_same_frames(photo, checkpoint, tmp_path):
    path = _write_clip(tmp_path / "clip.mp4", photo, frames=5, fps=12.0, shift=3)
    summary = predict_paths([path], tmp_path / "out", checkpoint, every=2, progress=False)
    assert summary.frames == 3 and summary.people == 3  # frames 0, 2, 4
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip_overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert sorted(p.name for p in (tmp_path / "out").glob("clip_frame*_person0.json")) == [
        "clip_frame000000_person0.json", "clip_frame000002_person0.json",
        "clip_frame000004_person0.json"]


def test_a_folder_with_bad_files_goes_on_and_says_why(photo, checkpoint, tmp_path, caplog):
    folder = tmp_path / "in" / "sub"
    folder.mkdir(parents=True)
    _write(folder / "good.jpg", photo)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.txt").write_text("hello")
    summary = predict_paths([tmp_path / "in"], tmp_path / "out", checkpoint, progress=False)
    assert summary.frames == 1 and (tmp_path / "out" / "sub__good_overlay.png").is_file()
    reasons = dict(summary.skipped)
    assert "not a readable image" in reasons[str(folder / "broken.jpg")]
    assert "empty or missing video" in reasons[str(folder / "empty.mp4")]
    assert "not an image or video" in reasons[str(folder / "notes.txt")]
    assert not list((tmp_path / "out").glob(".*"))  # no half-written temporary files left


def test_box_outside_the_image_is_skipped_with_its_reason(photo, checkpoint, tmp_path):
    img = _write(tmp_path / "a.png", photo)
    summary = predict_paths([img], tmp_path / "out", checkpoint,
                            PeopleSpec(bbox="5000,5000,6000,6000"), progress=False)
    assert summary.frames == 0 and "outside" in summary.skipped[0][1]


def test_missing_and_foreign_checkpoints_are_named(photo, anny_body, tmp_path, caplog):
    img = _write(tmp_path / "a.png", photo)
    assert main(["predict", str(img), "--out", str(tmp_path / "o"),
                 "--checkpoint", str(tmp_path / "nope.pt"), "--quiet"]) == 2
    assert "nope.pt: no such checkpoint" in caplog.text
    other = _checkpoint(tmp_path / "other.pt", anny_body, num_joints=anny_body.num_joints - 3)
    with pytest.raises(InputError, match="other.pt: the checkpoint predicts"):
        predict_paths([img], tmp_path / "o", other, progress=False)
    smpl = _checkpoint(tmp_path / "smpl.pt", anny_body, section={"model": "smpl"})
    with pytest.raises(InputError, match="smpl.pt: its body model"):
        predict_paths([img], tmp_path / "o", smpl, progress=False)


def test_keypoint_json_openpose_and_coco(tmp_path):
    op = tmp_path / "op.json"
    op.write_text(json.dumps({"people": [{"pose_keypoints_2d": [10, 20, 0.9, 50, 120, 0.8,
                                                                 0, 0, 0.0]}]}))
    (p,) = people_from_keypoint_json(op, (200, 200))
    np.testing.assert_allclose(p.center, [30, 70])
    assert p.size == pytest.approx(100 * 1.2)
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"annotations": [{"bbox": [0, 0, 40, 80], "keypoints": []}]}))
    (q,) = people_from_keypoint_json(coco, (200, 200))
    assert q.source == "coco" and q.size == pytest.approx(80 * 1.2)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError, match="bad.json: not a readable JSON"):
        people_from_keypoint_json(bad, (200, 200))


def test_batches_across_frames_and_images_give_the_one_at_a_time_results(photo, checkpoint,
                                                                           tmp_path):
    """--batch-size runs the crops of several frames/images together: the same meshes and
    keypoints as one at a time, every frame still written in its order."""
    path = _write_clip(tmp_path / "clip.mp4", photo, frames=5, fps=10.0, shift=4)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        _write(folder / f"im{i}.png", np.roll(photo, -5 * i, axis=0))
    outs = {}
    for bs in (1, 2):
        out = tmp_path / f"out{bs}"
        summary = predict_paths([path, folder], out, checkpoint, progress=False, batch_size=bs)
        assert summary.frames == 8 and not summary.skipped
        outs[bs] = out
    for name in ["clip_frame000000_person0.json", "clip_frame000003_person0.json",
                 "clip_frame000004_person0.json", "im0_person0.json", "im2_person0.json"]:
        one, two = (json.loads((outs[b] / name).read_text()) for b in (1, 2))
        np.testing.assert_allclose(one["keypoints_2d"], two["keypoints_2d"], atol=0.05)
        np.testing.assert_allclose(one["keypoints_3d"], two["keypoints_3d"], atol=1e-3)
    cap = cv2.VideoCapture(str(outs[2] / "clip_overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


def test_refine_steps_bring_the_mesh_to_the_keypoint_heads_output(photo, checkpoint):
    """--refine-steps fits each mesh to the network's own 2D keypoints: the mesh's keypoints
    in image pixels move towards the head's (reference: the head run on the same crop)."""
    h, w = photo.shape[:2]
    person = Person(np.array([w / 2, h / 2]), float(max(h, w)), "bbox")
    plain = PhotoPredictor(checkpoint)
    refined = PhotoPredictor(checkpoint, refine_steps=40)
    crop = crop_image(photo, person.center, person.size, plain.res)
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        out = plain.regressor(x, keypoints_fn=plain.body.keypoints)
    head = normalized_to_pixels(out["keypoints_2d"][0].float(), plain.res).numpy()
    head = from_crop(head.astype(np.float64), person.center, person.size, plain.res)
    weight = out["keypoint_confidence"][0].numpy() * plain.body.keypoint_mask.numpy()

    def distance(predictor):
        mesh = predictor.predict(photo, [person])[0]
        return float((np.linalg.norm(mesh.keypoints_2d - head, axis=-1) * weight).sum()
                     / weight.sum())

    assert distance(refined) < 0.5 * distance(plain)
    with pytest.raises(InputError, match="refine-steps"):
        PhotoPredictor(checkpoint, refine_steps=-1)
