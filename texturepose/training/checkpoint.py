"""Checkpoints: everything an exact resume needs, written atomically.

A checkpoint holds the step, the regressor and discriminator weights, both optimisers and
schedulers, the AMP scaler, the sampler state, the Python/NumPy/PyTorch (and CUDA) RNG states,
the MLflow run id and the config it was trained with. It is written to a temporary file in the
same folder, flushed to disk, then renamed over the target: a kill during the save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from texturepose.body.base import BodyModel
from texturepose.files import atomic_path

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus the format version) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path, fsync=True) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    log.info("checkpoint step %s -> %s", state.get("step"), path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`, with a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        # Our own files hold numpy RNG state and plain config dicts: not weights_only.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); it may be truncated "
            "or from another program: delete it (or set train.resume: false) to start afresh"
        ) from e
    found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
    if found != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path} is not a texturepose checkpoint of format {FORMAT_VERSION} "
            f"(found {found!r}); delete it or set train.resume: false"
        )
    return state


MODEL_FORMAT = "texturepose-regressor-1"


def save_model(path: str | os.PathLike, regressor: torch.nn.Module, model_config: dict,
               body: dict, mean_params: dict, extra: dict | None = None) -> Path:
    """The trained regressor for evaluation and inference (no optimiser state), atomically.

    ``model_config``: the ``model`` params section; ``body``: the ``body`` section (which body
    model the joints/shape belong to); ``mean_params``: the IEF starting point."""
    state = {
        "format": MODEL_FORMAT,
        "regressor": regressor.state_dict(),
        "model_config": dict(model_config),
        "body": dict(body),
        "num_joints": int(regressor.num_joints),
        "num_shape": int(regressor.num_shape),
        "mean_params": {k: np.asarray(v, np.float32) for k, v in mean_params.items()},
        **(extra or {}),
    }
    return save_checkpoint(path, state)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """``(Regressor in eval mode, the file's dict)`` from a file written by :func:`save_model`."""
    from texturepose.models.regressor import Regressor, RegressorConfig

    state = load_checkpoint(path, map_location)
    if state.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a trained-model file ({MODEL_FORMAT}); training "
                         "checkpoints (checkpoints/last.pt) are for resuming: use final.pt")
    # the section also holds training-only keys (res, lift_*): the architecture's are taken
    arch = {f.name for f in dataclasses.fields(RegressorConfig)}
    mc = {k: v for k, v in state["model_config"].items() if k in arch}
    reg = Regressor(RegressorConfig(**{**mc, "pretrained": None}), state["num_joints"],
                    state["num_shape"], state["mean_params"])
    reg.load_state_dict(state["regressor"])
    log.info("model %s: %s backbone, trained %s steps", path, mc.get("backbone"),
             state.get("step", "?"))
    return reg.use_channels_last().eval(), state


class ModelBodyMismatchError(ValueError):
    """A trained model paired with a body model of other joint or shape counts."""


def check_model_body(path: str | os.PathLike, state: dict[str, Any], body: BodyModel) -> None:
    """Refuse a trained-model file (``state`` from :func:`load_model`) whose regressor predicts
    another number of joints or shape values than ``body`` has: the file names one body model
    (its ``body`` section) but was trained with another, and would fail deep inside the body
    model with a shape error. The message names the file, both counts and what to do."""
    nj, ns = int(state["num_joints"]), int(state["num_shape"])
    if (nj, ns) == (body.num_joints, body.num_shape):
        return
    section = dict(state.get("body") or {})
    raise ModelBodyMismatchError(
        f"{path}: the checkpoint predicts {nj} joints / {ns} shape values but its body model "
        f"{section.get('model', 'anny')!r} here has {body.num_joints} joints / {body.num_shape} "
        f"shape values: it was trained with another body model than its body section {section} "
        "builds here. Retrain it with this body model (dvc repro train), or use the body-model "
        "files it was trained with"
    )
