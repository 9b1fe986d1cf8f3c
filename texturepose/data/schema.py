"""The HDF5 schema shared by every dataset: one file per dataset split (its fields and checks;
the writer and reader are :mod:`texturepose.data.hdf5`).

Layout (N samples, K superset keypoints, J body joints of the named body model, S shape dims)::

    attrs: schema_version, dataset, split, source, licence, code_version, crop_res, created
    image_jpeg        (N,)      vlen uint8   JPEG bytes of the RGB crop (crop_res x crop_res)
    crop_center       (N, 2)    float32      crop centre, original-image pixels
    crop_size         (N,)      float32      crop box side, original-image pixels
    keypoints_2d      (N, K, 3) float32      x, y (original-image pixels), confidence (0 = unknown)
    visible           (N, K)    uint8        1 = visible in the image, 0 = occluded or unknown
    image_name        (N,)      str          source image (provenance)
    subject, sequence, camera   (N,) str     identity fields used by the pairs stage
    frame, person     (N,)      int64
  optional (each with a has_* flag (N,) bool where only some samples have it):
    keypoints_3d      (N, K, 4) float32      camera-frame metres + confidence      has_3d
    body_pose         (N, J, 3, 3) float32   rotation matrices; attrs body_model    has_body
    body_shape        (N, S)    float32
    cam_K             (N, 3, 3) float32      intrinsics, original-image pixels      has_camera
    cam_Rt            (N, 3, 4) float32      world -> camera extrinsics
    mask_png          (N,)      vlen uint8   PNG bytes of the body mask of the crop

"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py

from texturepose.keypoints import NUM_KEYPOINTS

SCHEMA_VERSION = 1
REQUIRED = (
    "image_jpeg",
    "crop_center",
    "crop_size",
    "keypoints_2d",
    "visible",
    "image_name",
    "subject",
    "sequence",
    "camera",
    "frame",
    "person",
)
STRING_FIELDS = ("image_name", "subject", "sequence", "camera")
INT_FIELDS = ("frame", "person")
OPTIONAL_FLAGS = {
    "keypoints_3d": "has_3d",
    "body_pose": "has_body",
    "body_shape": "has_body",
    "cam_K": "has_camera",
    "cam_Rt": "has_camera",
}


class SchemaError(ValueError):
    """An HDF5 file that does not follow the schema; the message says what to do."""


def validate(path: str | os.PathLike) -> tuple[dict[str, Any], int]:
    """Check a file against the schema; return its attributes and sample count."""
    path = Path(path)
    if not path.exists():
        raise SchemaError(f"{path}: no such HDF5 file; run the stage that writes it (dvc repro)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SchemaError(
            f"{path}: not a readable HDF5 file ({e}); it may be truncated: delete it and rerun "
            "the stage that writes it"
        ) from e
    with f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        version = attrs.get("schema_version")
        if version is None:
            raise SchemaError(f"{path}: no 'schema_version' attribute: not a texturepose file")
        if int(version) != SCHEMA_VERSION:
            raise SchemaError(
                f"{path}: schema_version {version} is not understood by this code (expects "
                f"{SCHEMA_VERSION}); rerun the preprocessing stage with this version"
            )
        missing = [k for k in REQUIRED if k not in f]
        if missing:
            raise SchemaError(
                f"{path}: missing fields {missing} required by schema {SCHEMA_VERSION}"
            )
        n = len(f["keypoints_2d"])
        shape = f["keypoints_2d"].shape
        if shape[1:] != (NUM_KEYPOINTS, 3):
            raise SchemaError(
                f"{path}: keypoints_2d has shape {shape}, expected (N, {NUM_KEYPOINTS}, 3)"
            )
        bad = [k for k in REQUIRED if len(f[k]) != n]
        if bad:
            raise SchemaError(f"{path}: fields {bad} do not have {n} samples like keypoints_2d")
    return attrs, n
