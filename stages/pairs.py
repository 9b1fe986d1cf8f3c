"""Stage: the pairs table of every dataset split that has identities.

    python stages/pairs.py [--in-dir DIR] [--out-dir DIR]   # defaults: params data.processed_dir,
    data.pairs_dir

Reads params ``pairs`` (``datasets``: file stems in ``data/processed`` such as
``synthetic_train``; ``min_gap``/``max_gap``: frame-gap window of temporal pairs; ``kinds``).
Writes ``<out-dir>/<stem>.parquet`` (columns i, j, kind, gap; read with ``pandas.read_parquet``)
and ``reports/pairs_metrics.json`` (samples and pairs per kind, per file).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import REPO, input_errors, load_params, setup_logging
from texturepose.data.pairs import PAIR_KINDS, build_pairs, identity_table, pair_counts, write_pairs
from texturepose.files import write_json

log = logging.getLogger("pairs")


def main(argv: list[str] | None = None) -> dict:
    params = load_params()
    p = dict(params.get("pairs") or {})
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--in-dir", type=Path, help="default: params data.processed_dir")
    ap.add_argument("--out-dir", type=Path, help="default: params data.pairs_dir")
    ap.add_argument("--reports", type=Path, default=REPO / "reports")
    args = ap.parse_args(argv)
    args.in_dir = args.in_dir or REPO / params["data"]["processed_dir"]
    args.out_dir = args.out_dir or REPO / params["data"]["pairs_dir"]
    setup_logging()
    stems = list(p.get("datasets") or ["synthetic_train"])
    min_gap, max_gap = int(p.get("min_gap", 1)), int(p.get("max_gap", 300))
    kinds = tuple(p.get("kinds") or PAIR_KINDS)
    metrics: dict = {"min_gap": min_gap, "max_gap": max_gap, "datasets": {}}
    for stem in stems:
        path = args.in_dir / f"{stem}.h5"
        if not path.exists():
            raise SystemExit(f"pairs.datasets lists {stem!r} but {path} does not exist; run the "
                             "stage that writes it (dvc repro) or remove it from params.yaml")
        with input_errors("pairs"):
            table = identity_table(path)
            pairs = build_pairs(table, min_gap, max_gap, kinds)
            write_pairs(pairs, args.out_dir / f"{stem}.parquet")
        counts = pair_counts(pairs)
        metrics["datasets"][stem] = {"samples": len(table), **counts}
        log.info("%s: %d samples, pairs %s", stem, len(table), counts)
    with input_errors("pairs"):
        write_json(args.reports / "pairs_metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    main()
