"""Log evaluation metrics and pictures to an MLflow run (the training's run, or a linked one).

The run comes from :func:`texturepose.tracking.stage_run` (``run_id=`` the training's run to
log into it; otherwise a new run tagged with the training run id), so tracking failures never
stop the stage.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Tag on a separate evaluation run naming the training run it evaluates.
PARENT_TAG = "texturepose.train_run_id"


class _Run(Protocol):  # texturepose.tracking.StageRun
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Nested numeric mapping -> ``{"eval/h36m_p1/mpjpe": 51.2}``; characters MLflow refuses in
    keys (e.g. ``@`` in ``pck@0.2``) become ``_``; non-numbers, NaN and None are left out."""
    out: dict[str, float] = {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{key}/{k}" if key else str(k))
        elif isinstance(node, int | float) and not isinstance(node, bool) and node == node:
            out[re.sub(r"[^\w\-. :/]", "_", key)] = float(node)

    walk(metrics, prefix)
    return out


def log_evaluation(
    run: _Run,
    metrics: Mapping[str, Any],
    artifacts: Sequence[str | os.PathLike] = (),
    *,
    train_run_id: str | None = None,
    prefix: str = "eval",
) -> dict[str, float]:
    """Log flattened ``metrics`` and the ``artifacts`` files (under ``evaluation/``) to ``run``;
    tag it with ``train_run_id`` when it is a separate evaluation run. Returns what was logged.
    Missing artifact files raise FileNotFoundError before anything is logged."""
    missing = [str(a) for a in artifacts if not os.path.isfile(a)]
    if missing:
        raise FileNotFoundError(f"evaluation artifacts to log to MLflow do not exist: {missing}")
    flat = flatten_metrics(metrics, prefix)
    if not getattr(run, "active", True):
        log.info("nothing logged to MLflow (tracking is off or unavailable)")
        return {}
    if train_run_id is not None:
        run.set_tags({PARENT_TAG: train_run_id})
    run.log_metrics(flat)
    for a in artifacts:
        run.log_artifact(a, artifact_path="evaluation")
    log.info("logged %d metrics and %d files to MLflow", len(flat), len(artifacts))
    return flat
