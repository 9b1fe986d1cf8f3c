"""Fault catalogue, `texturepose predict`: a bad input is skipped with a message naming the file,
the batch goes on with the rest, the summary counts the skips, and the exit status says whether
anything was predicted; bad options and models stop before any output is written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from test_predict import _checkpoint, _write

from texturepose.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(anny_body, tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "final.pt", anny_body)


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """Any RGB picture will do: these tests are about the files, not the pose."""
    rng = np.random.default_rng(0)
    return np.kron(rng.integers(0, 255, (12, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))


def _predict(*args: str | Path) -> int:
    return main(["predict", *map(str, args), "--quiet"])


def _skip_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("  skipped ")]


def _summary(caplog: pytest.LogCaptureFixture) -> str:
    return next(r.getMessage() for r in caplog.records if "input(s) skipped" in r.getMessage())


def test_an_unreadable_image_in_a_folder_is_skipped_and_counted(checkpoint, picture, tmp_path,
                                                                caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "good.png", picture)
    (folder / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    with caplog.at_level(logging.INFO):
        assert _predict(folder, "--out", tmp_path / "out", "--checkpoint", checkpoint) == 0
    assert (tmp_path / "out" / "good_overlay.png").is_file()
    assert "1 image(s)/frame(s)" in _summary(caplog) and "1 input(s) skipped" in _summary(caplog)
    (line,) = _skip_lines(caplog)
    assert str(folder / "cut.jpg") in line and "not a readable image" in line
    assert not list((tmp_path / "out").glob("cut*"))
    assert not list((tmp_path / "out").glob(".*"))


def test_a_zero_byte_video_is_skipped_and_the_images_go_on(checkpoint, picture, tmp_path,
                                                           caplog):
    img = _write(tmp_path / "a.png", picture)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    with caplog.at_level(logging.INFO):
        assert _predict(video, img, "--out", tmp_path / "out", "--checkpoint", checkpoint) == 0
    (line,) = _skip_lines(caplog)
    assert str(video) in line and "empty or missing video file" in line
    assert (tmp_path / "out" / "a_overlay.png").is_file()
    assert not list((tmp_path / "out").glob("clip*")) and not list((tmp_path / "out").glob(".*"))


def test_a_video_opencv_cannot_decode_says_to_convert_it(checkpoint, picture, tmp_path, caplog):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing after the header")
    with caplog.at_level(logging.INFO):
        assert _predict(video, "--out", tmp_path / "out", "--checkpoint", checkpoint) == 1
    (line,) = _skip_lines(caplog)
    assert str(video) in line and "convert it to H.264 MP4" in line
    assert not list((tmp_path / "out").iterdir())


def test_a_box_outside_the_image_is_skipped_naming_the_image(checkpoint, picture, tmp_path,
                                                             caplog):
    img = _write(tmp_path / "a.png", picture)
    with caplog.at_level(logging.INFO):
        assert _predict(img, "--bbox", "500,500,600,600", "--out", tmp_path / "out",
                        "--checkpoint", checkpoint) == 1  # nothing predicted
    (line,) = _skip_lines(caplog)
    h, w = picture.shape[:2]
    assert str(img) in line and f"lies outside the {w}x{h} image" in line
    assert not list((tmp_path / "out").iterdir())


def test_the_warning_for_a_box_outside_names_the_image_and_the_fix(checkpoint, picture,
                                                                   tmp_path, caplog):
    img = _write(tmp_path / "a.png", picture)
    with caplog.at_level(logging.WARNING):
        _predict(img, "--bbox", "500,500,600,600", "--out", tmp_path / "out",
                 "--checkpoint", checkpoint)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                  and "outside" in r.getMessage()]
    assert str(img) in warning and "--bbox" in warning


def test_a_bbox_that_is_not_four_numbers_is_named_in_the_skips(checkpoint, picture, tmp_path,
                                                               caplog):
    img = _write(tmp_path / "a.png", picture)
    with caplog.at_level(logging.INFO):
        assert _predict(img, "--bbox", "10,10,50", "--out", tmp_path / "out",
                        "--checkpoint", checkpoint) == 1
    (line,) = _skip_lines(caplog)
    assert str(img) in line and "--bbox '10,10,50': expected four numbers x0,y0,x1,y1" in line
    assert not list((tmp_path / "out").iterdir())


def test_a_missing_checkpoint_stops_before_touching_earlier_outputs(picture, tmp_path, caplog):
    img = _write(tmp_path / "a.png", picture)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_overlay.png").write_bytes(b"an earlier overlay")
    missing = tmp_path / "checkpoints" / "final.pt"
    assert _predict(img, "--out", out, "--checkpoint", missing) == 2
    assert f"{missing}: no such checkpoint" in caplog.text and "train one" in caplog.text
    assert (out / "a_overlay.png").read_bytes() == b"an earlier overlay"
    assert sorted(p.name for p in out.iterdir()) == ["a_overlay.png"]


def test_a_training_checkpoint_given_for_predict_says_to_use_final_pt(picture, tmp_path, caplog):
    import torch

    img = _write(tmp_path / "a.png", picture)
    last = tmp_path / "last.pt"
    torch.save({"format_version": 1, "step": 3}, last)
    assert _predict(img, "--out", tmp_path / "out", "--checkpoint", last) == 2
    assert f"{last}: not a usable trained model" in caplog.text
    assert "use final.pt" in caplog.text
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize(("option", "value"), [("--every", "0"), ("--max-frames", "-1")])
def test_a_bad_video_option_is_a_usage_error(picture, tmp_path, capsys, option, value):
    img = _write(tmp_path / "a.png", picture)
    with pytest.raises(SystemExit) as stop:
        _predict(img, option, value, "--out", tmp_path / "out")
    assert stop.value.code == 2
    assert "--every must be >= 1 and --max-frames >= 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [
    pytest.param("{\"people\": [{\"pose_keypoints_2d\": [10, 20", id="cut-short"),
    pytest.param(json.dumps({"people": [{"pose_keypoints_2d": [10, 20, 0.9, 30]}]}),
                 id="not-triples"),
    pytest.param(json.dumps({"persons": []}), id="neither-openpose-nor-coco"),
])
def test_a_malformed_openpose_json_names_it_and_writes_nothing(checkpoint, picture, tmp_path,
                                                               caplog, content):
    img = _write(tmp_path / "a.png", picture)
    keypoints = tmp_path / "a_keypoints.json"
    keypoints.write_text(content)
    with caplog.at_level(logging.INFO):
        assert _predict(img, "--keypoints", keypoints, "--out", tmp_path / "out",
                        "--checkpoint", checkpoint) == 1
    (line,) = _skip_lines(caplog)
    assert str(img) in line and str(keypoints) in line
    assert not list((tmp_path / "out").iterdir())


def test_a_missing_input_is_listed_and_the_others_go_on(checkpoint, picture, tmp_path, caplog):
    img = _write(tmp_path / "a.png", picture)
    with caplog.at_level(logging.INFO):
        assert _predict(tmp_path / "typo.png", img, "--out", tmp_path / "out",
                        "--checkpoint", checkpoint) == 0
    (line,) = _skip_lines(caplog)
    assert str(tmp_path / "typo.png") in line and "no such file or folder" in line
    assert (tmp_path / "out" / "a_overlay.png").is_file()


def test_a_rerun_on_a_now_broken_image_keeps_the_earlier_outputs(checkpoint, picture, tmp_path,
                                                                 caplog):
    img = _write(tmp_path / "a.png", picture)
    out = tmp_path / "out"
    assert _predict(img, "--out", out, "--checkpoint", checkpoint) == 0
    before = {p: p.read_bytes() for p in out.iterdir()}
    assert {p.name for p in before} >= {"a_overlay.png", "a_person0.json", "a_person0.obj"}
    img.write_bytes(img.read_bytes()[:40])  # the file got cut short since
    with caplog.at_level(logging.INFO):
        assert _predict(img, "--out", out, "--checkpoint", checkpoint) == 1
    assert {p: p.read_bytes() for p in out.iterdir()} == before
    (line,) = _skip_lines(caplog)
    assert str(img) in line
