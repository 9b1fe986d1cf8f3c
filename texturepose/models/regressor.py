"""The regressor: backbone -> iterative error feedback (IEF) from the mean parameters -> 6D
rotations of the body model's J regressed joints, its S shape parameters and a weak-perspective
camera ``(s, tx, ty)`` in normalised crop coordinates.

Each IEF iteration sees the image and the current estimate and adds a correction. The correction
heads start tiny (Xavier, gain 0.01, as SPIN), so training starts at the mean. What the IEF sees
of the image is the ``head``:

* ``pooled``: the backbone's globally pooled feature vector (HMR/SPIN);
* ``keypoints``: also a 2D keypoint head on the backbone's stride-8/16/32 maps
  (:class:`~texturepose.models.keypoint_head.KeypointHead`), whose soft-argmax coordinates and
  confidences the IEF reads. With ``feedback``, every iteration also sees where the current
  estimate's keypoints project against the head's (the 2D residual, weak perspective): the error
  in "iterative error feedback" made explicit, so the head learns local corrections instead of
  inverse kinematics from scratch. That needs the body model's keypoints at forward time
  (``keypoints_fn``, e.g. ``body.keypoints``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from texturepose.geometry.cameras import weak_perspective_project
from texturepose.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
from texturepose.keypoints import INDEX, NUM_KEYPOINTS
from texturepose.models.keypoint_head import STRIDE_MAPS, KeypointHead, soft_argmax
from texturepose.models.lifter import PoseLifter, fit_weak_camera
from texturepose.models.mean_params import check_mean_params
from texturepose.models.pretrained import BACKBONES, build_backbone

HEADS = ("pooled", "keypoints")
FACINGS = ("mean", "turn", "canonical")
STARTS = ("mean", "lifted")

#: ``(rotmats (B, J, 3, 3), shape (B, S)) -> keypoints (B, K, 3)``, e.g. ``BodyModel.keypoints``.
KeypointsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

log = logging.getLogger(__name__)


def facing_sign(kp2d: torch.Tensor) -> torch.Tensor:
    """``(B, K, 2)`` keypoints -> ``(B,)``: positive where the left shoulder and hip lie to the
    image-right of the right ones (a person facing the camera), negative for the back."""
    x = kp2d[..., 0]
    return (x[:, INDEX["l_shoulder"]] - x[:, INDEX["r_shoulder"]]
            + x[:, INDEX["l_hip"]] - x[:, INDEX["r_hip"]])


@dataclass
class RegressorConfig:
    """What the ``model`` section of params.yaml says; checked on construction.

    Attributes:
        backbone: one of ``resnet18``, ``resnet34``, ``resnet50``, ``efficientnet_lite0``.
        pretrained: ``None`` (scratch), ``"imagenet"`` (packaged weights, efficientnet_lite0
            only) or a path to a weights file (torchvision's for the ResNets).
        iterations: IEF iterations (>= 1; 3 in HMR/SPIN; 0 only with ``start: lifted``: the
            output is the lifted start itself).
        hidden: width of the two IEF fully connected layers.
        dropout: dropout after each of them, in [0, 1).
        normalize_input: forward takes RGB in [0, 1] and applies the backbone's normalisation.
        head: ``pooled`` or ``keypoints`` (see the module docstring).
        feedback: the IEF sees its current 2D keypoint residual (``keypoints`` head only).
        frozen_stages: the first stages of the backbone (stem, then its stages) that keep their
            weights (ImageNet's generic edge features; no backward pass through them).
        facing: which way the IEF starts each crop (``keypoints`` head and ``feedback`` for
            all but ``mean``): ``mean`` the mean pose; ``turn`` the mean pose turned by 180
            degrees where the keypoint head's left/right keypoints say the person faces the
            other way; ``canonical`` the same choice, with the IEF run in the mean pose's frame
            (the head's keypoints mirrored for turned crops, the result turned back).
        start: where the IEF starts: ``mean`` the mean pose (HMR/SPIN); ``lifted`` the pose a
            mocap-trained lifter (:mod:`texturepose.models.lifter`) reads from the keypoint
            head's keypoints, with the weak-perspective camera that fits them (``keypoints``
            head and ``feedback``; the lifter's weights are fitted before training and frozen).
        head_stride: the keypoint head's heatmap stride, 8 or 4 (finer, from the stride-4 map).
        lift_grad: with ``start: lifted``, the losses on the lifted pose reach the keypoint head
            through the frozen lifter and the camera fit (the 2D, multi-view and texture terms
            then train the image network even with ``iterations: 0``); off, the start is a
            constant for them.
    """

    # The defaults are HMR/SPIN's design, which files written before the keypoint head have.
    backbone: str = "resnet50"
    pretrained: str | None = None
    iterations: int = 3
    hidden: int = 1024
    dropout: float = 0.5
    normalize_input: bool = True
    head: str = "pooled"
    feedback: bool = False
    frozen_stages: int = 0
    facing: str = "mean"
    start: str = "mean"
    head_stride: int = 8
    lift_grad: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"model.backbone = {self.backbone!r} is not a known backbone; "
                f"expected one of {sorted(BACKBONES)}"
            )
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int):
            raise ValueError(f"model.iterations = {self.iterations!r} must be an integer >= 1")
        if self.iterations < (0 if self.start == "lifted" else 1):
            raise ValueError(f"model.iterations = {self.iterations} must be >= 1 (HMR uses 3; "
                             "0 only with model.start: lifted)")
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, int) or self.hidden < 1:
            raise ValueError(f"model.hidden = {self.hidden!r} must be a positive integer")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout = {self.dropout!r} must be a number in [0, 1)")
        if self.pretrained is not None and not isinstance(self.pretrained, str):
            raise ValueError(
                f"model.pretrained = {self.pretrained!r} must be null, 'imagenet' or a file path"
            )
        if self.head not in HEADS:
            raise ValueError(f"model.head = {self.head!r} must be one of {HEADS}")
        if not isinstance(self.feedback, bool):
            raise ValueError(f"model.feedback = {self.feedback!r} must be true or false")
        if self.feedback and self.head != "keypoints":
            raise ValueError("model.feedback needs model.head: keypoints (it feeds back the "
                             "residual to the keypoint head's coordinates)")
        if self.facing not in FACINGS:
            raise ValueError(f"model.facing = {self.facing!r} must be one of {FACINGS}")
        if self.facing != "mean" and not self.feedback:
            raise ValueError(f"model.facing: {self.facing} needs model.head: keypoints and "
                             "model.feedback: true (it reads the keypoint head's left/right "
                             "keypoints)")
        if self.start not in STARTS:
            raise ValueError(f"model.start = {self.start!r} must be one of {STARTS}")
        if self.start == "lifted" and not self.feedback:
            raise ValueError("model.start: lifted needs model.head: keypoints and "
                             "model.feedback: true (it lifts the keypoint head's keypoints)")
        if self.start == "lifted" and self.facing != "mean":
            raise ValueError(f"model.start: lifted chooses the facing itself; set model.facing "
                             f"to mean (got {self.facing!r})")
        if self.head_stride not in STRIDE_MAPS or isinstance(self.head_stride, bool):
            raise ValueError(f"model.head_stride = {self.head_stride!r} must be one of "
                             f"{sorted(STRIDE_MAPS)}")
        if not isinstance(self.lift_grad, bool):
            raise ValueError(f"model.lift_grad = {self.lift_grad!r} must be true or false")
        if self.lift_grad and self.start != "lifted":
            raise ValueError("model.lift_grad needs model.start: lifted")
        if (isinstance(self.frozen_stages, bool) or not isinstance(self.frozen_stages, int)
                or not 0 <= self.frozen_stages <= 4):
            raise ValueError(f"model.frozen_stages = {self.frozen_stages!r} must be an integer "
                             "in [0, 4]")
        if self.pretrained == "imagenet" and BACKBONES[self.backbone].package is None:
            with_pkg = sorted(n for n, s in BACKBONES.items() if s.package)
            raise ValueError(
                f"model.pretrained = 'imagenet' is only available for {with_pkg}; for "
                f"{self.backbone!r} give the path of a torchvision weights file or null"
            )


class Regressor(nn.Module):
    """Image crops -> body-model parameters and camera, with IEF.

    Args:
        config: :class:`RegressorConfig`.
        num_joints: J, the body model's regressed joints (``BodyModel.num_joints``).
        num_shape: S (``BodyModel.num_shape``).
        mean_params: ``{"rot6d": (J*6,), "shape": (S,), "cam": (3,)}`` (see ``mean_params``).
    """

    def __init__(
        self,
        config: RegressorConfig,
        num_joints: int,
        num_shape: int,
        mean_params: dict[str, np.ndarray | torch.Tensor],
    ):
        super().__init__()
        if num_joints < 1 or num_shape < 0:
            raise ValueError(
                f"num_joints must be >= 1 and num_shape >= 0, got {num_joints}, {num_shape}"
            )
        mp = {
            k: np.asarray(torch.as_tensor(v).detach().cpu(), dtype=np.float32)
            for k, v in mean_params.items()
        }
        check_mean_params(mp, num_joints, num_shape)
        self.config = config
        self.num_joints = num_joints
        self.num_shape = num_shape
        self.backbone = build_backbone(config.backbone, config.pretrained)
        spec = BACKBONES[config.backbone]
        self.register_buffer("input_mean", torch.tensor(spec.mean).view(1, 3, 1, 1), False)
        self.register_buffer("input_std", torch.tensor(spec.std).view(1, 3, 1, 1), False)
        for k in ("rot6d", "shape", "cam"):
            self.register_buffer(f"mean_{k}", torch.from_numpy(mp[k]).view(1, -1))

        for stage in self.backbone.frozen_prefix(config.frozen_stages):
            stage.requires_grad_(False)
        npar = num_joints * 6 + num_shape + 3
        feat = self.backbone.feature_dim
        self.keypoint_head = None
        if config.head == "keypoints":
            self.keypoint_head = KeypointHead(self.backbone.map_channels, NUM_KEYPOINTS,
                                              stride=config.head_stride)
            feat += NUM_KEYPOINTS * 3  # coordinates and confidences
            if config.feedback:
                feat += NUM_KEYPOINTS * 2  # the residual
        self.fc1 = nn.Linear(feat + npar, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.hidden)
        self.drop = nn.Dropout(config.dropout)
        self.dec_pose = nn.Linear(config.hidden, num_joints * 6)
        self.dec_shape = nn.Linear(config.hidden, num_shape)
        self.dec_cam = nn.Linear(config.hidden, 3)
        for dec in (self.dec_pose, self.dec_shape, self.dec_cam):
            nn.init.xavier_uniform_(dec.weight, gain=0.01)
            nn.init.zeros_(dec.bias)
        self.lifter = None
        if config.start == "lifted":
            self.lifter = PoseLifter(NUM_KEYPOINTS, num_joints, self.mean_rot6d.view(-1))
            self.lifter.requires_grad_(False)  # fitted to mocap views, then kept
        self.channels_last = False

    def use_channels_last(self, enabled: bool = True) -> Regressor:
        """NHWC convolutions (measured in bench/train.py: 1.7x for EfficientNet-Lite0 on a
        CPU); the state dict is unchanged."""
        self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        self.channels_last = enabled
        return self

    def _faces_away(self, kp2d: torch.Tensor, rotmats: torch.Tensor, shape: torch.Tensor,
                    cam: torch.Tensor, keypoints_fn: KeypointsFn) -> torch.Tensor:
        """``(B,)`` bool: the crops whose head keypoints face the other way than the mean
        pose's projection.

        From 2D keypoints alone, a body seen from behind is a saddle of the 2D loss for a
        regressor that starts facing the camera (turning either way first makes it worse), and
        models trained so predicted the camera-facing side for nearly every crop. Which way a
        person faces is in the left/right labels: from the front, their left shoulder and hip
        are on the image's right. The choice is discrete and carries no gradient."""
        mean_kp = weak_perspective_project(keypoints_fn(rotmats[:1], shape[:1]), cam[:1])
        return (facing_sign(kp2d.detach()) * facing_sign(mean_kp)) < 0

    @staticmethod
    def _turn_root(rotmats: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """The global orientation turned by 180 degrees about the camera's vertical axis where
        ``flip``: the body's projection mirrored about its root, every other joint as it was."""
        turn = torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=rotmats.dtype,
                                       device=rotmats.device))
        root = torch.where(flip[:, None, None], turn @ rotmats[:, 0], rotmats[:, 0])
        return torch.cat([root[:, None], rotmats[:, 1:]], dim=1)

    def forward(
        self, images: torch.Tensor, keypoints_fn: KeypointsFn | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """``(B, 3, H, W)`` RGB crops (in [0, 1] when ``normalize_input``) -> dict with

        ``rot6d (B, J, 6)``, ``rotmats (B, J, 3, 3)``, ``shape (B, S)``, ``cam (B, 3)`` of the
        last iteration, and ``rotmats_iters``, ``shape_iters``, ``cam_iters``: lists over the IEF
        iterations (for the adversarial loss on every iteration), and ``features (B, F)``. The
        ``keypoints`` head adds ``keypoints_2d (B, K, 2)`` (normalised crop coordinates),
        ``keypoint_confidence (B, K)`` and the heatmaps' ``keypoint_logits (B, K, h, w)``.
        ``keypoints_fn`` (the body model's keypoints) is needed with ``feedback``.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if self.config.feedback and keypoints_fn is None:
            raise ValueError("this regressor feeds its keypoint residual back (model.feedback): "
                             "pass keypoints_fn=body.keypoints")
        if self.config.normalize_input:
            images = (images - self.input_mean) / self.input_std
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        out: dict = {}
        if self.keypoint_head is None:
            feats = self.backbone.features(images)
            image_input = feats
        else:
            maps = self.backbone.feature_maps(images)
            feats = maps["pooled"]
            logits = self.keypoint_head(maps)
            kp2d, conf = soft_argmax(logits)
            out.update(keypoints_2d=kp2d, keypoint_confidence=conf, keypoint_logits=logits)
        b = feats.shape[0]
        pose = self.mean_rot6d.expand(b, -1)
        shape = self.mean_shape.expand(b, -1)
        cam = self.mean_cam.expand(b, -1)
        j = self.num_joints
        rot6d_it, rotmats_it, shape_it, cam_it = [], [], [], []
        rotmats = rot6d_to_matrix(pose.view(b, j, 6))
        facing = self.config.facing
        flip = None
        if facing != "mean":
            flip = self._faces_away(kp2d, rotmats, shape, cam, keypoints_fn)
        start_kp = None  # the start's keypoints, when already computed (lifted)
        if self.lifter is not None:
            # the confidences only weight the lift: never a gradient path
            head_kp, head_conf = kp2d if self.config.lift_grad else kp2d.detach(), conf.detach()
            with torch.set_grad_enabled(self.config.lift_grad and torch.is_grad_enabled()):
                pose = self.lifter(head_kp, head_conf).flatten(1)
                rotmats = rot6d_to_matrix(pose.view(b, j, 6))
                start_kp = keypoints_fn(rotmats, shape)
                cam = fit_weak_camera(start_kp, head_kp, head_conf * self.lifter.keypoint_mask)
            out["start_rot6d"] = pose.view(b, j, 6)
        if facing == "turn":
            rotmats = self._turn_root(rotmats, flip)
            pose = torch.cat([matrix_to_rot6d(rotmats[:, 0]), pose[:, 6:]], dim=1)
        # canonical: the IEF sees turned crops mirrored (x -> -x: a body turned about the
        # vertical axis projects mirrored about its root, with the same labels), so one mapping
        # from residuals to corrections serves both sides; its result is turned back below
        sign = None
        if facing == "canonical":
            sign = torch.where(flip, -1.0, 1.0).to(feats.dtype)
            kp2d = torch.stack([kp2d[..., 0] * sign[:, None], kp2d[..., 1]], dim=-1)
        if self.keypoint_head is not None:
            image_input = torch.cat([feats, kp2d.flatten(1), conf], dim=1)
        for _ in range(self.config.iterations):
            parts = [image_input, pose, shape, cam]
            if self.config.feedback:
                kp3 = keypoints_fn(rotmats, shape) if start_kp is None else start_kp
                start_kp = None
                current = weak_perspective_project(kp3, cam)
                residual = (kp2d.detach() - current) * conf.detach()[..., None]
                parts.append(residual.flatten(1))
            x = torch.cat(parts, dim=1)
            x = self.drop(torch.relu(self.fc1(x)))
            x = self.drop(torch.relu(self.fc2(x)))
            pose = pose + self.dec_pose(x)
            shape = shape + self.dec_shape(x)
            cam = cam + self.dec_cam(x)
            rotmats = rot6d_to_matrix(pose.view(b, j, 6))
            if sign is None:
                rot6d_it.append(pose.view(b, j, 6))
                rotmats_it.append(rotmats)
                cam_it.append(cam)
            else:  # back from the mean pose's frame to the camera's
                real = self._turn_root(rotmats, flip)
                rot6d_it.append(torch.cat([matrix_to_rot6d(real[:, :1]),
                                           pose.view(b, j, 6)[:, 1:]], dim=1))
                rotmats_it.append(real)
                cam_it.append(torch.stack([cam[:, 0], cam[:, 1] * sign, cam[:, 2]], dim=1))
            shape_it.append(shape)
        if not rot6d_it:  # no IEF (start: lifted, iterations: 0): the start is the answer
            rot6d_it, rotmats_it, shape_it, cam_it = [pose.view(b, j, 6)], [rotmats], [shape], [cam]
        out.update({
            "rot6d": rot6d_it[-1],
            "rotmats": rotmats_it[-1],
            "shape": shape_it[-1],
            "cam": cam_it[-1],
            "rot6d_iters": rot6d_it,
            "rotmats_iters": rotmats_it,
            "shape_iters": shape_it,
            "cam_iters": cam_it,
            "features": feats,
            "mean_rot6d": self.mean_rot6d,
        })
        return out
