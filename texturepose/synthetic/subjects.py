"""Synthetic subjects: body phenotype, skin tone, clothing choices and lighting, from a seed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Skin tones (sRGB 0-255), light to dark, roughly spanning the Fitzpatrick scale.
SKIN_TONES = np.array(
    [
        [255, 224, 196], [241, 194, 167], [224, 172, 138], [198, 144, 110],
        [172, 118, 84], [141, 93, 62], [110, 70, 45], [80, 52, 35],
    ],
    dtype=np.float32,
)  # fmt: skip
HAIR_COLOURS = np.array(
    [[30, 22, 18], [70, 45, 25], [120, 80, 40], [200, 160, 90], [140, 60, 30], [160, 160, 160]],
    dtype=np.float32,
)
#: Ranges of Anny's six phenotypes (gender, age, muscle, weight, height, proportions) sampled
#: uniformly when no population model is given (on Anny's age scale 0.5 is about 13 years,
#: 0.77 18 years and 0.83 64 years; the generator draws from the body's population prior).
PHENOTYPE_RANGES = np.array(
    [[0.0, 1.0], [0.45, 0.85], [0.25, 0.75], [0.25, 0.75], [0.25, 0.75], [0.3, 0.7]],
    dtype=np.float32,
)
PATTERNS = ("solid", "stripes", "checks", "noise", "dots")


@dataclass(frozen=True)
class Subject:
    """Everything that stays fixed for one synthetic person.

    name: identity string written to the HDF5 ``subject`` field.
    phenotype: (6,) shape parameters of the body model, in [0, 1].
    skin, hair: RGB colours in [0, 255].
    shirt_pattern / trousers_pattern: one of :data:`PATTERNS`; the colours are (2, 3) arrays.
    short_sleeves / shorts: whether forearms / shins show skin.
    light_dir: (3,) unit vector towards the light in the world frame (Y up).
    ambient: ambient light level in [0, 1].
    seed: seed of the subject's own random stream (textures, backgrounds).
    """

    name: str
    phenotype: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    shirt_pattern: str
    shirt_colours: np.ndarray
    trousers_pattern: str
    trousers_colours: np.ndarray
    shoe_colour: np.ndarray
    short_sleeves: bool
    shorts: bool
    light_dir: np.ndarray
    ambient: float
    seed: int


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random clothing colour from HSV: any hue, moderate saturation, any value."""
    import cv2

    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0.1, 0.9) * 255, rng.uniform(0.15, 0.95)
                      * 255]]], dtype=np.float32).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def sample_subject(name: str, rng: np.random.Generator,
                   phenotype: np.ndarray | None = None) -> Subject:
    """One subject drawn from ``rng`` (consumes a fixed number of draws); ``phenotype``: its
    body shape (default: uniform in :data:`PHENOTYPE_RANGES`)."""
    lo, hi = PHENOTYPE_RANGES[:, 0], PHENOTYPE_RANGES[:, 1]
    uniform = (lo + (hi - lo) * rng.random(6)).astype(np.float32)
    phenotype = uniform if phenotype is None else np.asarray(phenotype, np.float32)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.06, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))]
    shirt = np.stack([_colour(rng), _colour(rng)])
    trousers = np.stack([_colour(rng), _colour(rng)])
    shoes = _colour(rng) * 0.6
    # Light from above and in front-ish of a random side; the ambient term keeps the back lit.
    azim, elev = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(25), np.radians(70))
    light = np.array([np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)])
    return Subject(
        name=name,
        phenotype=phenotype,
        skin=np.clip(skin, 0, 255).astype(np.float32),
        hair=hair,
        shirt_pattern=PATTERNS[rng.integers(len(PATTERNS))],
        shirt_colours=shirt,
        trousers_pattern=PATTERNS[rng.integers(len(PATTERNS))],
        trousers_colours=trousers,
        shoe_colour=shoes,
        short_sleeves=bool(rng.random() < 0.4),
        shorts=bool(rng.random() < 0.25),
        light_dir=light.astype(np.float32),
        ambient=float(rng.uniform(0.35, 0.55)),
        seed=int(rng.integers(2**31 - 1)),
    )


def sample_subjects(names: list[str], seed: int,
                    shapes: Callable[[int], np.ndarray] | None = None) -> list[Subject]:
    """Subjects for ``names``; subject ``i`` depends only on ``seed`` and ``i``. ``shapes(i)``
    gives subject ``i``'s body shape (e.g. a draw from the body model's population prior,
    ``BodyModel.sample_shapes``); by default uniform in :data:`PHENOTYPE_RANGES`."""
    return [sample_subject(n, np.random.default_rng([seed, i]), shapes(i) if shapes else None)
            for i, n in enumerate(names)]
