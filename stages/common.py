"""What every stage script shares: params, logging, seeding. Stages are thin: read params, call
the library, write the stage's outs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))


def load_params(path: str | os.PathLike = REPO / "params.yaml") -> dict[str, Any]:
    """The params file as a dict, after checking every section's keys and types
    (:mod:`texturepose.params_schema`): a typo stops the stage (exit status 1, no traceback),
    naming the key."""
    from texturepose.params_schema import ParamsError, validate_params

    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    try:
        validate_params(params, str(path))
    except ParamsError as e:
        raise SystemExit(f"error: {e}") from None
    return params


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_key(p, "train.steps", 10)`` sets ``p["train"]["steps"]``; a missing section or key
    is an error naming it (an override with a typo must not create a new, unused key)."""
    *path, last = dotted.split(".")
    node = params
    for i, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"override {dotted!r}: params have no {'.'.join(path[: i + 1])!r}")
        node = node[key]
    if not isinstance(node, dict) or last not in node:
        raise KeyError(f"override {dotted!r}: params have no key {dotted!r}")
    node[last] = value


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
