"""Image bytes inside the HDF5 files: RGB crops as JPEG, body masks as PNG (OpenCV codecs)."""

from __future__ import annotations

import cv2
import numpy as np


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 -> JPEG bytes (1-D uint8)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.reshape(-1)


def decode_jpeg(buf: np.ndarray) -> np.ndarray:
    """JPEG bytes -> RGB ``(H, W, 3)`` uint8; ValueError when they do not decode."""
    img = cv2.imdecode(np.asarray(buf, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("corrupt JPEG bytes")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def encode_png(mask: np.ndarray) -> np.ndarray:
    """A uint8 mask ``(H, W)`` -> PNG bytes (lossless)."""
    ok, buf = cv2.imencode(".png", mask.astype(np.uint8))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.reshape(-1)


def decode_png(buf: np.ndarray) -> np.ndarray:
    """PNG bytes -> the mask as stored (None when they do not decode)."""
    return cv2.imdecode(np.asarray(buf, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
