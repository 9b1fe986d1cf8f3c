"""The HDF5 schema shared by every dataset: one file per dataset split.

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

Writers write to a temporary name and rename on success: a file either is complete or absent.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

from texturepose.data.keypoints import NUM_KEYPOINTS

log = logging.getLogger(__name__)

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


def code_version() -> str:
    """Git commit of the code that writes a file (or the package version outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        )
        if out.returncode == 0:
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import version

    return "texturepose " + version("texturepose")


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.reshape(-1)


def decode_jpeg(buf: np.ndarray) -> np.ndarray:
    img = cv2.imdecode(np.asarray(buf, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("corrupt JPEG bytes")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_png(mask: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".png", mask.astype(np.uint8))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.reshape(-1)


def decode_png(buf: np.ndarray) -> np.ndarray:
    return cv2.imdecode(np.asarray(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED)


class Hdf5Writer:
    """Collects samples and writes one schema file atomically on :meth:`close`.

    Use as a context manager; on an exception nothing is left at ``path``. Samples are dicts with
    the REQUIRED keys (``image_jpeg`` may be given as ``image`` RGB array instead) and any optional
    fields; a field given for some samples only gets its ``has_*`` flag.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        dataset: str,
        split: str,
        crop_res: int,
        source: str,
        licence: str,
        body_model: str | None = None,
        extra_attrs: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.attrs: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "dataset": dataset,
            "split": split,
            "crop_res": int(crop_res),
            "source": source,
            "licence": licence,
            "code_version": code_version(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        if body_model:
            self.attrs["body_model"] = body_model
        self.attrs.update(extra_attrs or {})
        self.samples: list[dict[str, Any]] = []
        self.skipped: dict[str, int] = {}

    def add(self, sample: dict[str, Any]) -> None:
        if "image" in sample:
            sample = dict(sample)
            sample["image_jpeg"] = encode_jpeg(sample.pop("image"))
        missing = [k for k in REQUIRED if k not in sample]
        if missing:
            raise SchemaError(f"sample for {self.path.name} lacks fields {missing}")
        kp = np.asarray(sample["keypoints_2d"])
        if kp.shape != (NUM_KEYPOINTS, 3):
            raise SchemaError(f"keypoints_2d must be ({NUM_KEYPOINTS}, 3), got {kp.shape}")
        self.samples.append(sample)

    def skip(self, reason: str) -> None:
        """Count a sample that could not be read, by reason (reported at close)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def __enter__(self) -> Hdf5Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def close(self) -> Path:
        if not self.samples:
            raise SchemaError(
                f"no readable samples for {self.path}; skipped: {self.skipped or 'none'}"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with h5py.File(tmp, "w") as f:
                self._write(f)
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        n_skip = sum(self.skipped.values())
        log.info("wrote %s: %d samples, %d skipped %s", self.path, len(self.samples), n_skip,
                 self.skipped or "")
        return self.path

    def _write(self, f: h5py.File) -> None:
        n = len(self.samples)
        for k, v in self.attrs.items():
            f.attrs[k] = v
        f.attrs["num_samples"] = n
        f.attrs["skipped"] = int(sum(self.skipped.values()))
        f.attrs["skipped_reasons"] = repr(self.skipped)
        u8 = h5py.vlen_dtype(np.uint8)
        for name in ("image_jpeg", "mask_png"):
            if name == "mask_png" and not any(name in s for s in self.samples):
                continue
            ds = f.create_dataset(name, (n,), dtype=u8)
            for i, s in enumerate(self.samples):
                ds[i] = np.asarray(s.get(name, np.zeros(0, np.uint8)), dtype=np.uint8)
        strdt = h5py.string_dtype("utf-8")
        for name in STRING_FIELDS:
            f.create_dataset(name, data=np.array([str(s[name]) for s in self.samples], dtype=object), dtype=strdt)
        for name in INT_FIELDS:
            f.create_dataset(name, data=np.array([int(s[name]) for s in self.samples], np.int64))
        f.create_dataset("crop_center", data=np.stack([s["crop_center"] for s in self.samples]).astype(np.float32))
        f.create_dataset("crop_size", data=np.array([s["crop_size"] for s in self.samples], np.float32))
        f.create_dataset("keypoints_2d", data=np.stack([s["keypoints_2d"] for s in self.samples]).astype(np.float32), compression="gzip")
        f.create_dataset("visible", data=np.stack([s["visible"] for s in self.samples]).astype(np.uint8))
        for name, flag in OPTIONAL_FLAGS.items():
            present = [name in s and s[name] is not None for s in self.samples]
            if not any(present):
                continue
            ref = np.asarray(next(s[name] for s, p in zip(self.samples, present, strict=True) if p))
            data = np.zeros((n,) + ref.shape, np.float32)
            for i, (s, p) in enumerate(zip(self.samples, present, strict=True)):
                if p:
                    data[i] = s[name]
            f.create_dataset(name, data=data, compression="gzip")
            if flag not in f:
                f.create_dataset(flag, data=np.array(present, bool))


class Hdf5Dataset(Sequence):
    """Read-only access to one schema file; opens the file lazily (safe with worker processes).

    ``ds[i]`` returns a dict of numpy arrays with the decoded RGB crop under ``image``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self.attrs, self._len = validate(self.path)

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    def __len__(self) -> int:
        return self._len

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        return state

    def column(self, name: str) -> np.ndarray:
        """A whole field, e.g. ``column('subject')`` (strings decoded)."""
        data = self.file[name][()]
        if name in STRING_FIELDS:
            data = np.array([x.decode() if isinstance(x, bytes) else x for x in data], dtype=object)
        return data

    def has(self, name: str) -> bool:
        return name in self.file

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        if not 0 <= i < self._len:
            raise IndexError(f"sample {i} out of range for {self.path} ({self._len} samples)")
        f = self.file
        out: dict[str, Any] = {"index": i, "image": decode_jpeg(f["image_jpeg"][i])}
        for name in ("crop_center", "crop_size", "keypoints_2d", "visible", "frame", "person"):
            out[name] = f[name][i]
        for name in STRING_FIELDS:
            v = f[name][i]
            out[name] = v.decode() if isinstance(v, bytes) else v
        for name, flag in OPTIONAL_FLAGS.items():
            if name in f:
                ok = bool(f[flag][i]) if flag in f else True
                out[flag] = ok
                out[name] = f[name][i]
        if "mask_png" in f:
            buf = f["mask_png"][i]
            out["mask"] = decode_png(buf) if len(buf) else None
        return out

    def iter_range(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        for i in range(start, self._len if stop is None else min(stop, self._len)):
            yield self[i]


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
            raise SchemaError(f"{path}: missing fields {missing} required by schema {SCHEMA_VERSION}")
        n = len(f["keypoints_2d"])
        shape = f["keypoints_2d"].shape
        if shape[1:] != (NUM_KEYPOINTS, 3):
            raise SchemaError(f"{path}: keypoints_2d has shape {shape}, expected (N, {NUM_KEYPOINTS}, 3)")
        bad = [k for k in REQUIRED if len(f[k]) != n]
        if bad:
            raise SchemaError(f"{path}: fields {bad} do not have {n} samples like keypoints_2d")
    return attrs, n
