"""Training samples from one HDF5 dataset: crop to the model's resolution, augment, normalise.

A sample is requested with a :class:`SampleRequest` (dataset id, index, augmentation keys) that
the mixed sampler builds from the training step, so augmentation never touches a global RNG and
a resumed run draws exactly the same pixels as an uninterrupted one.

Coordinates: stored keypoints are original-image pixels; they go to the stored crop with
:func:`texturepose.geometry.crops.to_crop` (the file's ``crop_res``), then through the augmentation
affine to the model's ``res`` pixels, then to normalised crop coordinates ``x_n = 2 u / res - 1``
(pixel centres at ``j + 0.5`` throughout, as in ``crops.py`` and ``geometry/cameras.py``).

Augmentation (SPIN-like): scale about the crop centre, in-plane rotation, horizontal flip and a
per-channel colour gain. 3D keypoints and the body's global orientation (camera frame) follow
the rotation (about the optical axis) and the flip (x -> -x with the left/right swap); the body
pose is mirrored like ``BodyModel.flip_pose``. For the two images of a pair the flip and the
colour gain are shared (a flipped image shows the mirrored body, whose texture map and pose are
not comparable with an unflipped view's; a shared colour gain keeps the texture colours of one
surface point comparable), while scale and rotation are drawn independently per image.

Images are returned as float RGB in [0, 1]: the regressor applies its backbone's normalisation
(ImageNet mean/std for the ResNets) itself, and the texture loss and overlays need the colours.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from texturepose.geometry.crops import to_crop
from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.data.schema import SchemaError
from texturepose.keypoints import FLIP_PERMUTATION, NUM_KEYPOINTS

log = logging.getLogger(__name__)

#: Reflection x -> -x, in the camera frame and in the canonical body frame alike.
_MIRROR = np.diag([-1.0, 1.0, 1.0]).astype(np.float32)


@dataclass(frozen=True)
class AugmentConfig:
    """The ``data.augment`` params.

    Attributes:
        enabled: False turns every augmentation off (evaluation-like crops).
        flip: probability of a horizontal flip.
        scale: zoom factor drawn uniformly in ``[1 - scale, 1 + scale]``.
        rotation: maximum in-plane rotation, degrees (uniform in ``[-rotation, rotation]``).
        rotation_prob: probability that a sample is rotated at all (SPIN: 0.6).
        color: per-channel gain drawn uniformly in ``[1 - color, 1 + color]``.
    """

    enabled: bool = True
    flip: float = 0.5
    scale: float = 0.25
    rotation: float = 30.0
    rotation_prob: float = 0.6
    color: float = 0.4

    def __post_init__(self) -> None:
        ranges = {"flip": (0.0, 1.0, True), "scale": (0.0, 1.0, False),
                  "rotation": (0.0, 180.0, True), "rotation_prob": (0.0, 1.0, True),
                  "color": (0.0, 1.0, False)}
        for name, (lo, hi, closed) in ranges.items():
            value = getattr(self, name)
            ok = not isinstance(value, bool) and isinstance(value, (int, float))
            ok = ok and lo <= value and (value <= hi if closed else value < hi)
            if not ok:
                raise ValueError(f"data.augment.{name} = {value!r} must be a number in "
                                 f"[{lo:g}, {hi:g}{']' if closed else ')'}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"data.augment.enabled = {self.enabled!r} must be true or false")


@dataclass(frozen=True)
class Augmentation:
    """One sample's drawn augmentation."""

    flip: bool = False
    scale: float = 1.0
    rotation: float = 0.0  # degrees, positive = counter-clockwise as displayed (y down)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @classmethod
    def draw(
        cls,
        cfg: AugmentConfig,
        rng: np.random.Generator,
        shared: np.random.Generator | None = None,
    ) -> Augmentation:
        """Draw from ``rng``; flip and colour from ``shared`` when given (pairs)."""
        if not cfg.enabled:
            return cls()
        common = shared if shared is not None else rng
        # Always draw the same number of values so that one choice never shifts the others.
        u = rng.random(3)
        c = common.random(4)
        rot = cfg.rotation * (2.0 * u[1] - 1.0) if u[2] < cfg.rotation_prob else 0.0
        return cls(
            flip=bool(c[0] < cfg.flip),
            scale=float(1.0 + cfg.scale * (2.0 * u[0] - 1.0)),
            rotation=float(rot),
            color=tuple(float(1.0 + cfg.color * (2.0 * x - 1.0)) for x in c[1:]),  # type: ignore[arg-type]
        )

    def matrix(self, res: int) -> np.ndarray:
        """3x3 affine on continuous pixel coordinates of a ``res`` crop (centres at j + 0.5)."""
        o = res / 2.0
        t = math.radians(self.rotation)
        # Counter-clockwise on screen with y pointing down is a clockwise matrix in (x, y).
        cos, sin = math.cos(t), math.sin(t)
        a = self.scale * np.array([[cos, sin], [-sin, cos]])
        m = np.eye(3)
        m[:2, :2] = a
        m[:2, 2] = o - a @ np.array([o, o])
        if self.flip:
            m = np.array([[-1.0, 0.0, res], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
        return m

    def rotation3d(self) -> np.ndarray:
        """The in-plane rotation as a rotation of camera-frame points about the optical axis
        (the same 2x2 block as the image affine: camera x, y are image u, v)."""
        t = math.radians(self.rotation)
        cos, sin = math.cos(t), math.sin(t)
        return np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]], np.float32)

    def transform3d(self) -> np.ndarray:
        """Rotation, then the reflection x -> -x when flipped: what 3D points undergo."""
        return (_MIRROR @ self.rotation3d()) if self.flip else self.rotation3d()


class SampleRequest(NamedTuple):
    """What the sampler asks a dataset for: augmentation keys seed a per-sample RNG."""

    dataset: int
    index: int
    key: tuple[int, ...]  # seeds this image's own augmentation
    pair_key: tuple[int, ...] | None = None  # seeds what both images of a pair share
    pair_kind: int = -1  # pair kind code of a pair image (see data.sampling), -1 for singles


def warp_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 3x3 affine to ``(..., 2)`` points."""
    return points @ m[:2, :2].T + m[:2, 2]


def warp_image(image: np.ndarray, m: np.ndarray, res: int) -> np.ndarray:
    """Resample ``image`` with the continuous-coordinate affine ``m`` into ``res x res``."""
    # cv2 puts pixel centres at integers: shift by half a pixel on both sides.
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    mcv = (unshift @ m @ shift)[:2]
    return cv2.warpAffine(image, mcv, (res, res), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def crop_focal_length(raw: dict[str, Any], res: int) -> float:
    """Focal length in pixels of the sample's crop resized to ``res`` (the mean of ``fx`` and
    ``fy`` of its calibrated camera ``cam_K``, scaled by ``res / crop_size``); 0.0 when the
    camera is unknown (losses then use SPIN's convention, see ``geometry.cameras.crop_focal``)."""
    if not raw.get("has_camera", False) or raw.get("cam_K") is None:
        return 0.0
    k = np.asarray(raw["cam_K"], np.float64)
    return float(0.5 * (k[0, 0] + k[1, 1]) * res / float(raw["crop_size"]))


def mirror_pose(rotmats: np.ndarray, joint_permutation: np.ndarray) -> np.ndarray:
    """``BodyModel.flip_pose`` in numpy: swap left/right joints, conjugate by x -> -x."""
    return _MIRROR @ rotmats[..., joint_permutation, :, :] @ _MIRROR


class TrainingDataset:
    """Augmented training samples of one HDF5 schema file.

    Args:
        data: the file (an :class:`Hdf5Dataset` or its path).
        res: the model's input resolution (pixels).
        augment: augmentation params.
        body_model: name of the configured body model; ``body_pose``/``body_shape`` are used
            only when the file's ``body_model`` attribute equals it.
        num_joints, num_shape: J and S of the body model (for zero fills when a file lacks
            body parameters, so every dataset of a mix collates into one batch).
        flip_joint_permutation: ``BodyModel.flip_joint_permutation`` (J,), to mirror poses.
        seed: the training seed, mixed into every sample's augmentation RNG.
    """

    def __init__(
        self,
        data: Hdf5Dataset | str | os.PathLike,
        res: int,
        augment: AugmentConfig,
        body_model: str,
        num_joints: int,
        num_shape: int,
        flip_joint_permutation: np.ndarray | torch.Tensor,
        seed: int = 0,
    ) -> None:
        self.data = data if isinstance(data, Hdf5Dataset) else Hdf5Dataset(data)
        if isinstance(res, bool) or not isinstance(res, int) or res < 8:
            raise ValueError(f"model resolution must be an integer >= 8, got {res!r}")
        self.res = res
        self.augment = augment
        self.seed = int(seed)
        self.num_joints, self.num_shape = int(num_joints), int(num_shape)
        self.joint_perm = np.asarray(flip_joint_permutation, dtype=np.int64)
        if self.joint_perm.shape != (self.num_joints,):
            raise ValueError(
                f"flip_joint_permutation must be ({self.num_joints},), got {self.joint_perm.shape}"
            )
        self.crop_res = int(self.data.attrs.get("crop_res", 0))
        if self.crop_res <= 0:
            raise SchemaError(f"{self.data.path}: attribute crop_res is missing or not positive")
        file_body = self.data.attrs.get("body_model")
        self.use_body = bool(self.data.has("body_pose") and file_body == body_model)
        if self.data.has("body_pose") and not self.use_body:
            log.warning("%s: body parameters are for %r, not %r: not used for supervision",
                        self.data.path, file_body, body_model)
        if self.use_body:
            shape = self.data.file["body_pose"].shape[1:]
            sshape = self.data.file["body_shape"].shape[1:]
            if shape != (self.num_joints, 3, 3) or sshape != (self.num_shape,):
                raise SchemaError(
                    f"{self.data.path}: body_pose {shape} / body_shape {sshape} do not fit the "
                    f"{body_model} body model ({self.num_joints} joints, {self.num_shape} shape "
                    "parameters): rewrite the file for this body model"
                )

    def __len__(self) -> int:
        return len(self.data)

    def augmentation(self, request: SampleRequest) -> Augmentation:
        rng = np.random.default_rng([self.seed, *request.key])
        shared = None
        if request.pair_key is not None:
            shared = np.random.default_rng([self.seed, *request.pair_key])
        return Augmentation.draw(self.augment, rng, shared)

    def __getitem__(self, request: SampleRequest | int) -> dict[str, Any]:
        if isinstance(request, (int, np.integer)):
            return self.sample(int(request), Augmentation())
        return self.sample(int(request.index), self.augmentation(request))

    def sample(self, index: int, aug: Augmentation) -> dict[str, Any]:
        """Sample ``index`` with augmentation ``aug`` (``Augmentation()``: none)."""
        raw = self.data[index]
        image = raw["image"]
        if image.shape[:2] != (self.crop_res, self.crop_res):
            raise SchemaError(
                f"{self.data.path}: sample {index} has a {image.shape[:2]} image, the file's "
                f"crop_res attribute says {self.crop_res}"
            )
        # Resize to the model's resolution first (area filter: no aliasing when shrinking),
        # then augment at that resolution.
        if self.crop_res != self.res:
            interp = cv2.INTER_AREA if self.crop_res > self.res else cv2.INTER_LINEAR
            image = cv2.resize(image, (self.res, self.res), interpolation=interp)
        m = aug.matrix(self.res)
        if aug != Augmentation():
            image = warp_image(image, m, self.res)
        img = image.astype(np.float32) / 255.0
        if aug.color != (1.0, 1.0, 1.0):
            img = np.clip(img * np.asarray(aug.color, np.float32), 0.0, 1.0)

        kp = np.asarray(raw["keypoints_2d"], np.float64)
        conf = kp[:, 2].copy()
        known = conf > 0
        xy = np.zeros((NUM_KEYPOINTS, 2))
        crop_xy = to_crop(kp[known, :2], raw["crop_center"], float(raw["crop_size"]),
                          self.crop_res)
        xy[known] = warp_points(crop_xy * (self.res / self.crop_res), m)
        kp2d = np.concatenate([xy * (2.0 / self.res) - 1.0, conf[:, None]], axis=1)
        if not np.isfinite(kp2d[known]).all():
            raise SchemaError(f"{self.data.path}: sample {index} has non-finite 2D keypoints")
        kp2d[~known] = 0.0
        r3 = aug.transform3d()

        out: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            "index": index,
            "flipped": aug.flip,
        }
        if aug.flip:
            kp2d = kp2d[FLIP_PERMUTATION]
        out["keypoints_2d"] = torch.from_numpy(kp2d.astype(np.float32))

        has_3d = bool(raw.get("has_3d", False))
        kp3d = np.zeros((NUM_KEYPOINTS, 4), np.float32)
        if has_3d:
            k3 = np.asarray(raw["keypoints_3d"], np.float32)
            kp3d[:, :3] = k3[:, :3] @ r3.T
            kp3d[:, 3] = k3[:, 3]
            kp3d[k3[:, 3] <= 0] = 0.0  # unknown points may hold NaN
            if aug.flip:
                kp3d = kp3d[FLIP_PERMUTATION]
        out["keypoints_3d"] = torch.from_numpy(kp3d)
        out["has_3d"] = has_3d

        has_body = self.use_body and bool(raw.get("has_body", False))
        pose = np.broadcast_to(np.eye(3, dtype=np.float32), (self.num_joints, 3, 3)).copy()
        shape = np.zeros(self.num_shape, np.float32)
        if has_body:
            pose = np.asarray(raw["body_pose"], np.float32).copy()
            shape = np.asarray(raw["body_shape"], np.float32)
            # The global orientation is camera-frame: it turns with the image; the flip is
            # applied by mirroring the whole pose (root included), as BodyModel.flip_pose.
            pose[0] = aug.rotation3d() @ pose[0]
            if aug.flip:
                pose = mirror_pose(pose, self.joint_perm)
        out["focal"] = torch.tensor(crop_focal_length(raw, self.res) * aug.scale, dtype=torch.float32)
        out["body_pose"] = torch.from_numpy(np.ascontiguousarray(pose))
        out["body_shape"] = torch.from_numpy(np.ascontiguousarray(shape))
        out["has_body"] = has_body
        return out
