"""Human3.6M-like calibrated cameras: a ring of cameras around the subject, aimed at the pelvis.

World frame: the body's canonical frame (metres, Y up, the subject's root at the origin, the
floor at ``floor_y``). Extrinsics are OpenCV world->camera ``[R | t]`` (x right, y down, z
forward), intrinsics in pixels of the full ``width x height`` frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RigConfig:
    """Ranges of the camera placement (Human3.6M: 4 cameras, ~4.5 m away, ~1.5 m high,
    f ~ 1145 px for 1000x1002 frames)."""

    num_cameras: int = 4
    width: int = 1000
    height: int = 1002
    focal: float = 1145.0
    focal_jitter: float = 0.02  # relative
    principal_jitter: float = 5.0  # pixels
    radius: tuple[float, float] = (4.0, 5.0)
    camera_height: tuple[float, float] = (1.2, 1.8)  # above the floor
    azimuth_jitter_deg: float = 12.0
    target_jitter: float = 0.1  # metres, where the camera aims around the pelvis


def look_at(position: np.ndarray, target: np.ndarray,
            up: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV extrinsics ``R (3, 3)``, ``t (3,)`` of a camera at ``position`` looking at
    ``target`` with the world ``up`` (default +Y) appearing up in the image."""
    up = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, np.float64)
    z = np.asarray(target, np.float64) - np.asarray(position, np.float64)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    norm = np.linalg.norm(x)
    if norm < 1e-8:
        raise ValueError("look_at: viewing direction is parallel to the up vector")
    x /= norm
    y = np.cross(z, x)  # image y points down
    r = np.stack([x, y, z])
    return r, -r @ np.asarray(position, np.float64)


def make_rig(config: RigConfig, rng: np.random.Generator,
             floor_y: float) -> tuple[np.ndarray, np.ndarray]:
    """Cameras spread evenly in azimuth (with jitter) around the origin.

    Returns ``K (C, 3, 3)`` and ``Rt (C, 3, 4)`` float32.
    """
    c = config.num_cameras
    if c < 1:
        raise ValueError(f"num_cameras must be >= 1, got {c}")
    base = rng.uniform(0, 2 * np.pi)
    jit = np.radians(config.azimuth_jitter_deg)
    ks, rts = [], []
    for i in range(c):
        az = base + 2 * np.pi * i / c + rng.uniform(-jit, jit)
        radius = rng.uniform(*config.radius)
        pos = np.array([radius * np.sin(az), floor_y + rng.uniform(*config.camera_height),
                        radius * np.cos(az)])
        target = rng.uniform(-config.target_jitter, config.target_jitter, 3)
        r, t = look_at(pos, target)
        f = config.focal * (1 + rng.uniform(-config.focal_jitter, config.focal_jitter))
        cx = config.width / 2 + rng.uniform(-config.principal_jitter, config.principal_jitter)
        cy = config.height / 2 + rng.uniform(-config.principal_jitter, config.principal_jitter)
        ks.append([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
        rts.append(np.concatenate([r, t[:, None]], axis=1))
    return np.asarray(ks, np.float32), np.asarray(rts, np.float32)
