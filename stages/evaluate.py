"""DVC stage `evaluate`: run the trained model on every evaluation set of params.yaml.

    python stages/evaluate.py                                  # params.yaml, this repository
    python stages/evaluate.py --params params/real.yaml        # another params file's sets

Writes reports/metrics.json (DVC metrics: per set the model's errors, the mean-pose baseline on
the same samples and 2D PCK), reports/eval/<set>/ (per-joint, per-sequence and per-sample CSVs
for DVC plots, the error-by-joint plot and the overlay grid of the best, median and worst
samples), and logs the same to the training's MLflow run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import REPO, input_errors, load_params, setup_logging  # noqa: E402
from texturepose.rng import seed_everything  # noqa: E402

log = logging.getLogger("stages.evaluate")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=None, help="params file (default: the repository's "
                    "params.yaml)")
    ap.add_argument("--root", default=None, help="project root: the checkpoint, the sets' files "
                    "and reports/ under it (default: the repository)")
    args = ap.parse_args(argv)
    setup_logging()
    params = load_params(args.params) if args.params else load_params()
    root = Path(args.root) if args.root else REPO
    seed_everything(int(params.get("seed", 0)))
    from texturepose.evaluation.mlflow_log import log_evaluation
    from texturepose.evaluation.run import EvaluationError, evaluate_checkpoint
    from texturepose.files import write_json
    from texturepose.tracking import run_exists, stage_run

    ev = params["evaluate"]
    try:
        with input_errors("evaluate"):
            metrics, artifacts, state = evaluate_checkpoint(
                root / ev["checkpoint"], ev["sets"], root, root / "reports" / "eval",
                int(ev.get("batch_size", 32)))
    except EvaluationError as e:
        raise SystemExit(str(e)) from e
    write_json(root / "reports" / "metrics.json", metrics)
    tr = params.get("tracking", {})
    train_run = state.get("mlflow_run_id")
    files = [*artifacts, root / "reports" / "metrics.json"]
    track = {"project_root": root, "uri": tr.get("uri"),
             "experiment": tr.get("experiment", "texturepose"),
             "enabled": bool(tr.get("enabled", True))}
    into = (train_run if train_run and track["enabled"]
            and run_exists(train_run, tr.get("uri"), root) else None)
    if train_run and not into and track["enabled"]:
        log.info("training run %s is not in this MLflow store: evaluation gets its own run, "
                 "tagged with it", train_run)
    with stage_run("evaluate", params, run_id=into, **track) as run:
        log_evaluation(run, metrics, files, train_run_id=None if into else train_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
