"""DVC stage `evaluate`: run the trained model on every evaluation set of params.yaml.

    python stages/evaluate.py

Writes reports/metrics.json (DVC metrics: per set the model's errors, the mean-pose baseline on
the same samples and 2D PCK), reports/eval/<set>/ (per-joint, per-sequence and per-sample CSVs
for DVC plots, the error-by-joint plot and the overlay grid of the best, median and worst
samples), and logs the same to the training's MLflow run.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import REPO, input_errors, load_params, setup_logging  # noqa: E402
from texturepose.rng import seed_everything  # noqa: E402

log = logging.getLogger("stages.evaluate")


def main() -> int:
    setup_logging()
    params = load_params()
    seed_everything(int(params.get("seed", 0)))
    from texturepose.evaluation.mlflow_log import log_evaluation
    from texturepose.evaluation.run import EvaluationError, evaluate_checkpoint
    from texturepose.files import write_json
    from texturepose.tracking import run_exists, stage_run

    ev = params["evaluate"]
    try:
        with input_errors("evaluate"):
            metrics, artifacts, state = evaluate_checkpoint(
                REPO / ev["checkpoint"], ev["sets"], REPO, REPO / "reports" / "eval",
                int(ev.get("batch_size", 32)))
    except EvaluationError as e:
        raise SystemExit(str(e)) from e
    write_json(REPO / "reports" / "metrics.json", metrics)
    tr = params.get("tracking", {})
    train_run = state.get("mlflow_run_id")
    files = [*artifacts, REPO / "reports" / "metrics.json"]
    track = {"project_root": REPO, "uri": tr.get("uri"),
             "experiment": tr.get("experiment", "texturepose"),
             "enabled": bool(tr.get("enabled", True))}
    into = (train_run if train_run and track["enabled"]
            and run_exists(train_run, tr.get("uri"), REPO) else None)
    if train_run and not into and track["enabled"]:
        log.info("training run %s is not in this MLflow store: evaluation gets its own run, "
                 "tagged with it", train_run)
    with stage_run("evaluate", params, run_id=into, **track) as run:
        log_evaluation(run, metrics, files, train_run_id=None if into else train_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
