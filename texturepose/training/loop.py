"""One training step of TexturePose: regressor -> body model -> every loss term -> updates.

The step (for a batch of ``B`` single images followed by ``P`` pairs, first images then second):

1. the regressor predicts, for every image, IEF iterations of 6D pose, shape and a
   weak-perspective camera;
2. the body model gives the keypoints of the last iteration (its cheap keypoint path), projected
   with each crop's perspective camera: the sample's own focal length where its camera is
   calibrated, SPIN's convention (``loss.focal`` at 224 px) elsewhere, the body at the depth
   ``2 f / (res s)`` of the predicted weak-perspective camera;
3. losses, each weighted from params (a zero weight skips the term): 2D keypoints
   (confidence-weighted) of the mesh and of the keypoint head, adversarial (the discriminator
   scores every IEF iteration), texture consistency between the two images of each pair (from
   ``loss.texture_start`` on: meshes posed, rasterised with the same cameras, texture maps
   sampled with visibility), multi-view pose consistency (multiview pairs), shape consistency
   (every pair), and 3D keypoints / body parameters where the samples have them;
4. the regressor is updated, then the discriminator on mocap poses (real) against the
   predictions of every iteration (fake), in the same step.

Mixed precision (CUDA only) covers the backbone; the IEF head, body model, rasteriser and
losses run in float32.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from texturepose.body.base import BodyModel
from texturepose.data.pairs import PAIR_KINDS
from texturepose.geometry.cameras import crop_focal, crop_perspective_project, perspective_vertices
from texturepose.losses.adversarial import discriminator_loss, generator_loss
from texturepose.losses.keypoints import (
    heatmap_cross_entropy,
    keypoint_2d_loss,
    keypoint_heatmap_loss,
)
from texturepose.losses.multiview import multiview_pose_loss, shape_consistency_loss
from texturepose.losses.pose_prior import GaussianPosePrior, l2_pose_prior
from texturepose.losses.supervised import body_params_loss, keypoint_3d_loss
from texturepose.losses.texture import texture_consistency_loss
from texturepose.models.discriminator import Discriminator
from texturepose.render.rasterize import rasterize
from texturepose.render.texture import UVAtlas, sample_texture
from texturepose.training.config import LossConfig, TrainConfig
from texturepose.training.distributed import DistInfo, all_reduce_mean_grads

log = logging.getLogger(__name__)

MULTIVIEW = PAIR_KINDS.index("multiview")


class RealPoses:
    """Real samples for the discriminator: mocap poses and prior shapes, drawn independently;
    each step's draw is a function of (seed, step)."""

    def __init__(self, rotmats: torch.Tensor | np.ndarray, shape: torch.Tensor | np.ndarray,
                 seed: int = 0) -> None:
        self.rotmats = torch.as_tensor(np.asarray(rotmats), dtype=torch.float32)
        self.shape = torch.as_tensor(np.asarray(shape), dtype=torch.float32)
        if self.rotmats.dim() != 4 or self.rotmats.shape[-2:] != (3, 3) or len(self.rotmats) < 1:
            raise ValueError(f"real poses must be (N>=1, J, 3, 3), got {tuple(self.rotmats.shape)}")
        if self.shape.dim() != 2 or len(self.shape) < 1:
            raise ValueError(f"real shapes must be (N>=1, S), got {tuple(self.shape.shape)}")
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.rotmats)

    def sample(self, step: int, n: int, rank: int = 0,
               world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank ``rank``'s slice of ``n`` of the step's ``n * world_size`` real poses."""
        rng = np.random.default_rng([self.seed, step, 3])
        pose = rng.integers(0, len(self.rotmats), n * world_size)[rank * n : (rank + 1) * n]
        shape = rng.integers(0, len(self.shape), n * world_size)[rank * n : (rank + 1) * n]
        return self.rotmats[torch.from_numpy(pose)], self.shape[torch.from_numpy(shape)]


#: the loss terms on the keypoint head's own output (the others are on the body)
HEAD_TERMS = ("keypoint_head", "keypoint_heatmap")


def head_only(weights: dict[str, float]) -> dict[str, float]:
    """The weights with every body term at 0 but the mesh's 2D error, kept as a measurement
    (for a body that carries no gradient: :attr:`ModelConfig.pose_trains` False)."""
    return {k: (v if k in HEAD_TERMS or k == "keypoints_2d" else 0.0)
            for k, v in weights.items()}


@dataclass
class StepOutput:
    """What a step computed, for logging and overlays (all detached)."""

    losses: dict[str, float]
    rotmats: torch.Tensor | None = None  # (N, J, 3, 3)
    shape: torch.Tensor | None = None  # (N, S)
    cam: torch.Tensor | None = None  # (N, 3)
    focal: torch.Tensor | None = None  # (N,) focal lengths the step projected with


def split_batch(batch: Mapping[str, Any]) -> tuple[int, int]:
    """``(B, P)``: singles come first, then the P first and the P second images of pairs."""
    kinds = torch.as_tensor(batch["pair_kind"])
    n_pair_images = int((kinds >= 0).sum())
    if n_pair_images % 2 or (n_pair_images and not (kinds[len(kinds) - n_pair_images:] >= 0).all()):
        raise ValueError("pair images must come last, first images then second images")
    p = n_pair_images // 2
    return len(kinds) - 2 * p, p


def compute_losses(
    cfg: LossConfig,
    body: BodyModel,
    out: Mapping[str, Any],
    batch: Mapping[str, Any],
    res: int,
    disc: Discriminator | None = None,
    atlas: UVAtlas | None = None,
    step: int | None = None,
    pose_prior: GaussianPosePrior | None = None,
    pose_trains: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Weighted total loss, the unweighted terms, and the focal lengths ``(N,)`` projected with.

    ``out`` is the regressor's output (float32), ``batch`` the collated samples on the device,
    ``step`` the training step (``loss.texture_start``; None: every term as weighted),
    ``pose_prior`` the fitted prior when ``loss.pose_prior_kind`` is ``gaussian``.
    ``pose_trains`` False (:attr:`ModelConfig.pose_trains`): the body carries no gradient, so
    the terms on it are skipped (the 2D keypoint error is still computed, as a measurement).
    """
    w = cfg.weights()
    if not pose_trains:
        w = head_only(w)
    rotmats, shape, cam = out["rotmats"], out["shape"], out["cam"]
    b, p = split_batch(batch)
    mask = body.keypoint_mask
    known = batch.get("focal") if cfg.camera == "calibrated" else None
    focal = crop_focal(known, res, cfg.focal)
    focal = torch.as_tensor(focal, dtype=cam.dtype, device=cam.device).expand(len(cam))
    kp3 = body.keypoints(rotmats, shape)
    terms: dict[str, torch.Tensor] = {}
    if w["keypoints_2d"] > 0:
        terms["keypoints_2d"] = keypoint_2d_loss(
            crop_perspective_project(kp3, cam, focal, res), batch["keypoints_2d"], mask
        )
    if w["keypoint_head"] > 0 and "keypoints_2d" in out:
        terms["keypoint_head"] = keypoint_heatmap_loss(out["keypoints_2d"], batch["keypoints_2d"])
    if w["keypoint_heatmap"] > 0 and "keypoint_logits" in out:
        terms["keypoint_heatmap"] = heatmap_cross_entropy(out["keypoint_logits"],
                                                          batch["keypoints_2d"])
    if w["keypoints_3d"] > 0:
        terms["keypoints_3d"] = keypoint_3d_loss(kp3, batch["keypoints_3d"], batch["has_3d"], mask)
    if w["body_pose"] > 0 or w["body_shape"] > 0:
        terms["body_pose"], terms["body_shape"] = body_params_loss(
            rotmats, shape, batch["body_pose"], batch["body_shape"], batch["has_body"]
        )
    if w["pose_prior"] > 0:
        if "mean_rot6d" not in out:
            raise ValueError("loss.pose_prior > 0 needs the regressor's mean pose in its output")
        # the distance from where the IEF started: the mean pose, or the lifted pose
        # (model.start: lifted), which already carries the articulation the mocap suggests
        anchor = out.get("start_rot6d", out["mean_rot6d"])
        if cfg.pose_prior_kind == "gaussian":
            if pose_prior is None:
                raise ValueError("loss.pose_prior_kind = gaussian needs the prior fitted to the "
                                 "mocap poses")
            terms["pose_prior"] = pose_prior(out["rot6d"], anchor)
        else:
            terms["pose_prior"] = l2_pose_prior(out["rot6d"], anchor)
    if w["adversarial"] > 0:
        if disc is None:
            raise ValueError("loss.adversarial > 0 needs a discriminator")
        disc.requires_grad_(False)  # the regressor's loss; the discriminator steps on its own
        try:
            terms["adversarial"] = generator_loss(disc, out["rotmats_iters"], out["shape_iters"])
        finally:
            disc.requires_grad_(True)
    if p > 0:
        a, c = slice(b, b + p), slice(b + p, b + 2 * p)
        if w["texture"] > 0 and (step is None or step >= cfg.texture_start):
            if atlas is None:
                raise ValueError("loss.texture > 0 needs the body model's UV atlas")
            verts, k, _ = perspective_vertices(body(rotmats[b:], shape[b:]).vertices, cam[b:],
                                               res, focal[b:], cfg.focal)
            faces = body.faces
            frags = rasterize(verts.detach(), faces, k, (res, res))
            tex, vis = sample_texture(batch["image"][b:], verts, faces, k, atlas, frags,
                                      depth_tol=cfg.depth_tol)
            terms["texture"] = texture_consistency_loss(tex[:p], vis[:p], tex[p:], vis[p:],
                                                        kind=cfg.texture_kind,
                                                        detach_target=cfg.texture_target
                                                        == "one_sided")
            terms["texture_visible"] = (vis[:p] * vis[p:]).flatten(1).sum(1).mean().detach()
        if w["multiview_pose"] > 0:
            mv = (torch.as_tensor(batch["pair_kind"])[a] == MULTIVIEW).to(rotmats)
            terms["multiview_pose"] = multiview_pose_loss(rotmats[a], rotmats[c], mv)
        if w["shape_consistency"] > 0:
            terms["shape_consistency"] = shape_consistency_loss(shape[a], shape[c])
    total = sum((w[k] * v for k, v in terms.items() if k in w), start=rotmats.new_zeros(()))
    # Keep every prediction head in the graph whatever the weights (e.g. no term uses the
    # camera when only the adversarial and body-parameter losses are on): DDP needs a gradient,
    # even zero, for every parameter in every step.
    total = total + 0.0 * (cam.sum() + shape.sum() + out["rot6d"].sum())
    if "keypoints_2d" in out:
        total = total + 0.0 * out["keypoints_2d"].sum()
    return total, terms, focal


class Trainer:
    """Holds the models, optimisers and schedulers; :meth:`train_step` runs one step.

    Args:
        cfg: the training config.
        body: the body model (moved to the device).
        regressor: the regressor (wrapped in DDP when distributed).
        discriminator: needed when ``loss.adversarial > 0``.
        real_poses: mocap poses for the discriminator.
        atlas: the body model's UV atlas, needed when ``loss.texture > 0``.
        pose_prior: the Gaussian pose prior, needed when ``loss.pose_prior_kind`` is gaussian.
        dist_info: process/device set-up from :func:`init_distributed`.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        body: BodyModel,
        regressor: nn.Module,
        discriminator: Discriminator | None = None,
        real_poses: RealPoses | None = None,
        atlas: UVAtlas | None = None,
        dist_info: DistInfo | None = None,
        pose_prior: GaussianPosePrior | None = None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist_info or DistInfo()
        dev = self.dist.device
        self.device = dev
        self.body = body.to(dev)
        if cfg.loss.adversarial > 0 and (discriminator is None or real_poses is None):
            raise ValueError("loss.adversarial > 0 needs a discriminator and mocap poses "
                             "(data.mocap); set loss.adversarial to 0 to train without them")
        if cfg.loss.texture > 0 and atlas is None:
            raise ValueError("loss.texture > 0 needs the body model's UV atlas")
        self.atlas = atlas.to(dev) if atlas is not None else None
        self.pose_prior = pose_prior.to(dev) if pose_prior is not None else None
        self.pose_trains = cfg.model.pose_trains
        if not self.pose_trains:
            weights, kept = cfg.loss.weights(), head_only(cfg.loss.weights())
            skipped = [k for k, v in weights.items() if v > 0 and kept[k] == 0]
            log.warning("model.start: lifted with model.iterations: 0 (and lift_grad: false): the "
                        "body is the frozen lifter's reading of the keypoint head, so only %s "
                        "train; %s have no gradient path and are skipped (keypoints_2d is logged "
                        "as a measurement). TexturePose's terms act on the IEF: "
                        "-S model.start=mean -S model.iterations=3",
                        [k for k in HEAD_TERMS if weights[k] > 0], skipped)
        if self.dist.distributed and dev.type == "cuda" and cfg.train.sync_bn:
            regressor = nn.SyncBatchNorm.convert_sync_batchnorm(regressor)
        self.regressor = regressor.to(dev)
        if cfg.train.channels_last and hasattr(self.regressor, "use_channels_last"):
            self.regressor.use_channels_last()
        self.model: nn.Module = self.regressor
        if self.dist.distributed:
            self.model = nn.parallel.DistributedDataParallel(
                self.regressor, device_ids=[dev.index] if dev.type == "cuda" else None,
                # without IEF iterations its layers take no part in the forward pass
                find_unused_parameters=cfg.model.iterations == 0,
            )
        self.disc = discriminator.to(dev) if discriminator is not None else None
        self.real_poses = real_poses
        t = cfg.train
        # The fused Adam kernel (CPU and CUDA) is many times faster than the per-tensor loop.
        self.optimizer = torch.optim.Adam(param_groups(self.regressor, t.lr, t.backbone_lr),
                                          weight_decay=t.weight_decay, fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.d_optimizer = None
        self.d_scheduler = None
        if self.disc is not None:
            self.d_optimizer = torch.optim.Adam(self.disc.parameters(), lr=t.disc_lr,
                                                weight_decay=t.disc_weight_decay, fused=True)
            self.d_scheduler = torch.optim.lr_scheduler.LambdaLR(self.d_optimizer,
                                                                 self._lr_factor)
        self.amp = False
        self.scaler = torch.amp.GradScaler("cuda", enabled=False)
        if t.amp and dev.type == "cuda":
            self.enable_amp(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        self.step = 0

    def enable_amp(self, dtype: torch.dtype) -> None:
        """Mixed precision for the backbone (the bulk of the compute): its features are computed
        under autocast and returned in float32, so the IEF head, body model, rasteriser and
        losses stay in float32 (6D rotations and the Gram-Schmidt step need the precision).
        float16 adds a gradient scaler; bfloat16 needs none. Called for CUDA with train.amp."""
        backbone = self.regressor.backbone
        device_type = self.device.type

        def low_precision(plain):
            def run(x: torch.Tensor):
                with torch.autocast(device_type, dtype=dtype):
                    out = plain(x)
                if isinstance(out, dict):
                    return {k: v.float() for k, v in out.items()}
                return out.float()
            return run

        # Instance attributes: the state dict is unchanged.
        backbone.features = low_precision(backbone.features)
        if hasattr(backbone, "feature_maps"):
            backbone.feature_maps = low_precision(backbone.feature_maps)
        self.amp, self.amp_dtype = True, dtype
        self.scaler = torch.amp.GradScaler(device_type, enabled=dtype == torch.float16)

    def _lr_factor(self, step: int) -> float:
        t = self.cfg.train
        if t.warmup_steps and step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.lr_schedule == "cosine":
            span = max(1, t.steps - t.warmup_steps)
            progress = min(1.0, (step - t.warmup_steps) / span)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        nb = self.device.type == "cuda"
        return {k: (v.to(self.device, non_blocking=nb) if isinstance(v, torch.Tensor) else v)
                for k, v in batch.items()}

    def train_step(self, batch: Mapping[str, Any]) -> StepOutput:
        """One optimisation step of the regressor and the discriminator; advances ``step``."""
        batch = self.to_device(batch)
        logs, out, focal = self.generator_backward(batch)
        logs.update(self.generator_step())
        if self.disc is not None and self.cfg.loss.adversarial > 0 and self.pose_trains:
            logs.update(self.discriminator_backward(out, len(batch["image"])))
            self.discriminator_step()
        logs["lr"] = self.optimizer.param_groups[-1]["lr"]
        self.step += 1
        return StepOutput(logs, out["rotmats"].detach(), out["shape"].detach(),
                          out["cam"].detach(), focal.detach())

    def generator_backward(self, batch: Mapping[str, Any]) -> tuple[dict, dict, torch.Tensor]:
        """Forward pass and the regressor's gradients (averaged over processes by DDP)."""
        self.model.train()
        cfg = self.cfg
        if cfg.train.freeze_bn:  # running statistics only (small per-process batches)
            for m in self.regressor.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        out = _to_float(self.model(batch["image"], keypoints_fn=self.body.keypoints))
        total, terms, focal = compute_losses(cfg.loss, self.body, out, batch, cfg.model.res,
                                             self.disc, self.atlas, self.step, self.pose_prior,
                                             self.pose_trains)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        logs = {k: float(v.detach()) for k, v in terms.items()}
        logs["total"] = float(total.detach())
        return logs, out, focal

    def generator_step(self) -> dict[str, float]:
        logs = {}
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.regressor.parameters(),
                                                  self.cfg.train.grad_clip)
            logs["grad_norm"] = float(norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return logs

    def discriminator_backward(self, out: Mapping[str, Any], num_images: int) -> dict[str, float]:
        """The discriminator's gradients: this process's slice of the step's real mocap poses
        against its predictions of every IEF iteration, averaged over processes."""
        real_r, real_s = self.real_poses.sample(self.step, num_images, self.dist.rank,
                                                self.dist.world_size)
        d_loss, d_terms = discriminator_loss(
            self.disc, real_r.to(self.device), real_s.to(self.device),
            [r.detach() for r in out["rotmats_iters"]], [s.detach() for s in out["shape_iters"]],
        )
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        # The discriminator is called twice per step, which DDP does not support: its gradients
        # are averaged over processes by hand instead.
        all_reduce_mean_grads(self.disc.parameters(), self.dist.world_size)
        return {"discriminator": float(d_loss.detach()), **d_terms}

    def discriminator_step(self) -> None:
        self.d_optimizer.step()
        self.d_scheduler.step()

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            "regressor": self.regressor.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "config": self.cfg.to_dict(),
        }
        if self.disc is not None:
            state["discriminator"] = self.disc.state_dict()
            state["d_optimizer"] = self.d_optimizer.state_dict()
            state["d_scheduler"] = self.d_scheduler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        had = "discriminator" in state
        if had != (self.disc is not None):
            was, now = ("on", "off") if had else ("off", "on")
            raise ValueError(
                f"the checkpoint was trained with the adversarial loss {was} and this run has "
                f"it {now}: keep loss.adversarial as it was, or set train.resume: false"
            )
        self.regressor.load_state_dict(state["regressor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.disc is not None:
            self.disc.load_state_dict(state["discriminator"])
            self.d_optimizer.load_state_dict(state["d_optimizer"])
            self.d_scheduler.load_state_dict(state["d_scheduler"])
        self.step = int(state["step"])


def param_groups(regressor: nn.Module, lr: float, backbone_lr: float | None) -> list[dict]:
    """Adam parameter groups: the backbone at ``backbone_lr`` (``lr`` when None), the heads at
    ``lr``; frozen parameters are left out. A pretrained backbone wants a smaller step than
    the freshly initialised heads (SPIN fine-tunes at 5e-5)."""
    backbone = getattr(regressor, "backbone", None)
    ids = {id(q) for q in backbone.parameters()} if backbone is not None else set()
    trainable = [q for q in regressor.parameters() if q.requires_grad]
    groups = [{"params": [q for q in trainable if id(q) in ids],
               "lr": lr if backbone_lr is None else backbone_lr},
              {"params": [q for q in trainable if id(q) not in ids], "lr": lr}]
    return [g for g in groups if g["params"]]


def _to_float(out: Mapping[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.float()
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v

    return {k: conv(v) for k, v in out.items()}
