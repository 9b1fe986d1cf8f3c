"""Fault catalogue, body section: relative body-model paths are taken from the project root
(never the current folder), and a missing file is named by its params key and its resolved
absolute path, with what to do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from texturepose.body import BodyModelError, body_from_section

REPO = Path(__file__).resolve().parents[2]
SECTION = {"model": "smpl", "model_path": "models/SMPL_NEUTRAL.pkl"}


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A project folder and another current folder beside it."""
    project, cwd = tmp_path / "project", tmp_path / "work"
    project.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return project


def test_a_relative_model_path_resolves_under_the_given_root(elsewhere):
    root = os.path.relpath(elsewhere, Path.cwd())  # "../project": a relative root too
    with pytest.raises(BodyModelError) as e:
        body_from_section(SECTION, root)
    msg = str(e.value)
    assert f"{elsewhere / 'models' / 'SMPL_NEUTRAL.pkl'} does not exist" in msg
    assert "body.model_path = 'models/SMPL_NEUTRAL.pkl'" in msg
    assert f"relative paths are taken from the project root {elsewhere}" in msg
    assert "set body.model_path in params.yaml to where it is" in msg
    assert "https://smpl.is.tue.mpg.de" in msg
    assert list(elsewhere.iterdir()) == [] and list(Path.cwd().iterdir()) == []


def test_without_a_root_the_checkout_is_the_root_not_the_current_folder(elsewhere):
    with pytest.raises(BodyModelError) as e:
        body_from_section({**SECTION, "model_path": "models/no_such_model.pkl"})
    assert f"{REPO / 'models' / 'no_such_model.pkl'} does not exist" in str(e.value)


def test_every_path_key_is_named(elsewhere):
    (elsewhere / "models").mkdir()
    (elsewhere / "models" / "SMPL_NEUTRAL.pkl").write_bytes(b"")
    section = {**SECTION, "h36m_regressor_path": "models/J_regressor_h36m.npy"}
    with pytest.raises(BodyModelError, match=r"body\.h36m_regressor_path = "
                       r"'models/J_regressor_h36m\.npy': .*/project/models/J_regressor_h36m\.npy "
                       r"does not exist"):
        body_from_section(section, elsewhere)


def test_a_home_relative_path_is_not_taken_from_the_root(elsewhere, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(BodyModelError) as e:
        body_from_section({**SECTION, "model_path": "~/smpl/SMPL_NEUTRAL.pkl"}, elsewhere)
    assert f"{tmp_path / 'home' / 'smpl' / 'SMPL_NEUTRAL.pkl'} does not exist" in str(e.value)


def test_a_checkpoints_section_does_not_advise_editing_params_yaml(elsewhere):
    with pytest.raises(BodyModelError) as e:
        body_from_section(SECTION, elsewhere, source="the model file final.pt")
    msg = str(e.value)
    assert "in the model file final.pt" in msg
    assert "editing params.yaml does not help" in msg and "dvc repro train" in msg
    assert f"put the file at {elsewhere / 'models' / 'SMPL_NEUTRAL.pkl'}" in msg
    assert "set body.model_path in params.yaml" not in msg
    with pytest.raises(BodyModelError, match=r"final\.pt was trained with body\.model = 'smpl' "
                       r"but names no body\.model_path"):
        body_from_section({"model": "smpl"}, elsewhere, source="the model file final.pt")
