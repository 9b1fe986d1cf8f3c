"""DVC stage `train`: train the regressor with every loss of params.yaml, tracked in MLflow.

    python stages/train.py                              # one process (CUDA if present, else CPU)
    torchrun --nproc_per_node=4 stages/train.py         # 4 GPUs (or 4 CPU processes, gloo)
    torchrun --nnodes=2 --node_rank=R --nproc_per_node=8 \
        --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 stages/train.py   # 2 machines

Reads params.yaml (sections model, loss, train, data, body, tracking, seed, and mocap.out).
Resumes from checkpoints/last.pt when it exists, train.resume is true and params and data are
the same. Writes checkpoints/final.pt (the trained model) and reports/train_metrics.json.
The work is :func:`texturepose.training.run.train_from_params`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.common import REPO, input_errors, load_params, setup_logging  # noqa: E402
from texturepose.rng import seed_everything  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"), help="params file")
    ap.add_argument("--root", default=str(REPO), help="project root (data, outputs)")
    ap.add_argument("--stop-at", type=int, default=None,
                    help="stop after this step (checkpoint kept; rerun to resume)")
    ap.add_argument("--run-name", default=None, help="MLflow run name (default: the stage, "
                    "with the DVC experiment's name under `dvc exp run`)")
    args = ap.parse_args(argv)
    setup_logging()

    from texturepose.training.run import ResumeError, train_from_params

    params = load_params(args.params)
    seed_everything(int(params.get("seed", 0)))  # same on every rank (DDP broadcasts rank 0's)
    try:
        with input_errors("train"):
            train_from_params(params, Path(args.root), stop_at=args.stop_at,
                              run_name=args.run_name)
    except ResumeError as e:
        raise SystemExit(f"train: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
