"""Choice of rasteriser back-end: the built-in PyTorch z-buffer (default) or, when installed and
asked for, PyTorch3D / nvdiffrast, all returning the same :class:`Fragments`."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from texturepose.render.rasterize import rasterize

BACKENDS = ("torch", "pytorch3d", "nvdiffrast")


def available_backends() -> list[str]:
    """Back-ends importable here (``torch`` always is)."""
    found = ["torch"]
    for name in BACKENDS[1:]:
        if importlib.util.find_spec(name) is not None:
            found.append(name)
    return found


def get_rasterizer(name: str = "torch") -> Callable:
    """The ``rasterize``-compatible function of back-end ``name``.

    Only ``torch`` is implemented in this project; ``pytorch3d`` and ``nvdiffrast`` are refused
    with a clear error (not installed here, or no adapter yet) rather than silently replaced.
    """
    if name not in BACKENDS:
        raise ValueError(f"render.backend must be one of {BACKENDS}, got {name!r}")
    if name == "torch":
        return rasterize
    if importlib.util.find_spec(name) is None:
        raise RuntimeError(
            f"render.backend={name!r} was requested but {name} is not installed; install it "
            "(it needs a CUDA build) or set render.backend: torch in params.yaml"
        )
    raise NotImplementedError(
        f"{name} is installed but its adapter to Fragments is not written yet; "
        "set render.backend: torch in params.yaml"
    )
