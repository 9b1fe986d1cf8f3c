"""Body-model speed: our wrappers beside each model's native call, same inputs, same run.

For each available model and batch size (default 1, 32, 128) it times forward and
forward+backward (sum of vertices and keypoints, gradients to pose and shape) of

* Anny: ``AnnyBody`` vs Anny's own ``anny.Anny`` forward on the same pose/phenotypes;
* SMPL: ``SmplBody`` vs ``smplx.SMPLLayer`` (rotation matrices), on a made-up file of SMPL's
  sizes (6890 vertices, 24 joints, 10 betas, 207 pose correctives) since the real one is licensed;
* SMPL-X: ``SmplBody(kind="smplx")`` vs ``smplx.SMPLXLayer`` on a made-up file of SMPL-X's sizes
  (10475 vertices, 55 joints); ours keeps hands/face at rest and skins 22 joints;
* STAR: ``StarBody`` (no native package here; printed beside smplx's SMPL layer as a reference).

Timings alternate wrapper/native calls (in reversed order every other round) and report the
median of ``--repeats`` runs; on a shared machine use ``--threads 1`` (two threads competing with
other jobs made single timings swing by 2x). With ``--previous``, Anny's wrapper as it was
before the speed work of 2026-12-01 (its keypoint regression, copied below) is timed in the
same interleaved loop, with its ratios to the native call and to the current wrapper.

    python bench/body.py [--batches 1 32 128] [--repeats 5] [--models anny smpl smplx star]
                         [--previous] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import roma
import smplx
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))

from body_fakes import file_arrays, make_model, save_npz  # noqa: E402

from texturepose.body.smpl_model import SmplBody  # noqa: E402
from texturepose.body.star_model import StarBody  # noqa: E402

Call = Callable[[bool], None]


def timed(fn: Call, backward: bool) -> float:
    t = time.perf_counter()
    fn(backward)
    return time.perf_counter() - t


def compare(*calls: Call, repeats: int) -> list[tuple[float, ...]]:
    """Median seconds of each call (ours, native[, previous]) for forward and forward+backward,
    interleaved."""
    out = []
    for backward in (False, True):
        for call in calls:  # warm-up
            call(backward)
        times: list[list[float]] = [[] for _ in calls]
        for i in range(repeats):
            # A, B, C then C, B, A: no call always runs right after the same other one.
            pairs = list(zip(calls, times, strict=True))
            for call, t in pairs if i % 2 == 0 else pairs[::-1]:
                t.append(timed(call, backward))
        out.append(tuple(statistics.median(t) for t in times))
    return out


def run(fn: Callable[[], list[torch.Tensor]], leaves: list[torch.Tensor]) -> Call:
    def call(backward: bool) -> None:
        for x in leaves:
            x.requires_grad_(backward)
            x.grad = None
        with torch.set_grad_enabled(backward):
            total = sum(t.sum() for t in fn())
            if backward:
                total.backward()

    return call


def inputs(batch: int, joints: int, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(batch)
    rot = roma.rotvec_to_rotmat(0.4 * torch.randn(batch, joints, 3, generator=g))
    return rot, (shape + 0.1 * torch.randn(batch, len(shape), generator=g)).float()


def previous_anny_forward(body, rotmats: torch.Tensor, shape: torch.Tensor) -> list[torch.Tensor]:
    """``AnnyBody(rotmats, shape)`` before 2026-12-01: its keypoints gathered the used vertices
    as (U, B, 3) (a slow strided copy) before the GEMM. Same outputs as today's."""
    body._check_inputs(rotmats, shape)
    vertices = body.native_forward(rotmats, shape)["vertices"]
    used = vertices[:, body._kp_vertices].transpose(0, 1)  # (U, B, 3)
    b = vertices.shape[0]
    keypoints = (body._kp_weights @ used.reshape(used.shape[0], -1)).reshape(-1, b, 3)
    return [vertices, keypoints.transpose(0, 1)]


def bench_anny(batch: int, repeats: int, previous: bool = False):
    from texturepose.body import build_body_model

    if not hasattr(bench_anny, "body"):
        bench_anny.body = build_body_model("anny")
    body = bench_anny.body
    rot, shape = inputs(batch, body.num_joints, body.mean_shape)
    native_pose = body.native_pose(rot).detach()
    ours = run(lambda: list(body(rot, shape).__dict__.values()), [rot, shape])
    native = run(lambda: [body.native(native_pose, shape)["vertices"]], [native_pose, shape])
    calls = [ours, native]
    if previous:
        out = body(rot, shape)
        old = previous_anny_forward(body, rot, shape)
        if not (torch.equal(out.vertices, old[0]) and torch.equal(out.keypoints, old[1])):
            print(f"anny batch {batch}: the previous wrapper's outputs differ from today's")
        calls.append(run(lambda: previous_anny_forward(body, rot, shape), [rot, shape]))
    return compare(*calls, repeats=repeats), "anny.Anny"


def _smpl_like(kind: str, folder: Path):
    rng = np.random.default_rng(0)
    nv = 10475 if kind == "smplx" else 6890
    model = make_model(rng, kind, symmetric=False, num_vertices=nv)
    extra = {}
    if kind == "smplx":  # the fields smplx.SMPLXLayer needs besides the skinning arrays
        extra = {
            "hands_componentsl": np.eye(45), "hands_componentsr": np.eye(45),
            "hands_meanl": np.zeros(45), "hands_meanr": np.zeros(45),
            "lmk_faces_idx": np.zeros(51, dtype=np.int64),
            "lmk_bary_coords": np.full((51, 3), 1 / 3),
        }  # fmt: skip
    path = save_npz(model, folder / f"{kind.upper()}_NEUTRAL.npz", **extra)
    return model, path


def bench_smpl_family(kind: str, batch: int, repeats: int, folder: Path):
    key = f"_{kind}"
    if not hasattr(bench_smpl_family, key):
        model, path = _smpl_like(kind, folder)
        ids = {k: v * 50 for k, v in model["vertex_ids"].items()}
        ours_body = (
            StarBody(path, keypoint_vertex_ids=ids)
            if kind == "star"
            else SmplBody(path, kind=kind, keypoint_vertex_ids=ids)
        )
        if kind == "smplx":
            native_body = smplx.SMPLXLayer(model_path=str(path), num_betas=10, use_pca=False)
        else:  # STAR has no native package here: smplx's SMPL layer on SMPL-sized arrays
            arrays = file_arrays(_smpl_like("smpl", folder)[0] if kind == "star" else model)
            native_body = smplx.SMPLLayer(
                model_path="", data_struct=smplx.utils.Struct(**arrays), num_betas=10
            )
        setattr(bench_smpl_family, key, (ours_body, native_body))
    ours_body, native_body = getattr(bench_smpl_family, key)
    rot, shape = inputs(batch, ours_body.num_joints, ours_body.mean_shape)
    n_rot = rot.detach().clone()

    def native_fn():
        o = native_body(betas=shape, global_orient=n_rot[:, :1], body_pose=n_rot[:, 1:])
        return [o.vertices, o.joints]

    ours = run(lambda: list(ours_body(rot, shape).__dict__.values()), [rot, shape])
    native = run(native_fn, [n_rot, shape])
    name = {"smpl": "smplx.SMPLLayer", "smplx": "smplx.SMPLXLayer", "star": "SMPLLayer (ref)"}
    return compare(ours, native, repeats=repeats), name[kind]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["anny", "smpl", "smplx", "star"])
    ap.add_argument("--previous", action="store_true",
                    help="also time Anny's wrapper as it was before 2026-12-01, interleaved")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of "
          f"{args.repeats}; seconds per call")  # fmt: skip
    header = f"{'model':6} {'batch':>5} {'pass':>8} {'ours':>9} {'native':>9} {'ratio':>6}  native"
    if args.previous:
        header += "  [previous wrapper: seconds, /native, /ours]"
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for batch in args.batches:
                if model == "anny":
                    res, native_name = bench_anny(batch, args.repeats, args.previous)
                else:
                    res, native_name = bench_smpl_family(model, batch, args.repeats, Path(tmp))
                for label, (ours, native, *prev) in zip(("fwd", "fwd+bwd"), res, strict=True):
                    line = (f"{model:6} {batch:5d} {label:>8} {ours:9.4f} {native:9.4f} "
                            f"{ours / native:6.2f}  {native_name}")  # fmt: skip
                    if prev:
                        line += f"  [{prev[0]:.4f}, {prev[0] / native:.2f}, {prev[0] / ours:.2f}]"
                    print(line, flush=True)


if __name__ == "__main__":
    main()
