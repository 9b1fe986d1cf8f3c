"""Training configuration from the ``model``, ``loss``, ``train`` and ``data`` params sections.

Every value is checked when the config is built, and a bad one raises :class:`ConfigError`
naming the params key, the value, and what is expected. Unknown keys are errors too (a typo in
``loss.textrue`` must not silently train without the texture loss).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from texturepose.data.dataset import AugmentConfig
from texturepose.data.pairs import PAIR_KINDS
from texturepose.geometry.cameras import SPIN_FOCAL_224
from texturepose.losses.pose_prior import PRIOR_KINDS
from texturepose.losses.texture import KINDS as TEXTURE_KINDS
from texturepose.models.regressor import RegressorConfig

log = logging.getLogger(__name__)

TEXTURE_TARGETS = ("symmetric", "one_sided")
CAMERAS = ("calibrated", "spin")


class ConfigError(ValueError):
    """A bad params value; the message names the key and what is expected."""


def _number(section: str, name: str, value: Any, lo: float | None = None,
            hi: float | None = None, integer: bool = False, lo_open: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{section}.{name} = {value!r} must be {kind}")
    if value != value:  # NaN
        raise ConfigError(f"{section}.{name} is NaN; it must be {kind}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        op = ">" if lo_open else ">="
        raise ConfigError(f"{section}.{name} = {value!r} must be {op} {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{section}.{name} = {value!r} must be <= {hi}")


def _build(cls: type, section: str, values: Mapping[str, Any] | None) -> Any:
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"params section '{section}' has unknown keys {unknown}; known keys: {sorted(names)}"
        )
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"params section '{section}': {e}") from e


@dataclass(frozen=True)
class ModelConfig:
    """``model``: the regressor (see :class:`RegressorConfig`) and its input resolution."""

    backbone: str = "efficientnet_lite0"
    pretrained: str | None = "imagenet"
    iterations: int = 3
    hidden: int = 1024
    dropout: float = 0.0
    res: int = 128
    head: str = "keypoints"
    feedback: bool = True
    frozen_stages: int = 0
    facing: str = "mean"
    #: ``mean`` or ``lifted``: the IEF starts from the mocap-trained lifter's reading of the
    #: keypoint head (see :class:`RegressorConfig`), fitted for ``lift_steps`` with 2D jitter
    #: ``lift_noise`` (a fraction of the skeleton's radius) before training
    start: str = "mean"
    lift_steps: int = 600
    lift_noise: float = 0.03
    #: the keypoint head's heatmap stride (8 or 4) and, with ``start: lifted``, whether the
    #: losses on the lifted pose train the head through the frozen lifter
    head_stride: int = 8
    lift_grad: bool = False

    def __post_init__(self) -> None:
        _number("model", "res", self.res, lo=32, integer=True)
        _number("model", "lift_steps", self.lift_steps, lo=0, integer=True)
        _number("model", "lift_noise", self.lift_noise, lo=0.0, hi=1.0)
        if self.res % 32:
            raise ConfigError(f"model.res = {self.res} must be a multiple of 32 (backbone stride)")
        self.regressor()  # validates the rest with the models' own checks

    @property
    def pose_trains(self) -> bool:
        """Whether the losses on the body (pose, shape, camera) reach trainable weights: not
        with ``start: lifted, iterations: 0`` and ``lift_grad: false``, where the body is the
        frozen lifter's reading of the keypoint head and only the head's own terms train."""
        return not (self.start == "lifted" and self.iterations == 0 and not self.lift_grad)

    def regressor(self) -> RegressorConfig:
        try:
            return RegressorConfig(backbone=self.backbone, pretrained=self.pretrained,
                                   iterations=self.iterations, hidden=self.hidden,
                                   dropout=self.dropout, head=self.head, feedback=self.feedback,
                                   frozen_stages=self.frozen_stages,
                                   facing=self.facing, start=self.start,
                                   head_stride=self.head_stride, lift_grad=self.lift_grad)
        except ValueError as e:
            raise ConfigError(str(e)) from e


@dataclass(frozen=True)
class LossConfig:
    """``loss``: one weight per term (0 switches it off) and the texture loss's settings."""

    keypoints_2d: float = 5.0
    keypoint_head: float = 1.0
    #: cross-entropy of the keypoint head's heatmaps against Gaussians at the keypoints
    keypoint_heatmap: float = 0.0
    adversarial: float = 0.1
    texture: float = 1.0
    multiview_pose: float = 1.0
    shape_consistency: float = 0.1
    keypoints_3d: float = 0.0
    body_pose: float = 0.0
    body_shape: float = 0.0
    #: squared distance of the body pose (all joints but the global orientation, 6D) from the
    #: mean pose: a plain prior, far simpler than the adversarial one
    pose_prior: float = 0.0
    #: ``l2``: every 6D coordinate counts the same; ``gaussian``: the distance in the mocap
    #: poses' covariance (a Mahalanobis distance, see ``texturepose.losses.pose_prior``)
    pose_prior_kind: str = "l2"
    texture_res: int = 64
    texture_kind: str = "l1"
    depth_tol: float = 0.01
    #: focal length at 224 px (SPIN's convention, scaled to model.res) for samples whose camera
    #: is unknown; calibrated samples project with their own
    focal: float = SPIN_FOCAL_224
    #: step at which the texture term switches on: the texture maps of a model that does not
    #: fit the 2D keypoints yet are sampled mostly from the background
    texture_start: int = 0
    #: ``symmetric``: both texture maps of a pair carry gradients (each prediction is pulled
    #: towards the other); ``one_sided``: the second view's map is a fixed target
    texture_target: str = "symmetric"
    #: ``calibrated``: each crop projects with its own camera's focal length where the sample
    #: has one; ``spin``: every crop with ``focal`` (SPIN's convention), as before issue 10
    camera: str = "calibrated"

    WEIGHTS = ("keypoints_2d", "keypoint_head", "keypoint_heatmap", "adversarial", "texture",
               "multiview_pose", "shape_consistency", "keypoints_3d", "body_pose", "body_shape",
               "pose_prior")

    def __post_init__(self) -> None:
        for name in self.WEIGHTS:
            _number("loss", name, getattr(self, name), lo=0.0)
        if all(getattr(self, n) == 0 for n in self.WEIGHTS):
            raise ConfigError("every loss weight is 0: nothing would be trained")
        _number("loss", "texture_res", self.texture_res, lo=8, hi=1024, integer=True)
        if self.texture_kind not in TEXTURE_KINDS:
            raise ConfigError(
                f"loss.texture_kind = {self.texture_kind!r} must be one of {TEXTURE_KINDS}"
            )
        _number("loss", "depth_tol", self.depth_tol, lo=0.0, lo_open=True)
        _number("loss", "focal", self.focal, lo=0.0, lo_open=True)
        _number("loss", "texture_start", self.texture_start, lo=0, integer=True)
        if self.texture_target not in TEXTURE_TARGETS:
            raise ConfigError(f"loss.texture_target = {self.texture_target!r} must be one of "
                              f"{TEXTURE_TARGETS}")
        if self.camera not in CAMERAS:
            raise ConfigError(f"loss.camera = {self.camera!r} must be one of {CAMERAS}")
        if self.pose_prior_kind not in PRIOR_KINDS:
            raise ConfigError(f"loss.pose_prior_kind = {self.pose_prior_kind!r} must be one of "
                              f"{PRIOR_KINDS}")

    def weights(self) -> dict[str, float]:
        return {n: float(getattr(self, n)) for n in self.WEIGHTS}


@dataclass(frozen=True)
class OptimConfig:
    """``train``: optimisation, schedule, checkpoints, logging, device."""

    steps: int = 400
    batch_size: int = 8
    lr: float = 1e-4
    backbone_lr: float | None = None  # None: train.lr
    disc_lr: float = 1e-4
    weight_decay: float = 0.0
    disc_weight_decay: float = 1e-4
    warmup_steps: int = 50
    lr_schedule: str = "cosine"
    grad_clip: float = 0.0
    checkpoint_every: int = 100
    log_every: int = 10
    overlay_every: int = 100
    resume: bool = True
    device: str = "auto"
    amp: bool = True
    sync_bn: bool = True
    freeze_bn: bool = True
    channels_last: bool = True
    num_workers: int = 1

    def __post_init__(self) -> None:
        _number("train", "steps", self.steps, lo=1, integer=True)
        _number("train", "batch_size", self.batch_size, lo=1, integer=True)
        _number("train", "lr", self.lr, lo=0.0, lo_open=True)
        if self.backbone_lr is not None:
            _number("train", "backbone_lr", self.backbone_lr, lo=0.0, lo_open=True)
        _number("train", "disc_lr", self.disc_lr, lo=0.0, lo_open=True)
        _number("train", "weight_decay", self.weight_decay, lo=0.0)
        _number("train", "disc_weight_decay", self.disc_weight_decay, lo=0.0)
        _number("train", "warmup_steps", self.warmup_steps, lo=0, integer=True)
        _number("train", "grad_clip", self.grad_clip, lo=0.0)
        for name in ("checkpoint_every", "log_every", "overlay_every"):
            _number("train", name, getattr(self, name), lo=0, integer=True)
        _number("train", "num_workers", self.num_workers, lo=0, integer=True)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(
                f"train.lr_schedule = {self.lr_schedule!r} must be 'constant' or 'cosine'"
            )
        if not (self.device in ("auto", "cpu", "cuda") or str(self.device).startswith("cuda:")):
            raise ConfigError(f"train.device = {self.device!r} must be auto, cpu, cuda or cuda:N")
        for name in ("resume", "amp", "sync_bn", "freeze_bn", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"train.{name} = {getattr(self, name)!r} must be true or false")


@dataclass(frozen=True)
class DataConfig:
    """``data``: the mix, where its files are, pairs and augmentation."""

    mix: dict[str, float] = field(default_factory=lambda: {"synthetic": 1.0})
    split: str = "train"
    processed_dir: str = "data/processed"
    pairs_dir: str = "data/pairs"
    pairs_per_batch: int = 2
    pair_kinds: tuple[str, ...] = PAIR_KINDS
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.mix, Mapping) or not self.mix:
            raise ConfigError(
                f"data.mix = {self.mix!r} must map dataset names to ratios, "
                "e.g. {synthetic: 1.0, lsp: 0.0}"
            )
        for name, ratio in self.mix.items():
            _number("data.mix", str(name), ratio, lo=0.0)
        if sum(self.mix.values()) <= 0:
            raise ConfigError(f"data.mix = {dict(self.mix)} gives no dataset a positive ratio")
        _number("data", "pairs_per_batch", self.pairs_per_batch, lo=0, integer=True)
        kinds = (self.pair_kinds,) if isinstance(self.pair_kinds, str) else self.pair_kinds
        bad = [k for k in kinds if k not in PAIR_KINDS]
        if bad or not kinds:
            raise ConfigError(f"data.pair_kinds = {self.pair_kinds!r}: each must be one of "
                              f"{PAIR_KINDS}")
        object.__setattr__(self, "pair_kinds", tuple(kinds))
        if isinstance(self.augment, Mapping):
            object.__setattr__(self, "augment", _build(AugmentConfig, "data.augment",
                                                        self.augment))
        for name in ("split", "processed_dir", "pairs_dir"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"data.{name} = {getattr(self, name)!r} must be a string")


@dataclass(frozen=True)
class TrainConfig:
    """Everything the training loop needs, built from params with :meth:`from_params`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrainConfig:
        """Build from the params mapping (sections ``model``, ``loss``, ``train``, ``data``
        and the top-level ``seed``); missing sections/keys take the defaults above."""
        for section in ("model", "loss", "train", "data"):
            value = params.get(section)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"params section '{section}' must be a mapping, got {value!r}")
        seed = params.get("seed", 0)
        _number("params", "seed", seed, lo=0, integer=True)
        cfg = cls(
            model=_build(ModelConfig, "model", params.get("model")),
            loss=_build(LossConfig, "loss", params.get("loss")),
            train=_build(OptimConfig, "train", params.get("train")),
            data=_build(DataConfig, "data", params.get("data")),
            seed=seed,
        )
        pair_terms = [n for n in ("texture", "multiview_pose", "shape_consistency")
                      if getattr(cfg.loss, n) > 0]
        if pair_terms and cfg.data.pairs_per_batch == 0:
            log.warning("loss weights %s are set but data.pairs_per_batch is 0: these pair "
                        "terms stay inactive", pair_terms)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Settings that may change between a checkpoint and its resumption (more steps, other
#: logging, another device or process layout); any other difference means another experiment.
RESUMABLE_CHANGES = frozenset({
    "train.steps", "train.resume", "train.checkpoint_every", "train.log_every",
    "train.overlay_every", "train.num_workers", "train.device", "train.amp", "train.sync_bn",
    "train.channels_last",
})


def config_changes(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Keys (``section.name``) whose value differs between a checkpoint's saved config and
    ``cfg``, ignoring :data:`RESUMABLE_CHANGES`; e.g. ``["loss.texture: 1.0 -> 0.0"]``."""

    def flat(d: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for section, values in d.items():
            items = values.items() if isinstance(values, Mapping) else [(None, values)]
            for k, v in items:
                out[section if k is None else f"{section}.{k}"] = (
                    list(v) if isinstance(v, tuple) else v)
        return out

    old, new = flat(saved), flat(cfg.to_dict())
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]
