"""Stage: convert every enabled raw dataset to HDF5 crops.

    python stages/preprocess.py [name ...]

For each dataset (default: all with ``enabled: true`` in params.yaml ``datasets``) and each of its
``splits``, writes ``<out-dir>/<name>_<split>.h5`` and ``reports/datasets/<name>.json`` (counts,
skipped samples by reason). The raw data is read from data/raw/real/<name> (the fetch stage's
out) or, when that is absent, from ``datasets.<name>.root``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import REPO, load_params, seed_everything, setup_logging, write_json
from texturepose.data.readers import get_converter

log = logging.getLogger("preprocess")


def run_dataset(name: str, cfg: dict, defaults: dict, raw_dir: Path, out_dir: Path,
                report_dir: Path) -> dict:
    root = raw_dir / name
    if not root.exists():
        if not cfg.get("root"):
            raise SystemExit(f"{name}: no {root} and no datasets.{name}.root; run stages/fetch.py")
        root = Path(cfg["root"]) if Path(cfg["root"]).is_absolute() else REPO / cfg["root"]
    convert = get_converter(name)
    crop_res = int(cfg.get("crop_res", defaults.get("crop_res", 224)))
    options = dict(cfg.get("options") or {})
    if "every_nth" in cfg:
        options["every_nth"] = int(cfg["every_nth"])
    report: dict = {"dataset": name, "root": str(root), "crop_res": crop_res, "splits": {}}
    for split in cfg.get("splits", ["train"]):
        t0 = time.perf_counter()
        counts = convert(root, out_dir / f"{name}_{split}.h5", split=split, crop_res=crop_res,
                         **options)
        counts["seconds"] = round(time.perf_counter() - t0, 2)
        counts["samples_per_second"] = round(counts["written"] / max(counts["seconds"], 1e-9), 1)
        report["splits"][split] = counts
        log.info("%s/%s: %d written, %d skipped %s", name, split, counts["written"],
                 counts["skipped"], counts.get("skipped_reasons") or "")
    write_json(report_dir / f"{name}.json", report)
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("names", nargs="*", help="datasets to convert (default: all enabled)")
    ap.add_argument("--raw-dir", default=str(REPO / "data" / "raw" / "real"))
    ap.add_argument("--out-dir", default=str(REPO / "data" / "processed" / "real"))
    ap.add_argument("--report-dir", default=str(REPO / "reports" / "datasets"))
    args = ap.parse_args()
    setup_logging()
    params = load_params(args.params)
    seed_everything(int(params.get("seed", 0)))
    section = params.get("datasets", {})
    defaults = {k: v for k, v in section.items() if not isinstance(v, dict)}
    known = [k for k, v in section.items() if isinstance(v, dict)]
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}; params.yaml datasets has {known}")
    names = args.names or [k for k in known if section[k].get("enabled", False)]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # the stage's out exists even with none enabled
    summary = {}
    for name in names:
        rep = run_dataset(name, section[name], defaults, Path(args.raw_dir), out_dir,
                          Path(args.report_dir))
        summary[name] = {s: {"written": c["written"], "skipped": c["skipped"]}
                         for s, c in rep["splits"].items()}
    write_json(Path(args.report_dir) / "summary.json", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
