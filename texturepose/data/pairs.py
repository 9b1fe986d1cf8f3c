"""Pairs of samples that see the same person: the table the texture-consistency loss samples.

Two kinds, from the identity fields of any schema file (subject, sequence, camera, frame, person):

* ``multiview``: same subject, sequence, frame and person, different camera (one instant seen
  from two views: pose and shape are shared);
* ``temporal``: same subject, sequence, person and camera, frames ``min_gap <= |f_j - f_i| <=
  max_gap`` apart (one person in two frames of a video: shape and appearance are shared).

Each unordered pair is listed once: multiview pairs with ``i < j`` (sample indices), temporal
pairs with ``frame_i < frame_j`` and ``gap = frame_j - frame_i`` (0 for multiview). Samples with
an empty ``subject`` (single images with no identity) are never paired. Everything is vectorised
(sorting and ``searchsorted``), so the cost is linear in the number of pairs written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from texturepose.files import atomic_path

log = logging.getLogger(__name__)

IDENTITY_FIELDS = ("subject", "sequence", "camera", "frame", "person")
#: The kinds of image pairs, in the order their codes (0, 1, ...) index in training batches.
PAIR_KINDS: tuple[str, ...] = ("multiview", "temporal")


def identity_table(path: str | os.PathLike) -> pd.DataFrame:
    """The identity fields of a schema HDF5 file, one row per sample (row = sample index)."""
    from texturepose.data.hdf5 import Hdf5Dataset

    ds = Hdf5Dataset(path)
    return pd.DataFrame({name: ds.column(name) for name in IDENTITY_FIELDS})


def _group_ids(table: pd.DataFrame, keys: list[str]) -> np.ndarray:
    return table.groupby(keys, sort=False, dropna=False).ngroup().to_numpy(np.int64)


def _expand(order: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted position p, pair ``order[p]`` with ``order[lo[p]:hi[p]]`` (vectorised)."""
    counts = np.maximum(hi - lo, 0)
    first = np.repeat(order, counts)
    starts = np.repeat(lo, counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return first, order[starts + offset]


def build_pairs(table: pd.DataFrame, min_gap: int = 1, max_gap: int = 10,
                kinds: tuple[str, ...] = PAIR_KINDS) -> pd.DataFrame:
    """Pairs of row indices of ``table`` (columns :data:`IDENTITY_FIELDS`).

    Returns a DataFrame with columns ``i``, ``j`` (int64 row positions), ``kind`` (categorical,
    :data:`PAIR_KINDS`) and ``gap`` (int64 frame difference).
    """
    missing = [c for c in IDENTITY_FIELDS if c not in table.columns]
    if missing:
        raise ValueError(f"identity table lacks columns {missing}; expected {IDENTITY_FIELDS}")
    if not 1 <= min_gap <= max_gap:
        raise ValueError(f"need 1 <= min_gap <= max_gap, got min_gap={min_gap}, "
                         f"max_gap={max_gap}")
    unknown = [k for k in kinds if k not in PAIR_KINDS]
    if unknown:
        raise ValueError(f"unknown pair kinds {unknown}; known: {PAIR_KINDS}")
    t = table.reset_index(drop=True)
    keep = np.flatnonzero(t["subject"].astype(str).to_numpy() != "")
    t = t.iloc[keep]
    frame = t["frame"].to_numpy(np.int64)
    parts = []
    if "multiview" in kinds and len(t):
        gid = _group_ids(t, ["subject", "sequence", "frame", "person"])
        cam = _group_ids(t, ["camera"])
        order = np.lexsort((cam, gid))
        g = gid[order]
        end = np.searchsorted(g, g, side="right")
        pos = np.arange(len(g))
        a, b = _expand(order, pos + 1, end)
        diff = cam[a] != cam[b]
        a, b = a[diff], b[diff]
        parts.append(_frame(keep, a, b, "multiview", np.zeros(len(a), np.int64)))
    if "temporal" in kinds and len(t):
        gid = _group_ids(t, ["subject", "sequence", "person", "camera"])
        span = int(frame.max() - frame.min()) + max_gap + 1
        key = gid * span + (frame - frame.min())
        order = np.argsort(key, kind="stable")
        k = key[order]
        lo = np.searchsorted(k, k + min_gap, side="left")
        hi = np.searchsorted(k, k + max_gap, side="right")
        a, b = _expand(order, lo, hi)
        parts.append(_frame(keep, a, b, "temporal", frame[b] - frame[a]))
    if not parts:
        return _frame(keep, np.zeros(0, np.int64), np.zeros(0, np.int64), "multiview",
                      np.zeros(0, np.int64))
    out = pd.concat(parts, ignore_index=True)
    out["kind"] = pd.Categorical(out["kind"], categories=PAIR_KINDS)
    return out


def _frame(keep: np.ndarray, a: np.ndarray, b: np.ndarray, kind: str,
           gap: np.ndarray) -> pd.DataFrame:
    i, j = keep[a].astype(np.int64), keep[b].astype(np.int64)
    if kind == "multiview":  # unordered: smaller sample index first
        i, j = np.minimum(i, j), np.maximum(i, j)
    return pd.DataFrame({"i": i, "j": j, "kind": pd.Categorical([kind] * len(i),
                                                                  categories=PAIR_KINDS),
                         "gap": gap.astype(np.int64)})


def pair_counts(pairs: pd.DataFrame) -> dict[str, int]:
    """Number of pairs per kind (every kind listed, zeros included)."""
    counts = pairs["kind"].value_counts()
    return {k: int(counts.get(k, 0)) for k in PAIR_KINDS}


def write_pairs(pairs: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a parquet table atomically (temporary name, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        pairs.to_parquet(tmp, index=False)
    return path
