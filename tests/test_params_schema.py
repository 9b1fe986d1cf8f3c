"""The shipped params files are valid, and a stage run as a script stops on a typo with exit
status 1 and the message. Each params mistake and its message:
tests/faults/test_faults_params.py."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from texturepose.params_schema import validate_params

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.mark.parametrize("path", ["params.yaml", "params/paper.yaml", "params/real.yaml"])
def test_the_shipped_params_are_valid(path):
    validate_params(yaml.safe_load((REPO / path).read_text()), path)


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
