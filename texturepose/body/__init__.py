"""Body models behind one interface (:class:`texturepose.body.base.BodyModel`): Anny, SMPL, SMPL-X,
STAR.

Everything specific to one model (Anny's phenotypes, its skinning-free keypoint path, SMPL's
files) lives here; other layers use only the interface. May import :mod:`texturepose.geometry`,
:mod:`texturepose.keypoints` and :mod:`texturepose.files`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from texturepose.body.base import BodyModel, BodyModelError, BodyOutput

BODY_MODELS = ("anny", "smpl", "smplx", "star")


def build_body_model(name: str = "anny", **paths: str | os.PathLike | None) -> BodyModel:
    """The body model named in ``params.yaml`` (``body.model``), float32, on CPU.

    ``paths``: ``cache_dir`` (Anny), ``model_path`` (SMPL/SMPL-X/STAR file), ``gender``,
    ``h36m_regressor_path`` and ``uv_path`` (SMPL), ``num_betas``.
    """
    kwargs = {k: v for k, v in paths.items() if v is not None}
    if name == "anny":
        from texturepose.body.anny_model import AnnyBody

        return AnnyBody(cache_dir=kwargs.get("cache_dir"))
    if name in ("smpl", "smplx"):
        from texturepose.body.smpl_model import SmplBody

        if "model_path" not in kwargs:
            raise BodyModelError(
                f"body.model is {name!r} but no body.model_path is set in params.yaml: download "
                "the model file after registering at https://smpl.is.tue.mpg.de "
                "(SMPL-X: https://smpl-x.is.tue.mpg.de) and give its path"
            )
        kw = {k: kwargs[k] for k in ("gender", "h36m_regressor_path", "uv_path", "num_betas")
              if k in kwargs}
        return SmplBody(kwargs["model_path"], kind=name, **kw)
    if name == "star":
        from texturepose.body.star_model import StarBody

        if "model_path" not in kwargs:
            raise BodyModelError(
                "body.model is 'star' but no body.model_path is set in params.yaml: download "
                "the STAR npz after registering at https://star.is.tue.mpg.de and give its path"
            )
        kw = {k: kwargs[k] for k in ("num_betas", "h36m_regressor_path", "uv_path") if k in kwargs}
        return StarBody(kwargs["model_path"], **kw)
    raise BodyModelError(f"unknown body.model {name!r}; choose one of {BODY_MODELS}")


PATH_KEYS = ("model_path", "h36m_regressor_path", "uv_path")


def body_from_section(section: Mapping[str, Any] | None,
                      root: str | os.PathLike | None = None) -> BodyModel:
    """The body model of a ``body`` params section (or of a checkpoint's copy of it): the one
    place the section's keys become :func:`build_body_model` arguments. Relative file paths
    are taken relative to ``root`` (the project), not the working directory."""
    section = dict(section or {})
    kwargs = {k: section.get(k) for k in ("gender", "num_betas", *PATH_KEYS)}
    for k in PATH_KEYS:
        if kwargs[k] is not None and root is not None and not os.path.isabs(kwargs[k]):
            kwargs[k] = os.path.join(root, kwargs[k])
    return build_body_model(section.get("model", "anny"), **kwargs)


__all__ = ["BODY_MODELS", "BodyModel", "BodyModelError", "BodyOutput", "body_from_section",
           "build_body_model"]
