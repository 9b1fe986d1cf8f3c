"""Fault catalogue, params.yaml: every mistake stops the stage before any work with SystemExit
(exit status 1, no traceback) and a message naming the file, the key or the line."""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from stages import train as train_stage  # noqa: E402
from stages.common import load_params  # noqa: E402

DEFAULT = yaml.safe_load((REPO / "params.yaml").read_text())


def _run_train(root: Path, params_file: Path) -> str:
    """The train stage on ``params_file``; the message it stops with (it must stop)."""
    with pytest.raises(SystemExit) as stop:
        train_stage.main(["--params", str(params_file), "--root", str(root)])
    assert isinstance(stop.value.code, str), "a stage must stop with a message, not a bare code"
    return stop.value.code


def _params_file(tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    params = copy.deepcopy(DEFAULT)
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _nothing_written(root: Path, params_file: Path) -> None:
    assert sorted(root.iterdir()) == [params_file], "the stage must stop before any work"


@pytest.mark.parametrize(("edit", "message"), [
    pytest.param(lambda p: p["synthetic"].update(subjets_train=1),
                 "synthetic.subjets_train: unknown key; did you mean 'subjects_train'?",
                 id="unknown-key-with-hint"),
    pytest.param(lambda p: p.update(trian={}), "trian: unknown key; did you mean 'train'?",
                 id="unknown-section"),
    pytest.param(lambda p: p["datasets"]["lsp"].update(enabeld=True),
                 "datasets.lsp.enabeld: unknown key; did you mean 'enabled'?",
                 id="dataset-key-typo"),
    pytest.param(lambda p: p["datasets"].update(lsq={"enabled": True}),
                 "datasets.lsq: unknown key; did you mean 'lsp'?", id="dataset-name-typo"),
    pytest.param(lambda p: p["synthetic"].update(crop_res="128px"),
                 "synthetic.crop_res = '128px' must be an integer", id="wrong-type"),
    pytest.param(lambda p: p["mocap"]["fit"].update(method="fast"),
                 "mocap.fit.method = 'fast'", id="bad-choice"),
    pytest.param(lambda p: p["body"].update(model="smpl-x"), "body.model = 'smpl-x'",
                 id="bad-body-model"),
    pytest.param(lambda p: p["evaluate"].update(checkpiont="x.pt"),
                 "evaluate.checkpiont: unknown key; did you mean 'checkpoint'?",
                 id="evaluate-checkpoint-typo"),
    pytest.param(lambda p: p["tracking"].update(enabled="sometimes"),
                 "tracking.enabled = 'sometimes' must be true or false", id="bad-bool"),
    pytest.param(lambda p: p["evaluate"]["sets"][0].update(refine_steps=-5),
                 "evaluate.sets.0.refine_steps = -5", id="negative-refine-steps"),
    pytest.param(lambda p: p["synthetic"].update(jpeg_quality=101),
                 "synthetic.jpeg_quality = 101", id="out-of-range"),
])
def test_a_params_mistake_stops_the_stage_naming_the_key(tmp_path, edit, message):
    path = _params_file(tmp_path, edit)
    text = _run_train(tmp_path, path)
    assert text.startswith(f"error: {path}: ") and message in text
    _nothing_written(tmp_path, path)


def test_a_negative_loss_weight_names_the_key_and_the_bound(tmp_path):
    path = _params_file(tmp_path, lambda p: p["loss"].update(texture=-1))
    text = _run_train(tmp_path, path)
    assert "loss.texture" in text and ">= 0" in text
    _nothing_written(tmp_path, path)


def test_an_unknown_training_key_is_refused_with_a_hint(tmp_path):
    path = _params_file(tmp_path, lambda p: p["train"].update(stpes=10))
    text = _run_train(tmp_path, path)
    assert "section 'train' has unknown keys ['stpes']" in text and "'steps'" in text
    _nothing_written(tmp_path, path)


def test_numbers_written_by_hand_are_numbers(tmp_path):
    path = tmp_path / "params.yaml"
    text = (REPO / "params.yaml").read_text()
    assert "pose_prior: 1.0e-4" in text
    path.write_text(text.replace("pose_prior: 1.0e-4", "pose_prior: 1e-4"))
    params = load_params(path)
    # YAML 1.1 reads 1e-4 as the string '1e-4': the stages must get the number
    assert params["mocap"]["fit"]["pose_prior"] == pytest.approx(1e-4)
    assert isinstance(params["mocap"]["fit"]["pose_prior"], float)


def test_a_quoted_number_is_still_accepted_where_a_number_is_expected(tmp_path):
    path = _params_file(tmp_path, lambda p: p["mocap"]["fit"].update(pose_prior="1e-4"))
    params = load_params(path)
    assert float(params["mocap"]["fit"]["pose_prior"]) == pytest.approx(1e-4)


def test_an_empty_params_file_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# nothing here yet\n")
    text = _run_train(tmp_path, path)
    assert str(path) in text and "empty" in text and "params.yaml" in text
    _nothing_written(tmp_path, path)


def test_a_params_file_that_is_a_list_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- seed: 0\n- train: {steps: 3}\n")
    text = _run_train(tmp_path, path)
    assert str(path) in text and "list" in text and "mapping of sections" in text
    _nothing_written(tmp_path, path)


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 0\ntrain:\n  steps: 3\n   lr: 0.1\n")  # line 4 indented one too far
    text = _run_train(tmp_path, path)
    assert str(path) in text and "not valid YAML" in text and "line 4" in text
    assert "\n" not in text  # one line
    _nothing_written(tmp_path, path)


def test_a_missing_params_file_names_it_and_says_what_to_give(tmp_path):
    path = tmp_path / "parms.yaml"
    with pytest.raises(SystemExit) as stop:
        train_stage.main(["--params", str(path), "--root", str(tmp_path)])
    text = str(stop.value.code)
    assert str(path) in text and "does not exist" in text and "--params" in text
    assert not list(tmp_path.iterdir())
