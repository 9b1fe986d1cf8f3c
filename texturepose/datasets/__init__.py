"""Raw-dataset readers and converters to the HDF5 schema, one module per dataset.

Each ``convert_<name>(root, out_path, split, crop_res, **options) -> dict`` writes one schema file
per split atomically and returns counts (written, skipped by reason). :data:`CONVERTERS` lets
the preprocessing stage pick one by name. :mod:`fetch` downloads or links the raw files.

May import :mod:`texturepose.data` (HDF5 writer), :mod:`texturepose.geometry`,
:mod:`texturepose.keypoints` and :mod:`texturepose.files`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

#: dataset name -> (module, converter function)
_REGISTRY: dict[str, tuple[str, str]] = {
    "lsp": ("lsp", "convert_lsp"),
    "lspet": ("lspet", "convert_lspet"),
    "mpii": ("mpii", "convert_mpii"),
    "coco": ("coco", "convert_coco"),
    "h36m": ("h36m", "convert_h36m"),
    "h36m_spin": ("spin_npz", "convert_h36m_spin"),
    "spin_npz": ("spin_npz", "convert_spin_npz"),
    "3dpw": ("pw3d", "convert_pw3d"),
    "mpi_inf_3dhp": ("mpi_inf_3dhp", "convert_mpi_inf_3dhp"),
}
DATASETS = tuple(_REGISTRY)


def get_converter(name: str) -> Callable[..., dict[str, Any]]:
    """The converter of dataset ``name`` (imported lazily: cdflib etc. only when needed)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    module, func = _REGISTRY[name]
    return getattr(import_module(f"texturepose.datasets.{module}"), func)
