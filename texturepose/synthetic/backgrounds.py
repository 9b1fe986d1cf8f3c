"""Procedural backgrounds: a wall and a floor with gradients, value noise and random shapes.

One background per (subject, camera) plays the role of Human3.6M's static room seen by each
camera. Everything is drawn from the given generator, so a seed gives the same picture.
"""

from __future__ import annotations

import cv2
import numpy as np

from texturepose.synthetic.subjects import _colour


def value_noise(height: int, width: int, rng: np.random.Generator, octaves: int = 4,
                base_cells: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1], ``(height, width)`` float32: random grids of growing
    resolution, upsampled bicubically and summed with halving amplitudes."""
    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base_cells * 2**o
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    return np.clip((out - out.min()) / max(float(np.ptp(out)), 1e-6), 0.0, 1.0)


def make_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 ``(height, width, 3)`` room-like background."""
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    wall_top, wall_bottom = _colour(rng), _colour(rng)
    wall = wall_top * (1 - yy) + wall_bottom * yy
    horizon = int(height * rng.uniform(0.55, 0.8))
    floor_a, floor_b = _colour(rng), _colour(rng)
    img = np.broadcast_to(wall, (height, width, 3)).copy()
    # Floor: two colours mixed by noise, or tiles.
    fh = height - horizon
    if rng.random() < 0.5:
        mix = value_noise(fh, width, rng)[..., None]
    else:
        tile = int(rng.integers(20, 80))
        ty, tx = np.mgrid[0:fh, 0:width]
        mix = (((ty // tile) + (tx // tile)) % 2).astype(np.float32)[..., None]
    img[horizon:] = floor_a * (1 - mix) + floor_b * mix
    # Random shapes on the wall (furniture, posters, windows).
    for _ in range(int(rng.integers(3, 10))):
        colour = tuple(float(c) for c in _colour(rng))
        kind = rng.integers(3)
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, horizon + 1))
        if kind == 0:
            x1, y1 = x0 + int(rng.integers(30, width // 3)), y0 + int(rng.integers(30, height // 3))
            cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x0, y0), int(rng.integers(15, width // 8)), colour, -1)
        else:
            x1, y1 = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.line(img, (x0, y0), (x1, y1), colour, int(rng.integers(2, 12)))
    # Low-frequency illumination and fine grain so that no region is perfectly flat.
    light = 0.75 + 0.35 * value_noise(height, width, rng, octaves=2, base_cells=2)[..., None]
    grain = 1.0 + 0.08 * (value_noise(height, width, rng, octaves=2, base_cells=64)[..., None]
                          - 0.5)
    img = np.clip(img * light * grain, 0, 255)
    return cv2.GaussianBlur(img, (0, 0), 1.0).astype(np.uint8)
