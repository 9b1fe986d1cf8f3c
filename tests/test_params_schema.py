"""Every params section is checked before a stage starts: typos and bad types name the key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from texturepose.params_schema import ParamsError, validate_params

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.mark.parametrize("path", ["params.yaml", "params/paper.yaml"])
def test_the_shipped_params_are_valid(path):
    validate_params(yaml.safe_load((REPO / path).read_text()), path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["synthetic"].update(subjets_train=1),
     "synthetic.subjets_train: unknown key; did you mean 'subjects_train'?"),
    (lambda p: p.update(trian={}), "trian: unknown key; did you mean 'train'?"),
    (lambda p: p["datasets"]["lsp"].update(enabeld=True),
     "datasets.lsp.enabeld: unknown key; did you mean 'enabled'?"),
    (lambda p: p["datasets"].update(lsq={"enabled": True}),
     "datasets.lsq: unknown key; did you mean 'lsp'?"),
    (lambda p: p["synthetic"].update(crop_res="128px"),
     "synthetic.crop_res = '128px' must be an integer"),
    (lambda p: p["mocap"]["fit"].update(method="fast"), "mocap.fit.method = 'fast'"),
    (lambda p: p["body"].update(model="smpl-x"), "body.model = 'smpl-x'"),
    (lambda p: p["evaluate"].update(checkpiont="x.pt"),
     "evaluate.checkpiont: unknown key; did you mean 'checkpoint'?"),
    (lambda p: p["tracking"].update(enabled="sometimes"),
     "tracking.enabled = 'sometimes' must be true or false"),
])
def test_mistakes_are_refused_naming_the_key(edit, message):
    params = copy.deepcopy(DEFAULT)
    edit(params)
    with pytest.raises(ParamsError, match="^params.yaml: ") as err:
        validate_params(params)
    assert message in str(err.value)


def test_numbers_written_by_hand_are_numbers():
    params = copy.deepcopy(DEFAULT)
    params["mocap"]["fit"]["pose_prior"] = "1e-4"  # YAML 1.1 reads this as a string
    assert validate_params(params).mocap.fit.pose_prior == pytest.approx(1e-4)


def test_a_stage_stops_before_work_with_the_message(tmp_path):
    params = copy.deepcopy(DEFAULT)
    params["mocap"]["max_clips_per_sourse"] = 3
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    r = subprocess.run([sys.executable, "stages/mocap.py", "--params", str(path)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert ("mocap.max_clips_per_sourse: unknown key; did you mean 'max_clips_per_source'?"
            in r.stderr)
