"""Body models behind one interface (:class:`texturepose.body.base.BodyModel`): Anny, SMPL, SMPL-X,
STAR.

Everything specific to one model (Anny's phenotypes, its skinning-free keypoint path, SMPL's
files) lives here; other layers use only the interface. May import :mod:`texturepose.geometry`,
:mod:`texturepose.keypoints` and :mod:`texturepose.files`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
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
MODEL_SITES = {"smpl": "https://smpl.is.tue.mpg.de", "smplx": "https://smpl-x.is.tue.mpg.de",
               "star": "https://star.is.tue.mpg.de"}
# How the model-file errors (chumpy_free.model_error) end: right for params.yaml's section only.
PARAMS_ADVICE = "or point the body model path in params.yaml (body section) at it."


def default_root() -> Path:
    """The project folder relative body-model paths are taken from when none is given: the
    checkout this package runs from, else the current folder."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


def body_from_section(section: Mapping[str, Any] | None,
                      root: str | os.PathLike | None = None,
                      source: str = "params.yaml") -> BodyModel:
    """The body model of a ``body`` params section (or of a checkpoint's copy of it): the one
    place the section's keys become :func:`build_body_model` arguments.

    Relative file paths are taken relative to ``root`` (the project; default
    :func:`default_root`), never the working directory, and a missing file is named by its key
    and resolved absolute path. ``source`` says where the section comes from, for the advice:
    ``params.yaml``, or e.g. ``"the model file checkpoints/final.pt"``, whose own section is
    used (editing params.yaml cannot change it)."""
    section = dict(section or {})
    name = section.get("model", "anny")
    base = Path(root if root is not None else default_root()).expanduser().resolve()
    in_params = source == "params.yaml"
    if in_params:
        fix = "put the file there, or set body.{key} in params.yaml to where it is"
    else:
        fix = (f"{source} keeps the body section it was trained with and that copy is used, not "
               "params.yaml's, so editing params.yaml does not help: put the file at {path}, "
               "or retrain with the body model you have (dvc repro train)")
    if not in_params and name in MODEL_SITES and not section.get("model_path"):
        raise BodyModelError(
            f"{source} was trained with body.model = {name!r} but names no body.model_path: "
            "retrain it with the body model you have (dvc repro train)")
    kwargs = {k: section.get(k) for k in ("gender", "num_betas", *PATH_KEYS)}
    for k in PATH_KEYS:
        if kwargs[k] is None:
            continue
        given = Path(kwargs[k]).expanduser()
        path = given if given.is_absolute() else base / given
        if not path.exists():
            what = (f" (the {name} model file, downloaded from {MODEL_SITES[name]} after "
                    "registering)" if k == "model_path" and name in MODEL_SITES else "")
            raise BodyModelError(
                f"body.{k} = {str(kwargs[k])!r}{'' if in_params else ' in ' + source}: {path} "
                f"does not exist{what}; relative paths are taken from the project root {base}, "
                f"not the current folder. " + fix.format(key=k, path=path))
        kwargs[k] = str(path)
    try:
        return build_body_model(name, **kwargs)
    except BodyModelError as e:
        if in_params or PARAMS_ADVICE not in str(e):
            raise
        raise BodyModelError(str(e).replace(
            PARAMS_ADVICE, f"or retrain with the body model you have (dvc repro train): {source} "
            "keeps the body section it was trained with and that copy is used, not params.yaml's,"
            " so editing params.yaml does not help.")) from e


__all__ = ["BODY_MODELS", "BodyModel", "BodyModelError", "BodyOutput", "body_from_section",
           "build_body_model", "default_root"]
