"""Writers for the evaluate stage's outs: metrics JSON, CSV tables, error plot, overlay grid.

Every writer writes to a temporary name beside the target and renames it: a DVC out is either
complete or absent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from texturepose.files import atomic_path

log = logging.getLogger(__name__)


def write_csv(path: str | os.PathLike, table: pd.DataFrame, decimals: int = 3) -> None:
    """Write a table as CSV (for ``dvc plots``), floats rounded, atomically."""
    with atomic_path(path) as tmp:
        table.round(decimals).to_csv(tmp, index=False)


def plot_error_by_joint(
    per_joint: pd.DataFrame,
    path: str | os.PathLike,
    columns: Sequence[str] = ("mpjpe", "pa_mpjpe"),
    title: str = "Error by joint",
    ylabel: str = "error (mm)",
) -> None:
    """Grouped bar chart of ``per_joint[columns]`` by ``per_joint['joint']`` (PNG, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in columns if c in per_joint.columns]
    if not cols:
        raise ValueError(f"per-joint table has none of the columns {list(columns)}")
    n, k = len(per_joint), len(cols)
    x = np.arange(n)
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * n + 2), 4), dpi=100)
    try:
        for i, c in enumerate(cols):
            ax.bar(x + (i - (k - 1) / 2) * width, per_joint[c].to_numpy(), width, label=c)
        ax.set_xticks(x, per_joint["joint"].tolist(), rotation=60, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)


def select_examples(errors: np.ndarray, k: int = 3) -> list[tuple[str, int]]:
    """``k`` best, ``k`` closest to the median and ``k`` worst samples by error (NaN ignored),
    as ``(tag, position)`` in that order; fewer when there are fewer samples (no repeats)."""
    errors = np.asarray(errors, np.float64)
    pos = np.flatnonzero(~np.isnan(errors))
    order = pos[np.argsort(errors[pos], kind="stable")]
    n = len(order)
    k = min(k, n)
    if k == 0:
        return []
    mid = max(0, min(n - k, n // 2 - k // 2))
    picks = {"best": order[:k], "median": order[mid : mid + k], "worst": order[::-1][:k]}
    seen: set[int] = set()
    out = []
    for tag, idx in picks.items():
        for i in idx:
            if int(i) not in seen:
                seen.add(int(i))
                out.append((tag, int(i)))
    return out


def _fit(img: np.ndarray, h: int) -> np.ndarray:
    """RGB uint8 at height ``h`` (grey is expanded, aspect ratio kept)."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"overlay images must be uint8 RGB, got dtype {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    img = img[..., :3]
    if img.shape[0] != h:
        w = max(1, round(img.shape[1] * h / img.shape[0]))
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return img


def overlay_grid(
    images: Sequence[np.ndarray],
    front: Sequence[np.ndarray],
    side: Sequence[np.ndarray],
    errors: np.ndarray,
    path: str | os.PathLike,
    k: int = 3,
    height: int = 160,
    unit: str = "mm",
    labels: Callable[[int], str] | None = None,
) -> list[tuple[str, int]]:
    """A PNG grid of the best, median and worst samples: one row per sample with the input crop,
    the front overlay and the side view, captioned with tag and error.

    ``images``/``front``/``side`` are indexable per sample (lists, arrays, or lazy sequences that
    render on access: only the selected positions are read). Returns the selection.
    """
    picks = select_examples(errors, k)
    if not picks:
        raise ValueError("no sample with a finite error to show")
    gap, bar = 4, 22
    rows = []
    for tag, i in picks:
        tiles = [_fit(seq[i], height) for seq in (images, front, side)]
        row = np.full((height + bar, sum(t.shape[1] for t in tiles) + gap * 2, 3), 255, np.uint8)
        x = 0
        for t in tiles:
            row[bar:, x : x + t.shape[1]] = t
            x += t.shape[1] + gap
        caption = f"{tag}  #{labels(i) if labels else i}  {errors[i]:.1f} {unit}"
        cv2.putText(row, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    grid = np.full((sum(r.shape[0] + gap for r in rows), width, 3), 255, np.uint8)
    y = 0
    for r in rows:
        grid[y : y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0] + gap
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write the overlay grid to {path}")
    log.info("overlay grid of %d samples -> %s", len(picks), path)
    return picks


def write_summary(
    out_dir: str | os.PathLike, summary: Any, name: str = "", per_sample: bool = True
) -> dict[str, Path]:
    """Write one evaluation set's tables and its by-joint plot into ``out_dir``:
    ``per_joint.csv``, ``per_<group>.csv`` for each grouping, ``per_sample.csv`` and
    ``by_joint.png`` (errors in mm, or PCK for 2D sets). Returns the written paths by role."""
    out_dir = Path(out_dir)
    paths = {"per_joint": out_dir / "per_joint.csv", "by_joint": out_dir / "by_joint.png"}
    write_csv(paths["per_joint"], summary.per_joint)
    for by, table in summary.per_group.items():
        paths[f"per_{by}"] = out_dir / f"per_{by}.csv"
        write_csv(paths[f"per_{by}"], table)
    if per_sample:
        paths["per_sample"] = out_dir / "per_sample.csv"
        write_csv(paths["per_sample"], summary.per_sample)
    cols = [c for c in ("mpjpe", "pa_mpjpe") if c in summary.per_joint.columns]
    if cols:
        plot_error_by_joint(summary.per_joint, paths["by_joint"], cols, f"{name} error by joint")
    else:
        pck = [c for c in summary.per_joint.columns if c.startswith("pck@")]
        plot_error_by_joint(
            summary.per_joint, paths["by_joint"], pck, f"{name} PCK by joint", ylabel="PCK"
        )
    return paths
