"""scripts/ablation.py: per-seed runs are resumable by fingerprint and summarised with spreads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ablation(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("ablation", REPO / "scripts" / "ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "OUT", tmp_path / "ablation")
    return mod


def _metrics(pa: float) -> dict:
    return {"synthetic": {"pa_mpjpe": pa, "mpjpe": 2 * pa, "pck@0.1": 0.3, "pck@0.2": 0.6,
                          "n": 1024, "mean_pose_pa_mpjpe": 139.0, "mean_pose_mpjpe": 272.0}}


def test_configurations_switch_the_paper_terms_off_in_turn(ablation):
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    p2d = ablation.run_params(base, "keypoints_2d", 1, ["train.steps=7"])
    full = ablation.run_params(base, "+multiview", 1, [])
    assert all(p2d["loss"][t] == 0 for t in ablation.TERMS)
    assert all(full["loss"][t] == base["loss"][t] for t in ablation.TERMS)
    assert p2d["seed"] == 1 and p2d["train"]["steps"] == 7
    assert ablation.fingerprint(p2d) != ablation.fingerprint(full)


def test_the_ablation_runs_on_a_model_whose_body_the_terms_can_train(ablation):
    """A lifted start without IEF iterations gives the paper's terms no gradient path: the
    ablation then trains the IEF from the mean pose; an explicit override still wins."""
    import texturepose.training.config as config

    base = yaml.safe_load((REPO / "params.yaml").read_text())
    frozen = {**base, "model": {**base["model"], "start": "lifted", "iterations": 0,
                                "lift_grad": False}}
    run = ablation.run_params(frozen, "+texture", 0, [])
    assert run["model"]["start"] == "mean" and run["model"]["iterations"] == 3
    assert config.TrainConfig.from_params(run).model.pose_trains
    kept = ablation.run_params(frozen, "+texture", 0, ["model.start=lifted",
                                                        "model.iterations=0"])
    assert not config.TrainConfig.from_params(kept).model.pose_trains
    through = {**frozen, "model": {**frozen["model"], "lift_grad": True}}
    assert ablation.run_params(through, "+texture", 0, [])["model"] == through["model"]


def test_a_finished_run_is_not_repeated(ablation, monkeypatch):
    params = {"train": {"steps": 5}, "evaluate": {"sets": []}}
    done = ablation.OUT / "runs" / "multiview-seed2" / "result.json"
    done.parent.mkdir(parents=True)
    stored = {"config": "+multiview", "seed": 2, "fingerprint": ablation.fingerprint(params),
              "metrics": _metrics(120.0), "steps": 5}
    done.write_text(json.dumps(stored))

    real_run = ablation.subprocess.run

    def no_training(cmd, *a, **k):
        if any(str(c).endswith("train.py") for c in cmd):
            raise AssertionError("a finished run was trained again")
        return real_run(cmd, *a, **k)

    monkeypatch.setattr(ablation.subprocess, "run", no_training)
    assert ablation.run_one("+multiview", 2, params) == stored


def test_summary_gives_mean_and_sample_std_per_configuration_and_the_mean_pose(ablation):
    results = [{"config": "+multiview", "seed": s, "metrics": _metrics(pa), "steps": 5}
               for s, pa in enumerate((120.0, 130.0, 110.0))]
    results.append({"config": "keypoints_2d", "seed": 0, "metrics": _metrics(150.0), "steps": 5})
    summary = ablation.summarise(results, [0, 1, 2], [])
    rows = {r["configuration"]: r for r in summary["rows"]}
    assert rows["+multiview"]["pa_mpjpe_mean"] == pytest.approx(120.0)
    assert rows["+multiview"]["pa_mpjpe_std"] == pytest.approx(np.std([120, 130, 110], ddof=1))
    assert rows["+multiview"]["seeds"] == 3 and rows["keypoints_2d"]["pa_mpjpe_std"] is None
    assert rows["mean pose (reference)"]["pa_mpjpe_mean"] == 139.0
    text = ablation.markdown(summary)
    assert "| synthetic | +multiview | 3 | 1024 | 120.0 ± 10.0 |" in text


def test_a_variant_with_overrides_keeps_its_own_folder_and_row(ablation):
    """-S overrides never overwrite the plain runs: other folder, other row in the summary."""
    plain = ablation.run_dir_of("+texture", 0, [])
    variant = ablation.run_dir_of("+texture", 0, ["loss.texture=3.0", "train.steps=2600"])
    assert plain.name == "texture-seed0"
    assert variant.name == "texture__loss.texture=3.0__train.steps=2600-seed0"
    results = [{"config": "+texture", "seed": s, "metrics": _metrics(150.0 + s), "steps": 5}
               for s in range(2)]
    results += [{"config": "+texture", "overrides": ["loss.texture=3.0"], "seed": s,
                 "metrics": _metrics(100.0 + s), "steps": 5} for s in range(2)]
    rows = {r["configuration"]: r for r in ablation.summarise(results, [0, 1], [])["rows"]}
    assert rows["+texture"]["pa_mpjpe_mean"] == pytest.approx(150.5)
    assert rows["+texture (loss.texture=3.0)"]["pa_mpjpe_mean"] == pytest.approx(100.5)
    assert rows["+texture (loss.texture=3.0)"]["seeds"] == 2
