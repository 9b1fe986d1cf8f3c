"""Reference for the ablation table: the error of predicting the mean parameters for every image.

The mean parameters (computed from the mocap poses) are where the regressor's IEF starts; a trained
model that does not beat this has not learned pose from the images.

    python scripts/mean_pose_baseline.py [--checkpoint checkpoints/final.pt]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stages.common import load_params  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "final.pt"))
    args = ap.parse_args()
    from texturepose.body import build_body_model
    from texturepose.data.hdf5 import Hdf5Dataset
    from texturepose.evaluation.evaluate import evaluate_protocol
    from texturepose.evaluation.protocols import protocol_from_dict
    from texturepose.geometry.rotations import rot6d_to_matrix
    from texturepose.training.checkpoint import load_checkpoint

    params = load_params()
    state = load_checkpoint(args.checkpoint)
    mean = state["mean_params"]
    body = build_body_model(params["body"]["model"])
    rot = rot6d_to_matrix(torch.as_tensor(mean["rot6d"]).reshape(1, -1, 6))
    shape = torch.as_tensor(mean["shape"]).reshape(1, -1)
    with torch.no_grad():
        kp = body(rot.float(), shape.float()).keypoints.numpy()
    results = {}
    for cfg in params["evaluate"]["sets"]:
        if cfg.get("kind", "3d") != "3d":
            continue
        ds = Hdf5Dataset(REPO / cfg["file"])
        gt = ds.column("keypoints_3d")
        identity = {k: ds.column(k) for k in ("subject", "sequence", "camera", "frame")}
        pred = np.repeat(kp, len(gt), axis=0)
        s = evaluate_protocol(pred, gt, identity, protocol_from_dict(cfg.get("protocol") or {}),
                              pred_mask=body.keypoint_mask.numpy())
        results[cfg["name"]] = {k: round(float(v), 1) for k, v in s.metrics.items()}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
