"""Clothing and skin textures painted in UV space from the body model's part segmentation.

The UV layout is rasterised once (:class:`~texturepose.render.texture.UVAtlas`) into a texel map
of *regions* (skin, hair, shirt parts, trousers parts, shoes) derived from ``face_parts`` and,
for hair and eyes, from each texel's 3D position on the neutral rest mesh. Texels outside every
UV triangle take the region of the nearest surface texel, so bilinear lookups at UV seams never
mix in a foreign colour. A subject's texture is then filled region by region with procedural
patterns (solid, stripes, checks, noise, dots) in its own colours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from texturepose.body.base import BodyModel
from texturepose.keypoints import INDEX
from texturepose.render.texture import UVAtlas, surface_points
from texturepose.synthetic.backgrounds import value_noise
from texturepose.synthetic.subjects import Subject

log = logging.getLogger(__name__)

#: Texel regions, in label order.
REGIONS = ("head", "hair", "eyes", "neck", "torso", "upperarm", "forearm", "hand", "pelvis",
           "thigh", "shin", "foot")
_PART_TO_REGION = {
    "head": "head", "neck": "neck", "torso": "torso", "pelvis": "pelvis",
    "l_upperarm": "upperarm", "r_upperarm": "upperarm", "l_forearm": "forearm",
    "r_forearm": "forearm", "l_hand": "hand", "r_hand": "hand", "l_thigh": "thigh",
    "r_thigh": "thigh", "l_shin": "shin", "r_shin": "shin", "l_foot": "foot", "r_foot": "foot",
}  # fmt: skip


@dataclass
class TextureLayout:
    """Per-texel region labels ``(R, R)`` int64 (indices into :data:`REGIONS`), every texel
    labelled (seams filled from the nearest surface texel), and the surface mask ``(R, R)``."""

    region: np.ndarray
    surface: np.ndarray

    @property
    def resolution(self) -> int:
        return int(self.region.shape[0])


def build_layout(body: BodyModel, resolution: int = 512) -> TextureLayout:
    """Rasterise the body's UV layout and label every texel with a region."""
    if body.uv is None or body.face_uv is None:
        raise ValueError(f"body model {body.name!r} has no UV coordinates: synthetic textures "
                         "need a UV layout (use Anny, or SMPL with body.uv_path)")
    missing = [p for p in body.part_names if p not in _PART_TO_REGION]
    if missing:
        raise ValueError(f"body model {body.name!r} has part labels {missing} that the texture "
                         f"painter does not know; known: {sorted(_PART_TO_REGION)}")
    atlas = UVAtlas.build(body.uv, body.face_uv, body.faces, resolution)
    face = atlas.face_index
    surface = (face >= 0).numpy()
    lut = torch.tensor([REGIONS.index(_PART_TO_REGION[p]) for p in body.part_names])
    region = lut[body.face_parts.cpu()[face.clamp(min=0)]].numpy()
    # Hair and eyes from the texels' 3D points on the neutral rest mesh.
    with torch.no_grad():
        rest = body(body.rest_rotmats(1), body.mean_shape[None])
    idx = atlas.texel_index
    pts = surface_points(rest.vertices, body.faces, atlas.texel_face, atlas.texel_bary)[0].numpy()
    kp = rest.keypoints[0].numpy()
    eye_y = kp[[INDEX["l_eye"], INDEX["r_eye"]], 1].mean()
    eye_z = kp[[INDEX["l_eye"], INDEX["r_eye"]], 2].mean()
    ear_y = kp[[INDEX["l_ear"], INDEX["r_ear"]], 1].mean()
    ear_z = kp[[INDEX["l_ear"], INDEX["r_ear"]], 2].mean()
    flat = region.reshape(-1)
    head = flat[idx.numpy()] == REGIONS.index("head")
    y, z = pts[:, 1], pts[:, 2]
    scalp = head & ((y > eye_y + 0.055) | ((z < ear_z - 0.01) & (y > ear_y - 0.04)))
    d_eye = np.minimum(np.linalg.norm(pts - kp[INDEX["l_eye"]], axis=1),
                       np.linalg.norm(pts - kp[INDEX["r_eye"]], axis=1))
    eyes = head & (d_eye < 0.013) & (z > eye_z - 0.01)
    sel = flat[idx.numpy()]
    sel = np.where(scalp, REGIONS.index("hair"), sel)
    sel = np.where(eyes, REGIONS.index("eyes"), sel)
    flat[idx.numpy()] = sel
    region = flat.reshape(region.shape)
    # Fill the texels off the surface with the nearest surface texel's label.
    _, (iy, ix) = ndimage.distance_transform_edt(~surface, return_indices=True)
    region = region[iy, ix]
    log.info("texture layout %dx%d: %.1f%% surface texels", resolution, resolution,
             100.0 * surface.mean())
    return TextureLayout(region=region.astype(np.int64), surface=surface)


def pattern(kind: str, colours: np.ndarray, resolution: int,
            rng: np.random.Generator) -> np.ndarray:
    """A ``(R, R, 3)`` float32 fabric pattern in UV space from two colours."""
    r = resolution
    v, u = np.mgrid[0:r, 0:r].astype(np.float32) / r
    c0, c1 = colours[0], colours[1]
    if kind == "solid":
        mix = np.zeros((r, r), np.float32)
    elif kind == "stripes":
        angle, freq = rng.uniform(0, np.pi), rng.uniform(8, 30)
        s = (np.cos(angle) * u + np.sin(angle) * v) * freq
        mix = ((s % 1.0) < rng.uniform(0.3, 0.6)).astype(np.float32)
    elif kind == "checks":
        freq = rng.uniform(8, 24)
        mix = ((np.floor(u * freq) + np.floor(v * freq)) % 2).astype(np.float32)
    elif kind == "noise":
        mix = (value_noise(r, r, rng, octaves=3, base_cells=8) > 0.5).astype(np.float32)
    elif kind == "dots":
        freq, rad = rng.uniform(10, 30), rng.uniform(0.15, 0.35)
        du, dv = (u * freq) % 1.0 - 0.5, (v * freq) % 1.0 - 0.5
        mix = (du * du + dv * dv < rad * rad).astype(np.float32)
    else:
        raise ValueError(f"unknown pattern {kind!r}")
    return c0 * (1 - mix[..., None]) + c1 * mix[..., None]


def paint_texture(layout: TextureLayout, subject: Subject) -> np.ndarray:
    """The subject's RGB uint8 texture ``(R, R, 3)`` for the layout."""
    rng = np.random.default_rng([subject.seed, 1])
    r = layout.resolution
    skin_grain = 1.0 + 0.06 * (value_noise(r, r, rng, octaves=3, base_cells=16) - 0.5)
    skin = subject.skin * skin_grain[..., None]
    shirt = pattern(subject.shirt_pattern, subject.shirt_colours, r, rng)
    trousers = pattern(subject.trousers_pattern, subject.trousers_colours, r, rng)
    fabric = 1.0 + 0.1 * (value_noise(r, r, rng, octaves=2, base_cells=64) - 0.5)
    shirt, trousers = shirt * fabric[..., None], trousers * fabric[..., None]
    fills = {
        "head": skin, "hair": np.broadcast_to(subject.hair, (r, r, 3)),
        "eyes": np.broadcast_to(np.float32([45, 30, 25]), (r, r, 3)), "neck": skin,
        "torso": shirt, "upperarm": shirt, "forearm": skin if subject.short_sleeves else shirt,
        "hand": skin, "pelvis": trousers, "thigh": trousers,
        "shin": skin if subject.shorts else trousers,
        "foot": np.broadcast_to(subject.shoe_colour, (r, r, 3)),
    }  # fmt: skip
    table = np.stack([np.broadcast_to(fills[name], (r, r, 3)) for name in REGIONS])  # (G,R,R,3)
    rows, cols = np.mgrid[0:r, 0:r]
    tex = table[layout.region, rows, cols]
    return np.clip(tex, 0, 255).astype(np.uint8)
