"""Training samples: crops, augmentation geometry, flips, pairs, mixed sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from texturepose.data.dataset import (
    Augmentation,
    AugmentConfig,
    SampleRequest,
    TrainingDataset,
    mirror_pose,
    warp_image,
)
from texturepose.data.hdf5 import Hdf5Writer
from texturepose.data.sampling import MixedBatchSampler, MixSource, allocate, read_pairs
from texturepose.geometry.crops import to_crop
from texturepose.geometry.rotations import axis_angle_to_matrix, mirror_rotations
from texturepose.keypoints import FLIP_PERMUTATION, INDEX, NUM_KEYPOINTS

J, S = 24, 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")
PERM = np.arange(J)[::-1].copy()  # any involution works for the numpy mirror checks
DOTS = {"r_ankle": 0, "l_wrist": 1, "head_top": 2}  # keypoint -> colour channel of its dot


def _blobs(res: int, centres: dict[int, np.ndarray], sigma: float = 1.6) -> np.ndarray:
    """Gaussian dots (one colour channel each) at continuous crop coordinates."""
    yy, xx = np.mgrid[0:res, 0:res] + 0.5
    img = np.zeros((res, res, 3))
    for ch, (x, y) in centres.items():
        img[..., ch] += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _dot_dataset(tmp_path, crop_res: int = 96, n: int = 3, seed: int = 0):
    """Samples whose crops show a dot at three keypoints, with consistent 3D keypoints
    (the 2D ones are their orthographic projection) and body poses."""
    rng = np.random.default_rng(seed)
    path = tmp_path / f"dots_{crop_res}.h5"
    with Hdf5Writer(path, dataset="dots", split="train", crop_res=crop_res, source="test",
                    licence="none", body_model="anny") as w:
        for i in range(n):
            center = rng.uniform(300, 500, 2).astype(np.float32)
            size = float(rng.uniform(180, 260))
            k3 = np.zeros((NUM_KEYPOINTS, 4), np.float32)
            k3[:, :3] = rng.normal(0, 0.25, (NUM_KEYPOINTS, 3)) + [0, 0, 4]
            k3[:, 3] = 1
            # Orthographic image of the 3D points: 1 m = 0.6 * size pixels about the centre.
            kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)
            kp[:, :2] = center + k3[:, :2] * 0.6 * size
            kp[:, 2] = 1.0
            kp[INDEX["nose"], 2] = 0.0  # an unknown point
            crop_xy = to_crop(kp[:, :2].astype(np.float64), center, size, crop_res)
            img = _blobs(crop_res, {ch: crop_xy[INDEX[k]] for k, ch in DOTS.items()})
            pose = axis_angle_to_matrix(torch.from_numpy(rng.normal(0, 0.4, (J, 3)))).numpy()
            w.add(dict(image=img, crop_center=center, crop_size=size, keypoints_2d=kp,
                       visible=kp[:, 2].astype(np.uint8), image_name=f"im{i}", subject="S1",
                       sequence="a", camera=str(i % 2), frame=i // 2, person=0,
                       keypoints_3d=k3, body_pose=pose.astype(np.float32),
                       body_shape=rng.uniform(0, 1, S).astype(np.float32)))
    return path


def _dataset(path, res=64, augment=None, perm=PERM):
    return TrainingDataset(path, res, augment or AugmentConfig(), "anny", J, S, perm, seed=3)


def _centroid(img: np.ndarray, ch: int, xy: np.ndarray, half: int = 4) -> np.ndarray:
    x0, y0 = int(xy[0]), int(xy[1])
    ys, xs = np.mgrid[max(0, y0 - half): y0 + half + 1, max(0, x0 - half): x0 + half + 1]
    ys, xs = ys[(ys < img.shape[0]) & (xs < img.shape[1])], xs[(ys < img.shape[0]) & (
        xs < img.shape[1])]
    w = img[ys, xs, ch]
    return np.array([(w * (xs + 0.5)).sum(), (w * (ys + 0.5)).sum()]) / w.sum()


@pytest.mark.parametrize("crop_res", [64, 96])
def test_keypoints_follow_the_image_under_augmentation(tmp_path, crop_res):
    ds = _dataset(_dot_dataset(tmp_path, crop_res))
    augs = [Augmentation(), Augmentation(flip=True),
            Augmentation(scale=0.8, rotation=25.0), Augmentation(True, 1.15, -30.0)]
    rng = np.random.default_rng(1)
    augs += [Augmentation.draw(AugmentConfig(color=0.0), rng) for _ in range(4)]
    checked = 0
    for aug in augs:
        for i in range(len(ds)):
            s = ds.sample(i, aug)
            img = s["image"].permute(1, 2, 0).numpy()
            kp = s["keypoints_2d"].numpy()
            px = (kp[:, :2] + 1.0) * 32.0  # normalised -> crop pixels at res 64
            for name, ch in DOTS.items():
                # After a flip, the r_ankle dot is the mirrored body's l_ankle.
                j = int(np.nonzero(FLIP_PERMUTATION == INDEX[name])[0][0]) if aug.flip \
                    else INDEX[name]
                if not (6 <= px[j]).all() or not (px[j] <= 58).all():
                    continue  # near the border: the dot may be cut
                assert kp[j, 2] == 1.0
                found = _centroid(img, ch, px[j])
                assert np.abs(found - px[j]).max() < 0.35, (aug, name, found, px[j])
                checked += 1
            assert kp[INDEX["nose"] if not aug.flip else FLIP_PERMUTATION[INDEX["nose"]], 2] == 0
    assert checked > 40


def test_3d_keypoints_follow_rotation_and_flip(tmp_path):
    """Stored 2D keypoints are an orthographic image of the 3D ones; after any augmentation the
    returned 2D keypoints must still be a scaled, shifted image of the returned 3D ones."""
    ds = _dataset(_dot_dataset(tmp_path))
    rng = np.random.default_rng(5)
    for _ in range(6):
        aug = Augmentation.draw(AugmentConfig(flip=0.5, rotation=40, rotation_prob=1.0), rng)
        s = ds.sample(0, aug)
        k2, k3 = s["keypoints_2d"].numpy(), s["keypoints_3d"].numpy()
        ok = k2[:, 2] > 0
        a = np.concatenate([k3[ok, :2].reshape(-1, 1), np.tile(np.eye(2), (ok.sum(), 1))], 1)
        sol, *_ = np.linalg.lstsq(a, k2[ok, :2].reshape(-1), rcond=None)
        assert sol[0] > 0
        assert np.abs(a @ sol - k2[ok, :2].reshape(-1)).max() < 1e-4


def test_flip_twice_is_identity(tmp_path):
    ds = _dataset(_dot_dataset(tmp_path, 64))
    plain = ds.sample(1, Augmentation())
    flipped = ds.sample(1, Augmentation(flip=True))
    # The flipped crop is the mirror image; flipping it back gives the original exactly.
    m = Augmentation(flip=True).matrix(64)
    img = (flipped["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    back = warp_image(img, m, 64)
    assert np.array_equal(back, (plain["image"].permute(1, 2, 0).numpy() * 255).round()
                          .astype(np.uint8))
    assert np.array_equal(np.asarray(FLIP_PERMUTATION)[FLIP_PERMUTATION], np.arange(30))
    k = flipped["keypoints_2d"].numpy()[FLIP_PERMUTATION]
    k[:, 0] *= -1
    np.testing.assert_allclose(k, plain["keypoints_2d"].numpy(), atol=1e-6)
    k3 = flipped["keypoints_3d"].numpy()[FLIP_PERMUTATION]
    k3[:, 0] *= -1
    np.testing.assert_allclose(k3, plain["keypoints_3d"].numpy(), atol=1e-6)
    p = flipped["body_pose"].numpy()
    np.testing.assert_allclose(mirror_pose(p, PERM), plain["body_pose"].numpy(), atol=1e-6)


def test_mirror_pose_matches_body_flip_pose():
    r = axis_angle_to_matrix(torch.randn(2, J, 3, dtype=torch.float64) * 0.5)
    perm = torch.randperm(J)
    expected = mirror_rotations(r[:, perm])  # BodyModel.flip_pose's formula
    np.testing.assert_allclose(mirror_pose(r.numpy(), perm.numpy()), expected.numpy(), atol=1e-12)


def test_augmented_body_pose_moves_the_body_with_the_image(tmp_path, anny_body):
    """Posing the real body with the augmented parameters gives the augmented 3D keypoints:
    rotated about the optical axis and, when flipped, mirrored with the left/right swap."""
    perm = anny_body.flip_joint_permutation.numpy()
    ds = _dataset(_dot_dataset(tmp_path), perm=perm)
    plain = ds.sample(0, Augmentation())
    shape = plain["body_shape"][None]
    base = anny_body(plain["body_pose"][None], shape).keypoints[0].numpy()
    for aug in (Augmentation(rotation=35.0), Augmentation(flip=True, rotation=-20.0)):
        s = ds.sample(0, aug)
        kp = anny_body(s["body_pose"][None], shape).keypoints[0].numpy()
        expected = base @ aug.transform3d().T
        if aug.flip:
            expected = expected[FLIP_PERMUTATION]
        mask = anny_body.keypoint_mask.numpy()
        # Anny's mesh is nearly (not exactly) left/right symmetric: allow 1.5 cm.
        err = np.linalg.norm(kp[mask] - expected[mask], axis=1)
        assert err.max() < (1e-4 if not aug.flip else 0.015), err.max()


def test_pairs_share_flip_and_colour_but_not_geometry(tmp_path):
    ds = _dataset(_dot_dataset(tmp_path))
    same_flip = 0
    for p in range(20):
        a = ds.augmentation(SampleRequest(0, 0, (5, 1, 2 * p), (5, 2, p), 0))
        b = ds.augmentation(SampleRequest(0, 1, (5, 1, 2 * p + 1), (5, 2, p), 0))
        assert a.flip == b.flip and a.color == b.color
        same_flip += a.scale == b.scale
    assert same_flip == 0
    # Independent draws of singles do differ in flip sometimes.
    flips = {ds.augmentation(SampleRequest(0, 0, (s, 0, 0))).flip for s in range(20)}
    assert flips == {True, False}


def test_augmentation_is_a_function_of_the_request(tmp_path):
    ds = _dataset(_dot_dataset(tmp_path))
    r = SampleRequest(0, 2, (7, 0, 3))
    a, b = ds[r], ds[r]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["keypoints_2d"],
                                                               b["keypoints_2d"])
    c = ds[r._replace(key=(8, 0, 3))]
    assert not torch.equal(a["image"], c["image"])


def test_bad_augment_params():
    with pytest.raises(ValueError, match=r"data\.augment\.flip"):
        AugmentConfig(flip=1.5)
    with pytest.raises(ValueError, match=r"data\.augment\.scale"):
        AugmentConfig(scale="big")


def test_allocate_and_mixed_sampler():
    assert allocate([0.5, 0.3, 0.2], 10).tolist() == [5, 3, 2]
    assert allocate([1, 1, 1], 4).sum() == 4
    sources = [MixSource("a", 10, 0.75), MixSource("b", 7, 0.25), MixSource("c", 3, 0.0)]
    s = MixedBatchSampler(sources, batch_size=8, seed=1, num_steps=20)
    batches = list(s)
    assert len(batches) == 20
    counts = np.zeros(2, int)
    seen_a = []
    for b in batches:
        ds = np.array([r.dataset for r in b])
        counts += np.bincount(ds, minlength=2)
        seen_a += [r.index for r in b if r.dataset == 0]
    assert counts.tolist() == [120, 40]
    # Dataset a is visited in per-epoch permutations: 5 steps of 6 draws = 3 full epochs.
    for k in range(4):
        assert np.bincount(seen_a[30 * k: 30 * k + 30], minlength=10).tolist() == [3] * 10
    # Resume: a sampler restored at step 13 yields exactly the remaining batches.
    t = MixedBatchSampler(sources, batch_size=8, seed=1, num_steps=20)
    t.load_state_dict({**s.state_dict(), "step": 13})
    assert list(t) == batches[13:]
    with pytest.raises(ValueError, match="data.mix"):
        t.load_state_dict({**s.state_dict(), "counts": [4, 4]})


def test_ranks_split_the_global_batch():
    pairs = pd.DataFrame({"i": [0, 1, 2, 3], "j": [1, 2, 3, 4], "kind": ["multiview"] * 4})
    src = [MixSource("a", 10, 1.0, pairs)]
    one = MixedBatchSampler(src, batch_size=4, pairs_per_batch=2, seed=0)
    two = [MixedBatchSampler(src, batch_size=2, pairs_per_batch=1, seed=0, rank=r, world_size=2)
           for r in range(2)]
    for step in range(3):
        full = one.batch(step)
        parts = [t.batch(step) for t in two]
        singles = full[:4]
        assert parts[0][:2] + parts[1][:2] == singles
        firsts, seconds = full[4:6], full[6:8]
        assert [parts[0][2], parts[1][2]] == firsts and [parts[0][3], parts[1][3]] == seconds
        for a, b in zip(firsts, seconds, strict=True):
            assert (a.index, b.index) in {(0, 1), (1, 2), (2, 3), (3, 4)}
            assert a.pair_key == b.pair_key and a.pair_kind == 0


def test_read_pairs_errors(tmp_path):
    p = tmp_path / "p.parquet"
    pd.DataFrame({"i": [0, 9], "j": [1, 2], "kind": ["multiview", "temporal"]}).to_parquet(p)
    assert len(read_pairs(p, 10, ["temporal"])) == 1
    with pytest.raises(ValueError, match="stale"):
        read_pairs(p, 5, ["multiview", "temporal"])
    with pytest.raises(FileNotFoundError, match="pairs stage"):
        read_pairs(tmp_path / "none.parquet", 5, ["multiview"])


def test_focal_length_follows_the_crop_and_the_zoom(tmp_path):
    """A calibrated sample's focal length in pixels of the model's crop: f * res / crop_size,
    times the augmentation's zoom; 0 (unknown) without a camera."""
    path = tmp_path / "cam.h5"
    kk = np.array([[1100.0, 0, 500], [0, 1190.0, 500], [0, 0, 1]], np.float32)
    with Hdf5Writer(path, dataset="cam", split="train", crop_res=64, source="test",
                    licence="none", body_model="anny") as w:
        kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)
        kp[:, :2], kp[:, 2] = 400.0, 1.0
        w.add(dict(image=np.zeros((64, 64, 3), np.uint8), crop_center=np.float32([400, 400]),
                   crop_size=230.0, keypoints_2d=kp, visible=np.ones(NUM_KEYPOINTS, np.uint8),
                   image_name="a", subject="S1", sequence="a", camera="c", frame=0, person=0,
                   cam_K=kk, cam_Rt=np.eye(3, 4, dtype=np.float32)))
    ds = _dataset(path, res=128, augment=AugmentConfig(enabled=False))
    assert float(ds[0]["focal"]) == pytest.approx(1145.0 * 128 / 230.0, rel=1e-5)
    zoomed = ds.sample(0, Augmentation(scale=1.2))
    assert float(zoomed["focal"]) == pytest.approx(1.2 * 1145.0 * 128 / 230.0, rel=1e-5)
    dots = _dataset(_dot_dataset(tmp_path), res=64, augment=AugmentConfig(enabled=False))
    assert float(dots[0]["focal"]) == 0.0
