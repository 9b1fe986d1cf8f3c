"""The mocap-poses HDF5 (``data/mocap/<body_model>_poses.h5``): real poses for the pose prior.

Layout (N frames, J body joints, S shape dims, K superset keypoints, C clips)::

    attrs: kind="texturepose-mocap", mocap_schema_version, body_model, joint_names (JSON),
           code_version, created, fit_config (JSON), sources (JSON: name -> licence)
    rotmats        (N, J, 3, 3) float32  body-model pose (first joint = global orientation)
    shape          (N, S)       float32  the clip's fitted shape, repeated per frame
    translation    (N, 3)       float32  body origin in the (Y-up) mocap world, metres
    clip_index     (N,)         int64    row in clips/*
    frame          (N,)         int64    frame index in the source clip
    fit_error_mm   (N, K)       float32  per-keypoint fit error; NaN where not fitted
    clips/name, clips/source, clips/licence, clips/skeleton, clips/path   (C,) str
    clips/split    (C,) str  "train" or "test": test clips pose only the held-out subjects'
                   renders and are kept out of the pose prior (files without it: all "train")
    clips/fps (C,) float32 source frame rate; clips/sample_fps (C,) float32 rate kept

Written to a temporary name and renamed: the file is complete or absent.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from texturepose.files import atomic_path
from texturepose.provenance import code_version

log = logging.getLogger(__name__)

KIND = "texturepose-mocap"
MOCAP_SCHEMA_VERSION = 1
CLIP_FIELDS = ("name", "source", "licence", "skeleton", "path", "split")
SPLITS = ("train", "test")


class MocapFileError(ValueError):
    """A mocap HDF5 that is missing, truncated or of another layout."""


@dataclass
class MocapClipPoses:
    """One clip's fitted frames, as collected by the mocap stage."""

    name: str
    source: str
    licence: str
    skeleton: str
    path: str
    fps: float
    sample_fps: float
    frames: np.ndarray  # (T,) source frame indices
    rotmats: np.ndarray  # (T, J, 3, 3)
    shape: np.ndarray  # (S,)
    translation: np.ndarray  # (T, 3)
    fit_error_mm: np.ndarray  # (T, K)
    split: str = "train"  # "test": held-out motions (see the module docstring)
    extra: dict[str, Any] = field(default_factory=dict)


def write_mocap_h5(
    path: str | os.PathLike,
    clips: list[MocapClipPoses],
    *,
    body_model: str,
    joint_names: tuple[str, ...] | list[str],
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write the clips' poses atomically; returns the path."""
    path = Path(path)
    if not clips:
        raise MocapFileError(f"no fitted clips to write to {path}: every clip was skipped")
    j = len(joint_names)
    for c in clips:
        if c.split not in SPLITS:
            raise MocapFileError(f"clip {c.name}: split {c.split!r} must be one of {SPLITS}")
        if c.rotmats.shape[1:] != (j, 3, 3):
            raise MocapFileError(
                f"clip {c.name}: rotmats {c.rotmats.shape}, expected (T, {j}, 3, 3)"
            )
    n = [len(c.frames) for c in clips]
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["kind"] = KIND
        f.attrs["mocap_schema_version"] = MOCAP_SCHEMA_VERSION
        f.attrs["body_model"] = body_model
        f.attrs["joint_names"] = json.dumps(list(joint_names))
        f.attrs["code_version"] = code_version()
        f.attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        sources = {c.source: c.licence for c in clips}
        f.attrs["sources"] = json.dumps(sources)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v if isinstance(v, (int, float, str)) else json.dumps(v)
        cat = np.concatenate
        f.create_dataset("rotmats", data=cat([c.rotmats for c in clips]).astype(np.float32))
        f.create_dataset(
            "shape",
            data=cat([np.repeat(c.shape[None], len(c.frames), 0) for c in clips]).astype(
                np.float32
            ),
        )
        f.create_dataset(
            "translation", data=cat([c.translation for c in clips]).astype(np.float32)
        )
        f.create_dataset(
            "clip_index", data=np.repeat(np.arange(len(clips)), n).astype(np.int64)
        )
        f.create_dataset("frame", data=cat([c.frames for c in clips]).astype(np.int64))
        f.create_dataset(
            "fit_error_mm", data=cat([c.fit_error_mm for c in clips]).astype(np.float32)
        )
        strdt = h5py.string_dtype("utf-8")
        g = f.create_group("clips")
        for name in CLIP_FIELDS:
            g.create_dataset(name, data=[str(getattr(c, name)) for c in clips], dtype=strdt)
        g.create_dataset("fps", data=np.array([c.fps for c in clips], np.float32))
        g.create_dataset("sample_fps", data=np.array([c.sample_fps for c in clips], np.float32))
    log.info("wrote %s: %d frames from %d clips", path, sum(n), len(clips))
    return path


def read_mocap_h5(path: str | os.PathLike) -> dict[str, Any]:
    """Read the whole file into numpy arrays (it is small: poses only, no images).

    Returns the datasets by name, ``clips`` (a dict of per-clip arrays), ``clip_name`` and
    ``split`` per frame, ``joint_names`` and ``attrs``.
    """
    path = Path(path)
    if not path.exists():
        raise MocapFileError(f"{path}: no such mocap file; run the mocap stage (dvc repro mocap)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise MocapFileError(
            f"{path}: not a readable HDF5 file ({e}); delete it and rerun the mocap stage"
        ) from e
    with f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        if attrs.get("kind") != KIND:
            raise MocapFileError(f"{path}: attribute kind={attrs.get('kind')!r}, expected {KIND!r}")
        if int(attrs.get("mocap_schema_version", -1)) != MOCAP_SCHEMA_VERSION:
            raise MocapFileError(
                f"{path}: mocap_schema_version {attrs.get('mocap_schema_version')} is not "
                f"{MOCAP_SCHEMA_VERSION}; rerun the mocap stage with this code version"
            )
        out: dict[str, Any] = {
            k: f[k][()]
            for k in ("rotmats", "shape", "translation", "clip_index", "frame", "fit_error_mm")
        }
        clips = {k: f["clips"][k][()] for k in f["clips"]}
    if "split" not in clips:  # written before held-out motions existed
        clips["split"] = np.array(["train"] * len(clips["name"]), object)
    for k in CLIP_FIELDS:
        clips[k] = np.array([x.decode() if isinstance(x, bytes) else x for x in clips[k]], object)
    out["clips"] = clips
    out["clip_name"] = clips["name"][out["clip_index"]]
    out["split"] = clips["split"][out["clip_index"]]
    out["joint_names"] = tuple(json.loads(attrs["joint_names"]))
    out["attrs"] = attrs
    return out


def smpl_poses_from_npz(
    path: str | os.PathLike, body_model: str, num_joints: int, num_shape: int
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """SMPL poses of an AMASS/MoSh npz as rotmats ``(N, 24, 3, 3)`` and shapes ``(N, S)``.

    AMASS global orientations are turned from its Z-up world to Y up, like the BVH path; MoSh/SPIN
    files are kept as they are.

    Only for the SMPL body model, whose joints these are. For any other body model the poses
    would have to be re-fitted through SMPL's joints, which needs the (registration-only) SMPL
    model file: raises ``NotImplementedError`` with that message, which the stage reports as a
    skipped file.
    """
    from scipy.spatial.transform import Rotation

    from texturepose.datasets.mosh import read_amass_npz

    data = read_amass_npz(path)
    if body_model != "smpl" or num_joints != 24:
        raise NotImplementedError(
            f"{path}: SMPL poses map directly only onto body.model 'smpl' (24 joints); for "
            f"{body_model!r} they would be re-fitted through SMPL's joints, which needs the SMPL "
            "model file and is not implemented: use BVH clips, or body.model: smpl"
        )
    aa = data["poses"][:, :72].reshape(-1, 3)
    rot = Rotation.from_rotvec(aa).as_matrix().reshape(-1, 24, 3, 3)
    if data["layout"] == "amass":
        # AMASS worlds are Z up; the BVH path and the body frame are Y up: turn the root.
        from texturepose.mocap.skeletons import Z_UP_TO_Y_UP

        rot[:, 0] = Z_UP_TO_Y_UP @ rot[:, 0]
    rot = rot.astype(np.float32)
    betas = np.zeros((len(rot), num_shape), np.float32)
    k = min(num_shape, data["betas"].shape[1])
    betas[:, :k] = data["betas"][:, :k]
    return rot, betas, data["fps"]
