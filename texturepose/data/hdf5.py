"""Writer and reader of the HDF5 schema files (the fields: :mod:`texturepose.data.schema`).

Writers write to a temporary name and rename on success: a file either is complete or absent.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from texturepose.data.codecs import decode_jpeg, decode_png, encode_jpeg
from texturepose.data.schema import (
    INT_FIELDS,
    OPTIONAL_FLAGS,
    REQUIRED,
    SCHEMA_VERSION,
    STRING_FIELDS,
    SchemaError,
    validate,
)
from texturepose.files import commit_temp, new_temp_path
from texturepose.keypoints import NUM_KEYPOINTS
from texturepose.provenance import code_version

log = logging.getLogger(__name__)


class Hdf5Writer:
    """Writes one schema file atomically, streaming samples to disk in chunks.

    Use as a context manager; on an exception nothing is left at ``path`` (the temporary file is
    removed). Samples are dicts with the REQUIRED keys (``image_jpeg`` may be given as ``image``,
    an RGB array) and any optional fields; a field given for some samples only gets its
    ``has_*`` flag. Memory stays bounded by ``chunk_size`` samples, so full Human3.6M fits.
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
        chunk_size: int = 512,
        created: str | None = None,
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
            # Pass ``created`` for byte-reproducible files (e.g. the synthetic default).
            "created": created
            or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        if body_model:
            self.attrs["body_model"] = body_model
        self.attrs.update(extra_attrs or {})
        self.chunk_size = int(chunk_size)
        self.pending: list[dict[str, Any]] = []
        self.num_written = 0
        self.skipped: dict[str, int] = {}
        self._tmp: Path | None = None  # made when the first chunk is written
        self._file: h5py.File | None = None

    def __len__(self) -> int:
        return self.num_written + len(self.pending)

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
        self.pending.append(sample)
        if len(self.pending) >= self.chunk_size:
            self._flush()

    def skip(self, reason: str) -> None:
        """Count a sample that could not be read, by reason (reported at close)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def __enter__(self) -> Hdf5Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Drop everything written so far (the final path is never touched)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def close(self) -> Path:
        try:
            self._flush()
            if self.num_written == 0:
                raise SchemaError(
                    f"no readable samples for {self.path}; skipped: {self.skipped or 'none'}"
                )
            f = self._file
            assert f is not None
            for k, v in self.attrs.items():
                f.attrs[k] = v
            f.attrs["num_samples"] = self.num_written
            f.attrs["skipped"] = int(sum(self.skipped.values()))
            f.attrs["skipped_reasons"] = repr(self.skipped)
            f.close()
            self._file = None
            commit_temp(self._tmp, self.path)
            self._tmp = None
        finally:
            self.abort()
        n_skip = sum(self.skipped.values())
        log.info("wrote %s: %d samples, %d skipped %s", self.path, self.num_written, n_skip,
                 self.skipped or "")
        return self.path

    def _append(self, name: str, data: np.ndarray, fill_flag: bool = False) -> None:
        f = self._file
        assert f is not None
        n0 = self.num_written
        if name not in f:
            kwargs: dict[str, Any] = {}
            if data.dtype == object:
                kwargs["dtype"] = data.dtype if name in STRING_FIELDS else h5py.vlen_dtype(np.uint8)
                if name in STRING_FIELDS:
                    kwargs["dtype"] = h5py.string_dtype("utf-8")
            else:
                kwargs["dtype"] = data.dtype
                if data.ndim > 1:
                    kwargs["compression"] = "gzip"
            ds = f.create_dataset(
                name, shape=(n0,) + data.shape[1:], maxshape=(None,) + data.shape[1:],
                chunks=(max(1, min(self.chunk_size, 256)),) + data.shape[1:], **kwargs
            )
            if fill_flag and n0:
                ds[:n0] = False
        ds = f[name]
        ds.resize(n0 + len(data), axis=0)
        if data.dtype == object and name not in STRING_FIELDS:
            for i, buf in enumerate(data):
                ds[n0 + i] = buf
        else:
            ds[n0:] = data

    def _flush(self) -> None:
        if not self.pending:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = new_temp_path(self.path)
            self._file = h5py.File(self._tmp, "w")
        chunk = self.pending
        n = len(chunk)
        u8 = [np.asarray(s["image_jpeg"], dtype=np.uint8) for s in chunk]
        self._append("image_jpeg", _object_array(u8))
        if any("mask_png" in s for s in chunk) or "mask_png" in self._file:
            masks = [np.asarray(s.get("mask_png", np.zeros(0, np.uint8)), np.uint8) for s in chunk]
            self._append("mask_png", _object_array(masks))
        for name in STRING_FIELDS:
            self._append(name, np.array([str(s[name]) for s in chunk], dtype=object))
        for name in INT_FIELDS:
            self._append(name, np.array([int(s[name]) for s in chunk], np.int64))
        self._append("crop_center", np.stack([s["crop_center"] for s in chunk]).astype(np.float32))
        self._append("crop_size", np.array([s["crop_size"] for s in chunk], np.float32))
        kp2d = np.stack([s["keypoints_2d"] for s in chunk]).astype(np.float32)
        self._append("keypoints_2d", kp2d)
        self._append("visible", np.stack([s["visible"] for s in chunk]).astype(np.uint8))
        flags: dict[str, np.ndarray] = {}
        for name, flag in OPTIONAL_FLAGS.items():
            present = np.array([name in s and s[name] is not None for s in chunk], bool)
            if not present.any() and name not in self._file:
                continue
            ref = next((np.asarray(s[name]) for s, p in zip(chunk, present, strict=True) if p),
                       None)
            shape = ref.shape if ref is not None else self._file[name].shape[1:]
            data = np.zeros((n,) + tuple(shape), np.float32)
            for i, (s, p) in enumerate(zip(chunk, present, strict=True)):
                if p:
                    data[i] = s[name]
            self._append(name, data)
            flags[flag] = flags.get(flag, present) & present if flag in flags else present
        for flag, present in flags.items():
            self._append(flag, present, fill_flag=True)
        self.num_written += n
        self.pending = []


def _object_array(items: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, it in enumerate(items):
        out[i] = it
    return out


class Hdf5Dataset(Sequence):
    """Read-only access to one schema file; opens the file lazily (safe with worker processes).

    ``ds[i]`` returns a dict of numpy arrays with the decoded RGB crop under ``image``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._cache: dict[str, np.ndarray] | None = None
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
        state["_cache"] = None
        return state

    def column(self, name: str) -> np.ndarray:
        """A whole field, e.g. ``column('subject')`` (strings decoded)."""
        data = self.file[name][()]
        if name in STRING_FIELDS:
            data = np.array([x.decode() if isinstance(x, bytes) else x for x in data], dtype=object)
        return data

    def has(self, name: str) -> bool:
        return name in self.file

    def _columns(self) -> dict[str, np.ndarray]:
        """Every field but the encoded images and masks, read once (per process) into memory:
        per-item reads then touch only the JPEG bytes (h5py's per-field overhead dominates
        otherwise)."""
        if self._cache is None:
            f = self.file
            cols: dict[str, np.ndarray] = {}
            for name in (*REQUIRED, *OPTIONAL_FLAGS, *set(OPTIONAL_FLAGS.values())):
                if name in f and name != "image_jpeg":
                    cols[name] = self.column(name)
            self._cache = cols
        return self._cache

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        if not 0 <= i < self._len:
            raise IndexError(f"sample {i} out of range for {self.path} ({self._len} samples)")
        f = self.file
        cols = self._columns()
        try:
            image = decode_jpeg(f["image_jpeg"][i])
        except ValueError as e:
            raise self._damaged(i, "image_jpeg", e) from e
        out: dict[str, Any] = {"index": i, "image": image}
        for name in ("crop_center", "crop_size", "keypoints_2d", "visible", "frame", "person",
                     *STRING_FIELDS):
            out[name] = cols[name][i]
        for name, flag in OPTIONAL_FLAGS.items():
            if name in cols:
                out[flag] = bool(cols[flag][i]) if flag in cols else True
                out[name] = cols[name][i]
        if "mask_png" in f:
            buf = f["mask_png"][i]
            out["mask"] = decode_png(buf) if len(buf) else None
            if len(buf) and out["mask"] is None:
                raise self._damaged(i, "mask_png", ValueError("corrupt PNG bytes"))
        return out

    def _damaged(self, i: int, field: str, error: Exception) -> SchemaError:
        """The error for sample ``i`` whose encoded ``field`` does not decode: file, sample,
        field and the stage to rerun."""
        stage = "synthesize" if self.attrs.get("dataset") == "synthetic" else "preprocess_datasets"
        return SchemaError(
            f"{self.path}: sample {i} ({field}) does not decode ({error}): the file is damaged; "
            f"delete it and rerun the stage that wrote it (dvc repro {stage})"
        )

    def iter_range(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        for i in range(start, self._len if stop is None else min(stop, self._len)):
            yield self[i]
