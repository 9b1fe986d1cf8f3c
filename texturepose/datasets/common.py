"""What every dataset converter shares: raw samples, keypoint cleaning, image loading, and the loop
that crops, counts skips and writes one schema file per split through :class:`Hdf5Writer`.

Readers yield :class:`RawSample` (or :class:`Skip` for an annotation that cannot be used); the
converter loop loads each image once, crops it, and turns every failure into a counted reason.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from texturepose.data.hdf5 import Hdf5Writer
from texturepose.data.schema import SchemaError
from texturepose.geometry.crops import box_from_keypoints, crop_image
from texturepose.keypoints import NUM_KEYPOINTS

log = logging.getLogger(__name__)


class ReaderError(ValueError):
    """Raw dataset files that cannot be read; the message names the file and what to do."""


@dataclass
class RawSample:
    """One person in one image, annotations already in the keypoint superset.

    ``center``/``size`` is the square crop box in original pixels, or ``None`` for a box around
    the keypoints (SPIN's margin) computed after keypoints outside the image are dropped.
    ``keypoints`` is (K, 3): x, y in original-image pixels and a confidence (1 = annotated).
    ``image`` holds decoded RGB pixels (video frames); otherwise ``image_path`` is read lazily.
    """

    keypoints: np.ndarray
    visible: np.ndarray
    center: np.ndarray | None  # None: box around the keypoints once they are cleaned
    size: float
    image_name: str
    image_path: Path | None = None
    image: np.ndarray | None = None
    subject: str = ""
    sequence: str = ""
    camera: str = ""
    frame: int = 0
    person: int = 0
    optional: dict[str, Any] = field(default_factory=dict)


@dataclass
class Skip:
    """An annotation a reader cannot use; counted under ``reason`` (short, stable wording)."""

    reason: str
    detail: str = ""


class CorruptImageError(ReaderError):
    """An image that decodes, but only with libjpeg's corrupt-data warnings: its pixels are partly
    garbage, so the sample is skipped like an unreadable one."""


# libjpeg's warnings for damaged entropy-coded data or a cut file (JWRN_* in jerror.h); the
# decoder goes on and returns an image with garbage or grey blocks where the damage is.
JPEG_DAMAGE_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file")
_STDERR_LOCK = threading.Lock()  # fd 2 is process-wide: one captured decode at a time


def decode_with_warnings(data: np.ndarray) -> tuple[np.ndarray | None, str]:
    """``cv2.imdecode`` (BGR) and whatever libjpeg printed on stderr meanwhile.

    OpenCV has no API for libjpeg's warnings (it prints them on file descriptor 2 and returns
    the image), so fd 2 is pointed at a temporary file for the decode; text that is not a JPEG
    warning is passed on to the real stderr."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2: decode unchecked
            return cv2.imdecode(data, cv2.IMREAD_COLOR), ""
        try:
            os.dup2(sink.fileno(), 2)
            img = cv2.imdecode(data, cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode("utf-8", errors="replace")
    other = "".join(line for line in text.splitlines(keepends=True)
                    if not line.startswith(JPEG_DAMAGE_WARNINGS))
    if other:
        os.write(2, other.encode())
    return img, text


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to RGB uint8, or raise :class:`ReaderError` saying which file.

    A JPEG without its end marker is refused: OpenCV would decode the truncated file into a
    partly grey picture without an error. So is a JPEG whose decoding makes libjpeg warn of
    corrupt data (:class:`CorruptImageError`): OpenCV returns it with garbage blocks."""
    if not path.is_file():
        raise ReaderError(f"missing image {path}")
    data = np.fromfile(path, np.uint8)
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    if is_jpeg and b"\xff\xd9" not in data[-64:].tobytes():
        raise ReaderError(f"unreadable image {path} (truncated JPEG: no end marker)")
    if is_jpeg:
        img, warnings = decode_with_warnings(data)
        damage = [line.strip() for line in warnings.splitlines()
                  if line.startswith(JPEG_DAMAGE_WARNINGS)]
        if img is not None and damage:
            raise CorruptImageError(
                f"corrupt image {path} (it decodes, but libjpeg reports {damage[0]!r}: part of "
                "the picture is garbage); replace it with a good copy (fetch or extract the "
                "dataset again) and rerun the preprocess stage")
    else:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise ReaderError(f"unreadable image {path} (corrupt or not an image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def clean_keypoints(
    kp: np.ndarray,
    visible: np.ndarray,
    width: float | None = None,
    height: float | None = None,
    tolerance: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Zero the confidence and visibility of NaN/inf points and, given the image size, of points
    farther than ``tolerance`` (fraction of the image side) outside the image.

    Annotated points just outside the frame are kept (LSP annotates truncated limbs a little
    outside the image); points far outside are annotation errors. Unannotated points get x = y = 0.
    """
    kp = np.array(kp, dtype=np.float32, copy=True)
    visible = np.array(visible, dtype=np.uint8, copy=True)
    bad = ~np.isfinite(kp).all(-1)
    if width is not None and height is not None:
        x, y = np.nan_to_num(kp[:, 0]), np.nan_to_num(kp[:, 1])
        tx, ty = tolerance * width, tolerance * height
        bad |= (x < -tx) | (y < -ty) | (x > width - 1 + tx) | (y > height - 1 + ty)
    kp[bad, 2] = 0.0
    unknown = kp[:, 2] <= 0
    kp[unknown] = 0.0
    visible[unknown] = 0
    return kp, visible


def crop_sample(raw: RawSample, image: np.ndarray, crop_res: int) -> dict[str, Any]:
    """Turn a raw sample and its decoded image into a writer sample (crop + annotations)."""
    if raw.keypoints.shape != (NUM_KEYPOINTS, 3):
        raise SchemaError(f"{raw.image_name}: keypoints {raw.keypoints.shape} not superset")
    crop = crop_image(image, raw.center, raw.size, crop_res)
    sample = {
        "image": crop,
        "crop_center": np.asarray(raw.center, np.float32),
        "crop_size": float(raw.size),
        "keypoints_2d": raw.keypoints.astype(np.float32),
        "visible": raw.visible.astype(np.uint8),
        "image_name": raw.image_name,
        "subject": raw.subject,
        "sequence": raw.sequence,
        "camera": raw.camera,
        "frame": int(raw.frame),
        "person": int(raw.person),
    }
    sample.update(raw.optional)
    return sample


@dataclass
class SplitInfo:
    """Dataset-level provenance recorded in the file attributes."""

    dataset: str
    split: str
    source: str
    licence: str
    body_model: str | None = None
    extra_attrs: dict[str, Any] = field(default_factory=dict)


def _make_writer(out_path: str | os.PathLike, info: SplitInfo, crop_res: int) -> Hdf5Writer:
    kwargs = dict(dataset=info.dataset, split=info.split, crop_res=crop_res, source=info.source,
                  licence=info.licence, body_model=info.body_model, extra_attrs=info.extra_attrs)
    return Hdf5Writer(out_path, **kwargs)


def write_split(
    samples: Iterable[RawSample | Skip],
    out_path: str | os.PathLike,
    info: SplitInfo,
    crop_res: int,
    total: int | None = None,
    limit: int | None = None,
    box_margin: float = 1.2,
    min_keypoints: int = 2,
) -> dict[str, Any]:
    """Crop and write ``samples`` atomically to ``out_path``; return counts and skip reasons.

    Unreadable images and unusable annotations are skipped and counted by reason; the file is
    written only when at least one sample is good (else :class:`SchemaError`, nothing written).
    """
    writer = _make_writer(out_path, info, crop_res)
    cache: tuple[Path | None, np.ndarray | ReaderError | None] = (None, None)  # shared image
    examples: dict[str, str] = {}
    n = 0
    for item in tqdm(samples, total=total, desc=f"{info.dataset}/{info.split}", unit="sample",
                     disable=None):
        if limit is not None and n >= limit:
            break
        if isinstance(item, Skip):
            writer.skip(item.reason)
            examples.setdefault(item.reason, item.detail)
            continue
        try:
            if item.image is not None:
                image = item.image
            else:
                if cache[0] != item.image_path:
                    try:
                        cache = (item.image_path, read_image(item.image_path))
                    except ReaderError as e:
                        cache = (item.image_path, e)
                if isinstance(cache[1], ReaderError):
                    raise cache[1]
                image = cache[1]
            h, w = image.shape[:2]
            item.keypoints, item.visible = clean_keypoints(item.keypoints, item.visible, w, h)
            n_valid = int((item.keypoints[:, 2] > 0).sum())
            # a box from keypoints needs two points to have an extent
            need = max(min_keypoints, 2) if item.center is None else min_keypoints
            if n_valid < need:
                writer.skip("too few valid keypoints")
                examples.setdefault("too few valid keypoints",
                                    f"{item.image_name}: {n_valid} < {need}")
                continue
            if item.center is None:
                item.center, item.size = valid_box(item.keypoints, box_margin)
            writer.add(crop_sample(item, image, crop_res))
            n += 1
        except ReaderError as e:
            if isinstance(e, CorruptImageError):
                reason = "corrupt image"
            else:
                reason = "missing image" if "missing image" in str(e) else "unreadable image"
            writer.skip(reason)
            examples.setdefault(reason, str(e))
    for reason, count in writer.skipped.items():
        log.warning("%s/%s: skipped %d samples: %s (e.g. %s)", info.dataset, info.split, count,
                    reason, examples.get(reason, ""))
    writer.close()
    return {
        "dataset": info.dataset,
        "split": info.split,
        "path": str(out_path),
        "written": n,
        "skipped": int(sum(writer.skipped.values())),
        "skipped_reasons": dict(writer.skipped),
        "skipped_examples": examples,
    }


def valid_box(kp: np.ndarray, margin: float = 1.2, min_points: int = 2) -> tuple[np.ndarray, float]:
    """Crop box around the annotated keypoints (SPIN: 1.2 x the keypoints' extent)."""
    valid = kp[:, 2] > 0
    if valid.sum() < min_points:
        raise ValueError(f"only {int(valid.sum())} annotated keypoints (need {min_points})")
    return box_from_keypoints(kp[:, :2], valid, margin)


def require_file(path: Path, what: str, hint: str) -> Path:
    """Fail early and clearly when an expected dataset file is absent."""
    if not path.is_file():
        raise ReaderError(f"{what} not found at {path}; {hint}")
    return path



def load_mat(path: Path, hint: str) -> dict[str, Any]:
    """Read a MATLAB file (v5 through scipy, v7.3/HDF5 through h5py: arrays as h5py sees them)
    or raise :class:`ReaderError` naming the file."""
    import h5py
    import scipy.io
    from scipy.io.matlab import MatReadError

    require_file(path, "annotation file", hint)
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            return {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    try:
        return scipy.io.loadmat(str(path), squeeze_me=False)
    except (MatReadError, ValueError, OSError, TypeError, NotImplementedError) as e:
        raise ReaderError(f"{path}: not a readable MATLAB file ({e}); {hint}") from e


def check_shape(arr: Any, expected: tuple[int | None, ...], path: Path, name: str, hint: str
                ) -> np.ndarray:
    """Raise :class:`ReaderError` naming file and field unless ``arr`` has ``expected`` shape
    (``None`` = any length)."""
    arr = np.asarray(arr)
    ok = arr.ndim == len(expected) and all(
        e is None or e == s for e, s in zip(expected, arr.shape, strict=False)
    )
    if not ok:
        want = "x".join("N" if e is None else str(e) for e in expected)
        raise ReaderError(
            f"{path}: field '{name}' has shape {'x'.join(map(str, arr.shape))}, expected {want}; "
            f"{hint}"
        )
    return arr
