"""Stage: the regressor's mean parameters, computed from the mocap poses (not invented).

    python stages/mean_params.py   ->  data/processed/mean_params.npz
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from stages.common import REPO, load_params, setup_logging  # noqa: E402
from texturepose.models.mean_params import mean_params_from_mocap, save_mean_params  # noqa: E402

log = logging.getLogger("mean_params")


def main() -> int:
    setup_logging()
    params = load_params()
    body = params["body"]["model"]
    mocap = REPO / params["mocap"]["out"].format(body=body)
    out = REPO / params["model"]["mean_params"]
    from texturepose.body import build_body_model

    model = build_body_model(body)
    mean = mean_params_from_mocap(mocap, model.joint_names, cam=tuple(params["model"]["mean_cam"]))
    save_mean_params(out, mean)
    log.info("mean parameters of %s from %s -> %s", body, mocap, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
