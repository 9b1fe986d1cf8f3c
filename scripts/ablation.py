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

OFF = {"loss.adversarial": 0, "loss.texture": 0, "loss.multiview_pose": 0,
       "loss.shape_consistency": 0}
CONFIGS: list[tuple[str, dict[str, float]]] = [
    ("keypoints_2d", dict(OFF)),
    ("+adversarial", {k: v for k, v in OFF.items() if k != "loss.adversarial"}),
    ("+texture", {"loss.multiview_pose": 0, "loss.shape_consistency": 0}),
    ("+multiview", {}),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-S", "--set", action="append", default=[], help="extra param override")
    ap.add_argument("--out", default=str(REPO / "reports" / "ablations.csv"))
    args = ap.parse_args()
    rows = []
    for name, overrides in CONFIGS:
        sets = [f"{k}={v}" for k, v in overrides.items()] + ["train.resume=false", *args.set]
        cmd = ["dvc", "exp", "run", "-n", f"ablation-{name.strip('+')}"]
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
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
