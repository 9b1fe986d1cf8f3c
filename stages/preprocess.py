"""Stage: convert every enabled raw dataset to HDF5 crops.

    python stages/preprocess.py [name ...]

For each dataset (default: all with ``enabled: true`` in params.yaml ``datasets``) and each of its
``splits``, writes ``<out-dir>/<name>_<split>.h5`` and ``reports/datasets/<name>.json`` (counts,
skipped samples by reason, failures) and ``reports/datasets/summary.json``. The raw data is read
from ``datasets.<name>.root`` when set, else from data/raw/real/<name> (the fetch stage's out);
the work is :func:`texturepose.datasets.convert.convert_datasets`. A failing split does not stop
the others; the stage then exits 1 listing every failure by its params key.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import REPO, load_params, setup_logging
from texturepose.datasets.convert import DatasetConfigError, convert_datasets
from texturepose.rng import seed_everything

log = logging.getLogger("preprocess")


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
    known = [k for k, v in section.items() if isinstance(v, dict)]
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}; params.yaml datasets has {known}")
    names = args.names or [k for k in known if section[k].get("enabled", False)]
    try:
        convert_datasets(section, names, Path(args.raw_dir), Path(args.out_dir),
                         Path(args.report_dir), REPO)
    except DatasetConfigError as e:
        raise SystemExit(f"error: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
