"""Which samples make up each training step: a mix over datasets with fixed ratios, plus pairs.

Every step's global batch is a pure function of ``(seed, step)``:

* each dataset ``d`` of the mix contributes ``n_d`` single samples per batch (the ratios times
  the batch size, rounded by largest remainder, so they sum to the batch size); its samples are
  visited in a fresh random permutation per epoch (sample ``k`` of step ``t`` is position
  ``t * n_d + k`` in the endless sequence of permutations);
* ``pairs_per_batch`` pairs ``(i, j, kind)`` are drawn the same way from the pairs tables of the
  mixed datasets that have one (pairs are split over those datasets by their ratios);
* every image gets its own augmentation key ``(step, slot)``; the two images of a pair also share
  a key ``(step, pair)`` for what must be common to both (flip, colour gain).

So the sampler's state is just the step: resuming is exact, whatever the DataLoader prefetched,
and under DDP every rank computes the same global batch and keeps its own slice of it (rank
``r`` of ``W`` takes singles ``[r B, (r+1) B)`` and pairs ``[r P, (r+1) P)``), so a run on ``W``
processes sees the same samples as one process with a ``W`` times larger batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from texturepose.data.dataset import SampleRequest
from texturepose.data.pairs import PAIR_KINDS

log = logging.getLogger(__name__)

#: Pair kinds written by the pairs stage, and their integer codes in batches.


def allocate(ratios: Sequence[float], total: int) -> np.ndarray:
    """Split ``total`` slots over ``ratios`` (largest remainder; ties to the first)."""
    r = np.asarray(ratios, np.float64)
    if total < 0 or (r < 0).any() or not np.isfinite(r).all():
        raise ValueError(f"cannot allocate {total} slots over ratios {list(ratios)}")
    if total == 0 or r.sum() == 0:
        return np.zeros(len(r), np.int64)
    exact = r / r.sum() * total
    n = np.floor(exact).astype(np.int64)
    rest = total - int(n.sum())
    order = np.argsort(-(exact - n), kind="stable")
    n[order[:rest]] += 1
    return n


@lru_cache(maxsize=64)
def _permutation(seed: int, stream: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, stream, epoch]).permutation(size)


def _endless(seed: int, stream: int, size: int, positions: np.ndarray) -> np.ndarray:
    """Items at ``positions`` of the endless sequence of per-epoch permutations of ``size``."""
    epochs, offsets = np.divmod(positions, size)
    out = np.empty(len(positions), np.int64)
    for e in np.unique(epochs):  # one or two epochs per batch
        sel = epochs == e
        out[sel] = _permutation(seed, stream, int(e), size)[offsets[sel]]
    return out


def read_pairs(path: str | os.PathLike, num_samples: int, kinds: Sequence[str]) -> pd.DataFrame:
    """The pairs table of a dataset (columns ``i``, ``j``, ``kind``), restricted to ``kinds``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pairs table {path} does not exist: run the pairs stage (dvc repro pairs) or set "
            "data.pairs_per_batch to 0"
        )
    table = pd.read_parquet(path)
    missing = [c for c in ("i", "j", "kind") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: pairs table lacks columns {missing} (expected i, j, kind)")
    unknown = sorted(set(kinds) - set(PAIR_KINDS))
    if unknown:
        raise ValueError(f"data.pair_kinds has unknown kinds {unknown}; known: {PAIR_KINDS}")
    table = table[table["kind"].isin(list(kinds))].reset_index(drop=True)
    ij = table[["i", "j"]].to_numpy()
    if len(ij) and (ij.min() < 0 or ij.max() >= num_samples):
        raise ValueError(
            f"{path}: pair indices must lie in [0, {num_samples}) like its HDF5 file's samples; "
            "the table is stale: rerun the pairs stage"
        )
    return table


@dataclass
class MixSource:
    """One dataset of the mix: its sample count, ratio, and optional pairs table."""

    name: str
    size: int
    ratio: float
    pairs: pd.DataFrame | None = None


class MixedBatchSampler:
    """Yields, per step, this rank's list of :class:`SampleRequest` (a DataLoader batch_sampler).

    Request order within a rank's batch: ``batch_size`` singles, then the first images of the
    ``pairs_per_batch`` pairs, then their second images (pair images carry their kind code).
    """

    def __init__(
        self,
        sources: Sequence[MixSource],
        batch_size: int,
        pairs_per_batch: int = 0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_steps: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"train.batch_size must be >= 1, got {batch_size}")
        if pairs_per_batch < 0:
            raise ValueError(f"data.pairs_per_batch must be >= 0, got {pairs_per_batch}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.sources = [s for s in sources if s.ratio > 0]
        if not self.sources:
            raise ValueError("data.mix gives no dataset a positive ratio: nothing to train on")
        for s in self.sources:
            if s.size < 1:
                raise ValueError(f"dataset {s.name!r} of data.mix has no samples")
        self.batch_size, self.pairs_per_batch = batch_size, pairs_per_batch
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        self.num_steps = num_steps
        self.step = 0
        gb = batch_size * world_size
        self.counts = allocate([s.ratio for s in self.sources], gb)
        for s, n in zip(self.sources, self.counts, strict=True):
            if n == 0:
                log.warning("data.mix.%s = %g gives it no sample of a global batch of %d",
                            s.name, s.ratio, gb)
        gp = pairs_per_batch * world_size
        with_pairs = [s.pairs is not None and len(s.pairs) > 0 for s in self.sources]
        if gp > 0 and not any(with_pairs):
            raise ValueError(
                f"data.pairs_per_batch = {pairs_per_batch} but no dataset of the mix has pairs "
                "of the kinds in data.pair_kinds: run the pairs stage or set it to 0"
            )
        self.pair_counts = allocate(
            [s.ratio if w else 0.0 for s, w in zip(self.sources, with_pairs, strict=True)], gp
        )

    # -- state: the step is all there is ----------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seed": self.seed,
            "sizes": [s.size for s in self.sources],
            "counts": self.counts.tolist(),
            "pair_counts": self.pair_counts.tolist(),
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self.state_dict()
        for key in ("seed", "sizes", "counts", "pair_counts"):
            if state.get(key) != mine[key]:
                raise ValueError(
                    f"checkpoint sampler state has {key} = {state.get(key)}, this run has "
                    f"{mine[key]} (data.mix, dataset sizes, batch size or process count "
                    "changed): resume only with the same data and batch, or set "
                    "train.resume to false"
                )
        self.step = int(state["step"])

    # -- batches ----------------------------------------------------------------------------
    def global_batch(self, step: int) -> tuple[list[SampleRequest], list[tuple], np.ndarray]:
        """All ranks' singles, pairs (as (first, second) requests) and pair kind codes."""
        singles: list[SampleRequest] = []
        for d, (src, n) in enumerate(zip(self.sources, self.counts, strict=True)):
            if n == 0:
                continue
            idx = _endless(self.seed, 2 * d, src.size, step * n + np.arange(n))
            singles += [SampleRequest(d, int(i), (step, 0, 0)) for i in idx]
        # Interleave datasets so that every rank's slice holds the mix.
        order = np.random.default_rng([self.seed, step, 7]).permutation(len(singles))
        singles = [singles[k]._replace(key=(step, 0, slot)) for slot, k in enumerate(order)]
        pairs: list[tuple[SampleRequest, SampleRequest]] = []
        kinds: list[int] = []
        for d, (src, n) in enumerate(zip(self.sources, self.pair_counts, strict=True)):
            if n == 0:
                continue
            rows = _endless(self.seed, 2 * d + 1, len(src.pairs), step * n + np.arange(n))
            table = src.pairs.iloc[rows]
            for i, j, kind in zip(table["i"], table["j"], table["kind"], strict=True):
                pairs.append((d, int(i), int(j), PAIR_KINDS.index(kind)))
        order = np.random.default_rng([self.seed, step, 11]).permutation(len(pairs))
        out_pairs = []
        for p, k in enumerate(order):
            d, i, j, kind = pairs[k]
            shared = (step, 2, p)
            out_pairs.append((SampleRequest(d, i, (step, 1, 2 * p), shared, kind),
                              SampleRequest(d, j, (step, 1, 2 * p + 1), shared, kind)))
            kinds.append(kind)
        return singles, out_pairs, np.asarray(kinds, np.int64)

    def batch(self, step: int) -> list[SampleRequest]:
        """This rank's requests for ``step``."""
        singles, pairs, _ = self.global_batch(step)
        b, p, r = self.batch_size, self.pairs_per_batch, self.rank
        mine = pairs[r * p : (r + 1) * p]
        return singles[r * b : (r + 1) * b] + [a for a, _ in mine] + [c for _, c in mine]

    def __iter__(self) -> Iterator[list[SampleRequest]]:
        step = self.step
        while self.num_steps is None or step < self.num_steps:
            yield self.batch(step)
            step += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("an endless sampler has no length")
        return max(0, self.num_steps - self.step)


class MixedDataset(torch.utils.data.Dataset):
    """Routes :class:`SampleRequest` to the mix's datasets; adds the dataset id and pair kind."""

    def __init__(self, datasets: Sequence[Any]) -> None:
        self.datasets = list(datasets)

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, request: SampleRequest) -> dict[str, Any]:  # type: ignore[override]
        out = self.datasets[request.dataset][request]
        out["dataset"] = request.dataset
        out["pair_kind"] = request.pair_kind
        return out
