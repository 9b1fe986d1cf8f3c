"""The paper's ablation with seeds: 2D keypoints only; + adversarial prior; + texture
consistency; + multi-view and shape consistency, each trained and evaluated once per seed.

    python scripts/ablation.py --seeds 0 1 2                  # after `dvc repro` (its data)
    python scripts/ablation.py --seeds 0 1 2 -S train.steps=1500
    python scripts/ablation.py --configs keypoints_2d +multiview --seeds 3
    python scripts/ablation.py --summarise                    # table of every finished run

Runs with -S overrides are a variant: their own folders (``texture__loss.texture=3.0-seed0``)
and their own rows in the table (``+texture (loss.texture=3.0)``), beside the plain runs.

Every run trains with `stages/train.py` on the pipeline's data (params.yaml plus the
configuration's loss weights, the seed and the -S overrides) in its own folder under
reports/ablation/runs/, is one MLflow run (experiment `texturepose-ablation`), and is evaluated
on the params' evaluation sets. A run whose result.json is there with the same settings is not
run again, and a killed run resumes from its last checkpoint: an interrupted ablation goes on
where it stopped. The summary (mean and standard deviation over seeds per configuration, and
the mean-pose baseline of the same samples) goes to reports/ablation/summary.{csv,json,md} with
the commit, date and seeds, and the report page is rebuilt to show it. Nothing under
reports/ablation is committed: the page shows only what ran here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from stages.common import load_params, set_key  # noqa: E402
from texturepose.files import write_json  # noqa: E402

log = logging.getLogger("ablation")

#: Loss terms switched on in turn (weights from params.yaml); the others are 0.
TERMS = ("adversarial", "texture", "multiview_pose", "shape_consistency")
CONFIGS: dict[str, tuple[str, ...]] = {
    "keypoints_2d": (),
    "+adversarial": ("adversarial",),
    "+texture": ("adversarial", "texture"),
    "+multiview": ("adversarial", "texture", "multiview_pose", "shape_consistency"),
}
METRICS = ("pa_mpjpe", "mpjpe", "pck@0.1", "pck@0.2", "head_pck@0.2")
#: The terms act on the body the model regresses. The default model (a frozen lifter's reading
#: of the keypoint head, no IEF: model.start lifted, iterations 0) gives them no gradient path,
#: so the ablation then runs on the paper's model: the IEF from the mean pose.
PAPER_MODEL = {"start": "mean", "iterations": 3}
OUT = REPO / "reports" / "ablation"


def run_params(base: dict, config: str, seed: int, overrides: list[str]) -> dict:
    """params.yaml with the configuration's loss weights, the seed and the overrides, on the
    paper's model (:data:`PAPER_MODEL`) where params.yaml's gives the terms nothing to train
    (the overrides still come last)."""
    params = yaml.safe_load(yaml.safe_dump(base))
    from texturepose.training.config import ModelConfig

    model = params.setdefault("model", {})
    if not ModelConfig(**model).pose_trains:
        model.update(PAPER_MODEL)
    for term in TERMS:
        if term not in CONFIGS[config]:
            params["loss"][term] = 0.0
    params["seed"] = seed
    params["tracking"]["experiment"] = "texturepose-ablation"
    if params["tracking"].get("uri") is None:  # the project's store, not the run folder's
        params["tracking"]["uri"] = f"sqlite:///{REPO / 'mlflow.db'}"
    for item in overrides:
        key, _, value = item.partition("=")
        set_key(params, key, yaml.safe_load(value))
    return params


def fingerprint(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def link_data(run_dir: Path) -> None:
    """The run folder sees the pipeline's data (its processed files, pairs, mocap poses)."""
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    for name in ("processed", "pairs", "mocap", "cache"):
        link = run_dir / "data" / name
        if not link.exists():
            link.symlink_to(REPO / "data" / name, target_is_directory=True)


def variant(overrides: list[str]) -> str:
    """A folder-safe name of the -S overrides ('' for none): runs with other overrides keep
    their own folders, so a variant never overwrites the plain ablation's runs."""
    return "__".join(re.sub(r"[^A-Za-z0-9_.=-]", "_", o) for o in overrides)


def run_dir_of(config: str, seed: int, overrides: list[str]) -> Path:
    tag = variant(overrides)
    return OUT / "runs" / (f"{config.strip('+')}{'__' + tag if tag else ''}-seed{seed}")


def label(config: str, overrides: list[str]) -> str:
    """The configuration's row name: ``+texture`` or ``+texture (loss.texture=3)``."""
    return f"{config} ({', '.join(overrides)})" if overrides else config


def run_one(config: str, seed: int, params: dict, overrides: list[str] | None = None) -> dict:
    """Train and evaluate one (configuration, seed), or return its stored result."""
    from texturepose.evaluation.run import evaluate_checkpoint

    overrides = list(overrides or [])
    run_dir = run_dir_of(config, seed, overrides)
    result_path = run_dir / "result.json"
    key = fingerprint(params)
    if result_path.exists():
        done = json.loads(result_path.read_text())
        if done.get("fingerprint") == key:
            log.info("%s seed %d: done before (%s)", config, seed, result_path)
            return done
        log.info("%s seed %d: settings changed since the stored result; rerunning", config, seed)
        (run_dir / "checkpoints" / "last.pt").unlink(missing_ok=True)
    link_data(run_dir)
    params_path = run_dir / "params.yaml"
    write_params = yaml.safe_dump(params, sort_keys=False)
    if not params_path.exists() or params_path.read_text() != write_params:
        params_path.write_text(write_params)
    trained = run_dir / "trained.json"
    if not (trained.exists() and json.loads(trained.read_text()).get("fingerprint") == key):
        log.info("%s seed %d: training in %s", config, seed, run_dir)
        subprocess.run([sys.executable, str(REPO / "stages" / "train.py"), "--params",
                        str(params_path), "--root", str(run_dir), "--run-name",
                        f"ablation {label(config, overrides)} seed {seed}"], cwd=REPO,
                       check=True)
        write_json(trained, {"fingerprint": key})
    ev = params["evaluate"]
    metrics, _, state = evaluate_checkpoint(run_dir / "checkpoints" / "final.pt", ev["sets"],
                                            REPO, run_dir / "eval", int(ev.get("batch_size", 32)))
    result = {"config": config, "overrides": overrides, "seed": seed, "fingerprint": key,
              "metrics": metrics,
              "steps": params["train"]["steps"], "mlflow_run_id": state.get("mlflow_run_id")}
    write_json(result_path, result)
    return result


def summarise(results: list[dict], seeds: list[int], overrides: list[str]) -> dict:
    """Mean and standard deviation (ddof=1) over seeds per configuration and evaluation set,
    with the mean-pose baseline of the same samples."""
    table = []
    sets = sorted({s for r in results for s in r["metrics"]})
    # one row per configuration and set of overrides (a variant is its own row)
    variants = sorted({tuple(r.get("overrides") or ()) for r in results})
    for eval_set in sets:
        for config, extra in ((c, v) for c in CONFIGS for v in variants):
            rows = [r["metrics"][eval_set] for r in results
                    if r["config"] == config and tuple(r.get("overrides") or ()) == extra
                    and eval_set in r["metrics"]]
            if not rows:
                continue
            row = {"eval_set": eval_set, "configuration": label(config, list(extra)),
                   "seeds": len(rows),
                   "n": rows[0].get("n")}
            for m in METRICS:
                vals = np.array([x[m] for x in rows if x.get(m) is not None], float)
                if vals.size:
                    row[f"{m}_mean"] = float(vals.mean())
                    row[f"{m}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else None
            table.append(row)
        base = next((r["metrics"][eval_set] for r in results if eval_set in r["metrics"]), {})
        if "mean_pose_pa_mpjpe" in base:
            table.append({"eval_set": eval_set, "configuration": "mean pose (reference)",
                          "seeds": None, "n": base.get("n"),
                          "pa_mpjpe_mean": base["mean_pose_pa_mpjpe"],
                          "mpjpe_mean": base["mean_pose_mpjpe"]})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                            capture_output=True).stdout.strip() or "unknown"
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=REPO, text=True, capture_output=True).stdout.strip())
    return {"commit": commit + ("-dirty" if dirty else ""),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "seeds": seeds, "overrides": overrides,
            "steps": sorted({r["steps"] for r in results}), "rows": table}


def markdown(summary: dict) -> str:
    def cell(row: dict, m: str, digits: int) -> str:
        mean, std = row.get(f"{m}_mean"), row.get(f"{m}_std")
        if mean is None:
            return "—"
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")

    lines = [f"commit {summary['commit']}, {summary['date']}, seeds {summary['seeds']}, "
             f"steps {summary['steps']}, overrides {summary['overrides'] or 'none'}", "",
             "| set | configuration | seeds | n | PA-MPJPE (mm) | MPJPE (mm) | PCK@0.1 | PCK@0.2 "
             "| head PCK@0.2 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        lines.append(f"| {r['eval_set']} | {r['configuration']} | {r['seeds'] or '—'} | "
                     f"{r['n']} | {cell(r, 'pa_mpjpe', 1)} | {cell(r, 'mpjpe', 1)} | "
                     f"{cell(r, 'pck@0.1', 3)} | {cell(r, 'pck@0.2', 3)} | "
                     f"{cell(r, 'head_pck@0.2', 3)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                    help="param override for every run, e.g. -S train.steps=1500")
    ap.add_argument("--summarise", action="store_true",
                    help="train nothing: summarise every finished run under reports/ablation/runs "
                         "(configurations may then have different numbers of seeds)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny"))
    base = load_params()
    if run_params(base, "+multiview", 0, [])["model"] != base.get("model"):
        log.info("params.yaml's model (start: lifted, iterations: 0) gives the paper's terms no "
                 "gradient path: the ablation runs on the IEF from the mean pose (%s) unless "
                 "-S says otherwise", PAPER_MODEL)
    missing = [p for p in ("data/processed", "data/pairs", "data/mocap")
               if not (REPO / p).is_dir()]
    if missing:
        raise SystemExit(f"{missing} missing: run `dvc repro` first (the ablation trains on "
                         "the pipeline's data)")
    if args.summarise:
        results = [json.loads(p.read_text()) for p in sorted(OUT.glob("runs/*/result.json"))]
        results = [r for r in results if r.get("config") in CONFIGS]
        if not results:
            raise SystemExit(f"no finished runs under {OUT / 'runs'}: run the ablation first")
        seeds = sorted({r["seed"] for r in results})
    else:
        results = [run_one(c, s, run_params(base, c, s, args.set), args.set)
                   for s in args.seeds for c in args.configs]
        seeds = sorted(set(args.seeds))
    summary = summarise(results, seeds, args.set)
    write_json(OUT / "summary.json", summary)
    text = markdown(summary)
    (OUT / "summary.md").write_text(text)
    import pandas as pd

    pd.DataFrame(summary["rows"]).to_csv(OUT / "summary.csv", index=False)
    print(text)
    subprocess.run([sys.executable, str(REPO / "stages" / "report.py")], cwd=REPO, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
