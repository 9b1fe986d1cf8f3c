"""DVC stage `report`: one static HTML page (reports/index.html) with the metrics table, the
plots, the overlay grids and, when scripts/ablation.py has run here, its table
(reports/ablation/summary.json, with its commit, date and seeds).

    python stages/report.py
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import REPO, input_errors, load_params, setup_logging  # noqa: E402

log = logging.getLogger("stages.report")


def main() -> int:
    setup_logging()
    params = load_params()
    from texturepose.evaluation.report import write_report

    cfg = params.get("report") or {}
    eval_dir = REPO / "reports" / "eval"
    images: list[tuple[str, Path]] = []
    tables: list[tuple[str, Path]] = []
    # Hidden folders are a killed evaluate's temporaries (texturepose/files.py), not sets.
    set_dirs = (sorted(p for p in eval_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
                if eval_dir.is_dir() else [])
    for set_dir in set_dirs:
        for name, caption in (("by_joint.png", "error by joint"),
                              ("overlays.png", "best / median / worst (crop, overlay, side)")):
            if (set_dir / name).exists():
                images.append((f"{set_dir.name}: {caption}", set_dir / name))
        for csv in ("per_joint.csv", "per_sequence.csv", "per_action.csv"):
            if (set_dir / csv).exists():
                tables.append((f"{set_dir.name}: {csv[:-4].replace('_', ' ')}", set_dir / csv))
    for extra, caption in (("figures/synthetic_contact_sheet.jpg", "synthetic training data"),):
        if (REPO / "reports" / extra).exists():
            images.append((caption, REPO / "reports" / extra))
    with input_errors("report"):
        out = write_report(REPO / "reports" / "index.html", REPO / "reports" / "metrics.json",
                           images=images, tables=tables,
                           ablations=REPO / "reports" / "ablation" / "summary.json",
                           title=cfg.get("title", "texturepose evaluation"),
                           max_rows=int(cfg.get("max_rows", 200)))
    log.info("report written to %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
