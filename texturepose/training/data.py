"""Training data from the config: the mix's HDF5 files, pairs tables, sampler and loader."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from texturepose.body.base import BodyModel
from texturepose.data.dataset import TrainingDataset
from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.data.sampling import MixedBatchSampler, MixedDataset, MixSource, read_pairs
from texturepose.training.config import TrainConfig
from texturepose.training.distributed import DistInfo

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    sampler: MixedBatchSampler
    dataset: MixedDataset
    names: list[str]


def dataset_paths(cfg: TrainConfig, root: str | os.PathLike = ".") -> dict[str, tuple[Path, Path]]:
    """For each dataset of the mix with a positive ratio: its HDF5 file and pairs table, by the
    pipeline's naming: ``<processed_dir>/<name>_<split>.h5`` (the synthetic set) or, when that
    is absent, ``<processed_dir>/real/<name>_<split>.h5`` (the preprocess stage's real
    datasets); pairs in ``<pairs_dir>/<name>_<split>.parquet``. ``<split>`` is ``data.split``,
    or the part after ``-`` of a mix name: ``lsp-train_fit`` reads ``lsp_train_fit.h5``."""
    root = Path(root)
    d = cfg.data
    out = {}
    for name, ratio in d.mix.items():
        if ratio <= 0:
            continue
        base, _, split = name.partition("-")  # a dataset's own split: "lsp-train_fit"
        stem = f"{base}_{split or d.split}"
        file = f"{stem}.h5"
        candidates = [root / d.processed_dir / file, root / d.processed_dir / "real" / file]
        h5 = next((c for c in candidates if c.exists()), None)
        if h5 is None:
            raise FileNotFoundError(
                f"data.mix.{name} = {ratio} but neither {candidates[0]} nor {candidates[1]} "
                f"exists: run the stage that writes it (synthesize or preprocess_datasets), or "
                f"set data.mix.{name} to 0"
            )
        out[name] = (h5, root / d.pairs_dir / f"{stem}.parquet")
    return out


def build_data(
    cfg: TrainConfig,
    body: BodyModel,
    paths: dict[str, tuple[Path, Path | None]],
    dist_info: DistInfo | None = None,
) -> TrainData:
    """Datasets and the sampler. ``paths``: name -> (HDF5 file, pairs table or None)."""
    info = dist_info or DistInfo()
    datasets, sources, names = [], [], []
    missing_pairs: list[str] = []
    for name, (h5, pairs_path) in paths.items():
        ds = TrainingDataset(
            Hdf5Dataset(h5), cfg.model.res, cfg.data.augment, body.name, body.num_joints,
            body.num_shape, body.flip_joint_permutation.cpu().numpy(), seed=cfg.seed,
        )
        pairs = None
        if cfg.data.pairs_per_batch > 0 and pairs_path is not None and Path(pairs_path).exists():
            pairs = read_pairs(pairs_path, len(ds), cfg.data.pair_kinds)
            log.info("%s: %d samples, %d pairs (%s)", name, len(ds), len(pairs),
                     pairs["kind"].value_counts().to_dict())
        else:
            if cfg.data.pairs_per_batch > 0 and pairs_path is not None:
                missing_pairs.append(str(pairs_path))
            log.info("%s: %d samples, no pairs", name, len(ds))
        datasets.append(ds)
        names.append(name)
        sources.append(MixSource(name, len(ds), float(cfg.data.mix[name]), pairs))
    try:
        sampler = MixedBatchSampler(
            sources, cfg.train.batch_size, cfg.data.pairs_per_batch, seed=cfg.seed,
            rank=info.rank, world_size=info.world_size, num_steps=cfg.train.steps,
        )
    except ValueError as e:
        if not missing_pairs:
            raise
        raise ValueError(f"{e} (pairs tables not found: {', '.join(missing_pairs)})") from None
    return TrainData(sampler, MixedDataset(datasets), names)


def make_loader(data: TrainData, num_workers: int, pin_memory: bool = False):
    """A DataLoader over the sampler's batches (starting at ``sampler.step``).

    It gets its own torch generator so creating it does not consume the global RNG (which
    would make a resumed run's dropout differ from an uninterrupted run's).
    """
    return torch.utils.data.DataLoader(
        data.dataset,
        batch_sampler=data.sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=False,
        worker_init_fn=_worker_init if num_workers > 0 else None,
    )


def _worker_init(_: int) -> None:
    # Augmentation uses per-sample RNGs; limit threads so workers do not fight the main process.
    torch.set_num_threads(1)
    np.random.seed(0)


def load_mocap_poses(path: str | os.PathLike, body: BodyModel) -> np.ndarray:
    """Real poses ``rotmats (N, J, 3, 3)`` for the discriminator and the mean pose, from the
    mocap stage's file, checked against the body model. Only the
    training clips: the held-out ones pose the test subjects, and a prior that has seen them
    would flatter the adversarial term."""
    from texturepose.mocap.poses import read_mocap_h5

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"mocap poses {path} do not exist: run the mocap stage (dvc repro mocap) for body "
            f"model {body.name!r}, or point data.mocap at its file"
        )
    m = read_mocap_h5(path)
    file_body = m["attrs"].get("body_model")
    if file_body != body.name or tuple(m["joint_names"]) != tuple(body.joint_names):
        raise ValueError(
            f"{path}: mocap poses are for body model {file_body!r} with joints "
            f"{len(m['joint_names'])}, the configured body model is {body.name!r} with "
            f"{body.num_joints}: rerun the mocap stage for it or fix data.mocap"
        )
    rotmats = np.asarray(m["rotmats"], np.float32)[np.asarray(m["split"]) == "train"]
    if len(rotmats) == 0:
        raise ValueError(f"{path}: no poses of training clips; rerun the mocap stage with "
                         "training clips (mocap.test_every holds every n-th clip out)")
    return rotmats
