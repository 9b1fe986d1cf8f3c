"""Build the models a training run needs from its config, the body model and the mocap poses."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from texturepose.body.base import BodyModel
from texturepose.files import atomic_path
from texturepose.losses.pose_prior import GaussianPosePrior
from texturepose.models.discriminator import Discriminator
from texturepose.models.mean_params import compute_mean_params
from texturepose.models.regressor import Regressor
from texturepose.render.texture import UVAtlas
from texturepose.training.config import TrainConfig
from texturepose.training.distributed import DistInfo
from texturepose.training.lift import LiftSettings, fit_lifter
from texturepose.training.loop import RealPoses, Trainer

log = logging.getLogger(__name__)


@dataclass
class Models:
    regressor: Regressor
    discriminator: Discriminator | None
    real_poses: RealPoses | None
    atlas: UVAtlas | None
    mean_params: dict[str, np.ndarray]
    pose_prior: GaussianPosePrior | None = None


#: Shapes drawn from the body model's population prior for the adversarial prior and the mean.
PRIOR_SHAPES = 4096
PRIOR_SEED = 7_919


def build_models(
    cfg: TrainConfig,
    body: BodyModel,
    mocap_rotmats: np.ndarray,
    atlas_cache: str | os.PathLike | None = None,
    lifter_cache: str | os.PathLike | None = None,
) -> Models:
    """Regressor (IEF from the mean parameters), discriminator and real samples when the
    adversarial loss is on, and the UV atlas when the texture loss is on (cached as .npz at
    ``atlas_cache`` when given; the fitted pose lifter of ``model.start: lifted`` in the folder
    ``lifter_cache``, keyed by everything its fit depends on, so that the runs of an ablation and
    a resumed run fit it once). Seed the RNGs first: initialisation draws random numbers.

    The prior's real samples are the mocap poses and, independently, shapes drawn from the body
    model's population prior (``BodyModel.sample_shapes``): the mocap fits are a handful of
    actors' shapes, not a population. The mean shape is that population's mean."""
    shapes = body.sample_shapes(PRIOR_SHAPES, seed=PRIOR_SEED).numpy()
    mean_params = compute_mean_params(mocap_rotmats, shapes)
    regressor = Regressor(cfg.model.regressor(), body.num_joints, body.num_shape, mean_params)
    if regressor.lifter is not None:
        settings = LiftSettings(steps=cfg.model.lift_steps, noise=cfg.model.lift_noise)
        _fitted_lifter(regressor, body, mocap_rotmats, shapes, settings, mean_params, cfg.seed,
                       lifter_cache)
    disc = real = None
    if cfg.loss.adversarial > 0:
        disc = Discriminator(body.num_joints, body.num_shape)
        real = RealPoses(mocap_rotmats, shapes, seed=cfg.seed)
    atlas = None
    if cfg.loss.texture > 0:
        if body.uv is None or body.face_uv is None:
            raise ValueError(f"loss.texture > 0 but body model {body.name!r} has no UV map: set "
                             "body.uv_path (SMPL) or loss.texture to 0")
        atlas = _atlas(body, cfg.loss.texture_res, atlas_cache)
    prior = None
    if cfg.loss.pose_prior > 0 and cfg.loss.pose_prior_kind == "gaussian":
        prior = GaussianPosePrior.fit(mocap_rotmats, mean_params["rot6d"])
    return Models(regressor, disc, real, atlas, mean_params, prior)


def _fitted_lifter(regressor: Regressor, body: BodyModel, rotmats: np.ndarray,
                   shapes: np.ndarray, settings: LiftSettings, mean_params: dict[str, np.ndarray],
                   seed: int, cache: str | os.PathLike | None) -> None:
    """Fit ``regressor.lifter`` (or load the fit from ``cache``, a folder, when one with the
    same inputs is there: the mocap poses, shapes, mean parameters, settings, seed, the body
    model and the initial weights)."""
    lifter = regressor.lifter
    digest = hashlib.sha256()
    for part in (rotmats, shapes, *(mean_params[k] for k in sorted(mean_params)),
                 body.keypoint_mask.numpy(), *(v.numpy() for v in lifter.state_dict().values())):
        digest.update(np.ascontiguousarray(part).tobytes())
    digest.update(repr((settings, seed, body.name, body.num_joints, body.num_shape)).encode())
    path = None if cache is None else Path(cache) / f"lifter_{digest.hexdigest()[:20]}.pt"
    if path is not None and path.is_file():
        try:
            lifter.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            log.info("pose lifter: the fit of %s (same mocap, settings and seed)", path)
            return
        except (OSError, RuntimeError, ValueError) as e:
            log.warning("refitting the pose lifter: %s is unreadable (%s)", path, e)
    fit_lifter(lifter, body, rotmats, shapes, settings, torch.from_numpy(mean_params["shape"]),
               seed=seed)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save(lifter.state_dict(), tmp)
        except OSError as e:  # the cache is optional
            log.warning("could not write the pose lifter cache %s (%s)", path, e)


def _atlas(body: BodyModel, res: int, cache: str | os.PathLike | None) -> UVAtlas:
    num_faces = int(body.faces.shape[0])
    if cache is not None and Path(cache).is_file():
        try:
            return UVAtlas.load(cache, num_faces=num_faces)
        except ValueError as e:
            log.warning("rebuilding the UV atlas: %s", e)
    atlas = UVAtlas.build(body.uv, body.face_uv, body.faces, res)
    if cache is not None:
        try:
            atlas.save(cache)
        except OSError as e:  # a read-only data/ must not stop training: the cache is optional
            log.warning("could not write the UV atlas cache %s (%s): using it from memory; "
                        "it is rebuilt on the next run", cache, e)
    return atlas


def build_trainer(cfg: TrainConfig, body: BodyModel, models: Models,
                  dist_info: DistInfo | None = None) -> Trainer:
    return Trainer(cfg, body, models.regressor, models.discriminator, models.real_poses,
                   models.atlas, dist_info, models.pose_prior)
