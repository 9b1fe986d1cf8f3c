"""Stage: render the embedded synthetic multi-view dataset from the mocap poses.

    python stages/synthesize.py [--mocap MOCAP_H5] [--out-dir DIR]   # defaults: params
    mocap.out, data.processed_dir

Reads params ``seed``, ``body`` and ``synthetic``; writes ``<out-dir>/synthetic_train.h5`` and
``synthetic_test.h5`` (split by subject), ``reports/synthetic_metrics.json`` (counts, images/s)
and the contact sheet ``reports/figures/synthetic_contact_sheet.jpg``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import REPO, input_errors, load_params, setup_logging
from texturepose.body import body_from_section
from texturepose.files import write_json
from texturepose.rng import seed_everything
from texturepose.synthetic import config_from_params, synthesize
from texturepose.synthetic.generate import load_pose_clips
from texturepose.synthetic.sheet import contact_sheet

log = logging.getLogger("synthesize")


def main(argv: list[str] | None = None) -> dict:
    params = load_params()
    body_p = params.get("body") or {}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mocap", type=Path, help="default: params mocap.out")
    ap.add_argument("--out-dir", type=Path, help="default: params data.processed_dir")
    ap.add_argument("--reports", type=Path, default=REPO / "reports")
    args = ap.parse_args(argv)
    args.mocap = args.mocap or REPO / params["mocap"]["out"]
    args.out_dir = args.out_dir or REPO / params["data"]["processed_dir"]
    setup_logging()
    config = config_from_params(params)
    seed_everything(config.seed)
    with input_errors("synthesize"):
        poses = load_pose_clips(args.mocap)
    log.info("%d mocap poses from %d clips in %s", len(poses.rotmats), len(poses.clip_names()),
             args.mocap)
    body = body_from_section(body_p, REPO)
    counts = synthesize(args.out_dir, config, body, poses)
    sheet = contact_sheet(args.out_dir / "synthetic_train.h5",
                          args.reports / "figures" / "synthetic_contact_sheet.jpg",
                          num=int((params.get("synthetic") or {}).get("contact_sheet", 12)))
    counts["contact_sheet"] = str(sheet.relative_to(REPO) if sheet.is_relative_to(REPO)
                                  else sheet)
    counts["mocap_clips"] = len(poses.clip_names())
    out = write_json(args.reports / "synthetic_metrics.json", counts)
    log.info("wrote %s", out)
    return counts


if __name__ == "__main__":
    main()
