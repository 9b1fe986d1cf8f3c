"""The shape of params.yaml: every section's keys and types, checked before any stage starts.

One pydantic model per section. Unknown sections and keys are refused with their full path and
the nearest valid name (``synthetic.subjets_train: unknown key; did you mean subjects_train?``);
wrong types name the key (``synthetic.crop_res = '128px' must be an integer``). Numbers written
as ``1e-4`` (a string to YAML 1.1) are accepted where a number is expected. The training sections
(``model``, ``loss``, ``train``, ``data``) are checked by :class:`TrainConfig`, which the train
stage builds from them; here they only have to be mappings.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BodyParams(_Section):
    model: Literal["anny", "smpl", "smplx", "star"] = "anny"
    model_path: str | None = None
    gender: Literal["neutral", "male", "female"] = "neutral"
    num_betas: int = Field(10, ge=1)
    h36m_regressor_path: str | None = None
    uv_path: str | None = None


class TrackingParams(_Section):
    enabled: bool = True
    uri: str | None = None
    experiment: str = "texturepose"


class MocapSourceParams(_Section):
    name: str
    glob: str
    licence: str
    max_clips: int | None = Field(None, ge=0)


class MocapFitParams(_Section):
    method: Literal["lm", "batched", "clip"] = "lm"
    iters_shape: int = Field(60, ge=0)
    shape_frames: int = Field(8, ge=1)
    fast_keypoints: bool = True
    threads: int = Field(1, ge=0)
    iters: int = Field(150, ge=0)
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    lr: float = Field(0.05, gt=0)
    tol: float = Field(1e-4, ge=0)
    lm_damping: float = Field(0.1, gt=0)
    chunk: int = Field(32, ge=1)
    pose_prior: float = Field(1e-4, ge=0)
    shape_prior: float = Field(1e-4, ge=0)


class MocapParams(_Section):
    sources: list[MocapSourceParams]
    max_clips_per_source: int = Field(0, ge=0)
    fps: float = Field(10.0, gt=0)
    max_frames_per_clip: int = Field(0, ge=0)
    test_every: int = Field(0, ge=0)
    out: str = "data/mocap/anny_poses.h5"
    metrics: str = "reports/mocap_metrics.json"
    fit: MocapFitParams = MocapFitParams()


class SyntheticParams(_Section):
    subjects_train: int = Field(4, ge=1)
    subjects_test: int = Field(2, ge=0)
    clips_per_subject: int = Field(2, ge=1)
    frames_per_clip: int = Field(8, ge=1)
    frame_step: int = Field(3, ge=1)
    cameras: int = Field(4, ge=1)
    crop_res: int = Field(128, ge=16)
    supersample: int = Field(2, ge=1)
    texture_res: int = Field(512, ge=16)
    image_width: int = Field(1000, ge=16)
    image_height: int = Field(1002, ge=16)
    focal: float = Field(1145.0, gt=0)
    camera_radius: tuple[float, float] = (4.0, 5.0)
    camera_height: tuple[float, float] = (1.2, 1.8)
    margin: float = Field(1.2, gt=0)
    jpeg_quality: int = Field(90, ge=1, le=100)
    batch_size: int = Field(16, ge=1)
    seed_offset: int = 0
    contact_sheet: int = Field(12, ge=0)


class PairsParams(_Section):
    datasets: list[str] = ["synthetic_train"]
    min_gap: int = Field(1, ge=0)
    max_gap: int = Field(300, ge=0)
    kinds: list[Literal["multiview", "temporal"]] = ["multiview", "temporal"]


class DatasetParams(_Section):
    enabled: bool = False
    root: str | None = None
    fetch: Literal["symlink", "copy", "download"] = "symlink"
    splits: list[str] = ["train"]
    every_nth: int = Field(1, ge=1)
    options: dict[str, Any] = {}
    checksums: dict[str, str] | None = None
    crop_res: int | None = Field(None, ge=16)


DATASET_NAMES = ("lsp", "lspet", "coco", "mpii", "h36m", "h36m_spin", "3dpw", "mpi_inf_3dhp")


class DatasetsParams(_Section):
    crop_res: int = Field(224, ge=16)
    lsp: DatasetParams = DatasetParams()
    lspet: DatasetParams = DatasetParams()
    coco: DatasetParams = DatasetParams()
    mpii: DatasetParams = DatasetParams()
    h36m: DatasetParams = DatasetParams()
    h36m_spin: DatasetParams = DatasetParams()
    mpi_inf_3dhp: DatasetParams = DatasetParams()
    threedpw: DatasetParams = Field(DatasetParams(), alias="3dpw")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EvalSetParams(BaseModel):
    model_config = ConfigDict(extra="allow")  # protocol options vary by kind
    name: str
    file: str
    kind: Literal["3d", "2d"]
    limit: int | None = Field(None, ge=1)  # the first ``limit`` samples only
    # test-time fit of the mesh to the keypoint head's own 2D output (inference/refine.py)
    refine_steps: int = Field(0, ge=0)


class EvaluateParams(_Section):
    checkpoint: str = "checkpoints/final.pt"
    batch_size: int = Field(32, ge=1)
    sets: list[EvalSetParams] = []


class ReportParams(_Section):
    title: str = "texturepose evaluation"
    max_rows: int = Field(200, ge=1)


class Params(_Section):
    seed: int = 0
    body: BodyParams = BodyParams()
    tracking: TrackingParams = TrackingParams()
    mocap: MocapParams | None = None
    synthetic: SyntheticParams = SyntheticParams()
    pairs: PairsParams = PairsParams()
    datasets: DatasetsParams = DatasetsParams()
    model: dict[str, Any] = {}
    loss: dict[str, Any] = {}
    train: dict[str, Any] = {}
    data: dict[str, Any] = {}
    evaluate: EvaluateParams = EvaluateParams()
    report: ReportParams = ReportParams()


class ParamsError(ValueError):
    """params.yaml does not fit :class:`Params`; the message lists every bad key."""


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The section model that owns the key at ``loc`` (for 'did you mean' suggestions)."""
    model: Any = Params
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        inner = [a for x in args for a in getattr(x, "__args__", ())
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        model = (candidates or inner or [None])[0]
    return model


def _message(err: dict) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc).replace("threedpw", "3dpw")
    if err["type"] == "extra_forbidden":
        model = _model_at(loc)
        names = [f.alias or n for n, f in model.model_fields.items()] if model else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {sorted(names)}"
        return f"{key}: unknown key{hint}"
    value = err.get("input")
    kind = {"int_parsing": "must be an integer", "int_type": "must be an integer",
            "float_parsing": "must be a number", "float_type": "must be a number",
            "bool_parsing": "must be true or false", "bool_type": "must be true or false",
            "missing": "is required"}.get(err["type"], err["msg"])
    return f"{key} = {value!r} {kind}" if err["type"] != "missing" else f"{key} {kind}"


def validate_params(params: dict[str, Any], source: str = "params.yaml") -> Params:
    """The checked params, or :class:`ParamsError` naming every bad key of ``source``."""
    try:
        return Params.model_validate(params)
    except ValidationError as e:
        lines = [_message(err) for err in e.errors()]
        raise ParamsError(f"{source}: " + "; ".join(lines)) from None
