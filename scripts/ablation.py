"""The paper's ablation on the current data: 2D keypoints only; + adversarial prior; + texture
consistency; + multi-view consistency. Each configuration is one `dvc exp run` (train, evaluate,
report rerun; data stages come from the cache), so every run is also an MLflow run and a DVC
experiment (`dvc exp show`). The measured table goes to reports/ablations.csv, which the report
page shows.

    python scripts/ablation.py                       # default params
    python scripts/ablation.py -S train.steps=1000   # extra overrides for every configuration

Afterwards the workspace holds the last configuration's outputs; `git checkout params.yaml &&
dvc checkout` brings the committed baseline back.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Loss terms switched on in turn; the others are 0. Weights of the terms that are on come from
#: params.yaml, so every configuration states all four explicitly.
TERMS = ("adversarial", "texture", "multiview_pose", "shape_consistency")
CONFIGS: list[tuple[str, tuple[str, ...]]] = [
    ("keypoints_2d", ()),
    ("+adversarial", ("adversarial",)),
    ("+texture", ("adversarial", "texture")),
    ("+multiview", ("adversarial", "texture", "multiview_pose", "shape_consistency")),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-S", "--set", action="append", default=[], help="extra param override")
    ap.add_argument("--out", default=str(REPO / "reports" / "ablations.csv"))
    args = ap.parse_args()
    import yaml

    baseline = yaml.safe_load((REPO / "params.yaml").read_text())["loss"]
    rows = []
    for name, on in CONFIGS:
        # `dvc exp run` leaves its overrides in params.yaml: start every run from the committed
        # file so that no configuration inherits the previous one's settings.
        subprocess.run(["git", "checkout", "params.yaml"], cwd=REPO, check=True)
        sets = [f"loss.{t}={baseline[t] if t in on else 0}" for t in TERMS]
        sets += ["train.resume=false", *args.set]
        exp = f"ablation-{name.strip('+')}"
        subprocess.run(["dvc", "exp", "remove", exp], cwd=REPO, capture_output=True)  # rerun
        cmd = ["dvc", "exp", "run", "-n", exp]
        for s in sets:
            cmd += ["-S", s]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
        metrics = json.loads((REPO / "reports" / "metrics.json").read_text())
        train = json.loads((REPO / "reports" / "train_metrics.json").read_text())
        for set_name, m in metrics.items():
            rows.append({
                "configuration": name, "eval_set": set_name,
                "mpjpe_mm": round(m["mpjpe"], 1), "pa_mpjpe_mm": round(m["pa_mpjpe"], 1),
                "n": m["n"], "steps": train["steps"],
                "overrides": " ".join(sets),
                "mlflow_run_id": train.get("mlflow_run_id", ""),
            })
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(out)
    subprocess.run(["git", "checkout", "params.yaml"], cwd=REPO, check=True)
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
