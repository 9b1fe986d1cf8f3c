"""Fault catalogue, stage inputs: a missing or foreign input file stops the stage with SystemExit
and a message naming the file and the stage to run; outputs of earlier runs are left as they
were (byte-identical) and no temporary file is left behind."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch
import yaml
from test_predict import _checkpoint
from test_training import tiny_params, write_tiny_dataset

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from stages import evaluate as evaluate_stage  # noqa: E402
from stages import mocap as mocap_stage  # noqa: E402
from stages import pairs as pairs_stage  # noqa: E402
from stages import report as report_stage  # noqa: E402
from stages import synthesize as synthesize_stage  # noqa: E402
from stages import train as train_stage  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _stop_message(fn, *args) -> str:
    """Run a stage's main; it must stop with SystemExit carrying a one-line message."""
    with pytest.raises(SystemExit) as stop:
        fn(*args)
    text = stop.value.code
    assert isinstance(text, str), f"the stage stopped with code {text!r} and no message"
    assert "Traceback" not in text
    return text


def _temporaries(root: Path) -> list[Path]:
    """Temporaries of texturepose.files writers (``.<name>.<pid>.<random>.tmp<suffix>``)."""
    return [p for p in root.rglob(".*") if ".tmp" in p.name]


def _snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def _unchanged(snapshot: dict[Path, bytes]) -> None:
    for path, data in snapshot.items():
        assert path.read_bytes() == data, f"{path} was changed by a failed run"


def _read_only_folder(folder: Path) -> None:
    """chmod a folder read-only; skip where chmod does not bind (root)."""
    folder.chmod(0o555)
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except PermissionError:
        return
    probe.unlink()
    folder.chmod(0o755)
    pytest.skip(f"chmod does not stop writes here (euid {os.geteuid()})")


# --- train --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory, anny_body) -> Path:
    """A tiny training set, its pairs and mocap file, and the UV atlas cache, built once."""
    from texturepose.training.factory import _atlas

    root = tmp_path_factory.mktemp("tiny")
    write_tiny_dataset(root)
    _atlas(anny_body, 32, root / "data" / "cache" / "uv_atlas_anny_32.npz")
    return root


@pytest.fixture
def project(tiny, tmp_path, anny_body, monkeypatch) -> Path:
    """A train-stage project folder (copies of the tiny inputs) whose body model is the session's
    Anny; tracking off."""
    import texturepose.training.run as run_module

    root = tmp_path / "proj"
    shutil.copytree(tiny / "data", root / "data")
    params = tiny_params(**{"train.steps": 2, "train.batch_size": 1, "loss.adversarial": 0.0})
    params["tracking"] = {"enabled": False}
    params["body"] = {"model": "anny"}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(run_module, "body_from_section", lambda *a, **k: anny_body)
    return root


def _train(root: Path, *extra: str) -> int:
    return train_stage.main(["--params", str(root / "params.yaml"), "--root", str(root), *extra])


def test_train_without_its_training_file_names_the_stage_that_writes_it(project):
    (project / "data" / "processed" / "tiny_train.h5").unlink()
    text = _stop_message(_train, project)
    assert text.startswith("train: data.mix.tiny = 1.0 but neither ")
    assert "tiny_train.h5" in text and "synthesize or preprocess_datasets" in text
    assert not (project / "checkpoints").exists()


def test_train_without_its_pairs_table_says_to_run_the_pairs_stage(project):
    (project / "data" / "pairs" / "tiny_train.parquet").unlink()
    text = _stop_message(_train, project)
    assert "data.pairs_per_batch = 1" in text and "run the pairs stage" in text
    assert not (project / "checkpoints").exists()


def test_train_without_its_pairs_table_names_the_file(project):
    (project / "data" / "pairs" / "tiny_train.parquet").unlink()
    text = _stop_message(_train, project)
    assert "tiny_train.parquet" in text


def test_train_without_the_mocap_file_names_the_mocap_stage(project):
    mocap = project / "data" / "mocap" / "anny_poses.h5"
    mocap.unlink()
    text = _stop_message(_train, project)
    assert str(mocap) in text and "dvc repro mocap" in text
    assert not (project / "checkpoints").exists()


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_a_broken_last_checkpoint_is_refused_and_kept(project, kind):
    last = project / "checkpoints" / "last.pt"
    last.parent.mkdir()
    if kind == "garbage":
        last.write_bytes(b"\x00\x01 not a checkpoint at all")
    else:
        torch.save({"format_version": 1, "weights": torch.zeros(4096)}, last)
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = _snapshot(last)
    text = _stop_message(_train, project)
    assert str(last) in text and "train.resume: false" in text
    _unchanged(before)
    assert not (project / "checkpoints" / "final.pt").exists()
    assert not _temporaries(project)


def test_an_unreachable_mlflow_server_trains_untracked_and_says_so_once(project, caplog):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tracking"] = {"enabled": True, "uri": "http://127.0.0.1:9", "experiment": "t"}
    params["train"]["steps"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert _train(project) == 0
    assert time.monotonic() - t0 < 30  # it waited 4 minutes for MLflow's retries before
    assert (project / "checkpoints" / "final.pt").is_file()
    mlflow_lines = [r.getMessage() for r in caplog.records if "MLflow" in r.getMessage()]
    assert mlflow_lines and "http://127.0.0.1:9" in mlflow_lines[0]
    assert "untracked" in mlflow_lines[0]
    assert not (project / "mlflow.db").exists()


def test_the_train_stage_warns_about_an_unreachable_mlflow_once(project, caplog):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tracking"] = {"enabled": True, "uri": "http://127.0.0.1:9", "experiment": "t"}
    params["train"]["steps"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with caplog.at_level(logging.WARNING):
        assert _train(project, "--stop-at", "0") == 0
    assert len([r for r in caplog.records if "MLflow" in r.getMessage()]) == 1


def test_an_unreachable_mlflow_store_is_one_warning_and_no_retries(tmp_path, caplog,
                                                                    monkeypatch):
    import mlflow

    from texturepose.tracking import stage_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    calls: list[str] = []
    monkeypatch.setattr(mlflow, "set_tracking_uri", lambda uri: calls.append(uri))
    with caplog.at_level(logging.WARNING):
        with stage_run("evaluate", {"a": 1}, project_root=tmp_path,
                       uri="http://127.0.0.1:9") as run:
            run.log_metrics({"x": 1.0}, step=1)
            run.log_params({"b": 2})
            run.log_artifact(tmp_path / "missing.txt")
    assert not run.active and calls == []  # MLflow's client (and its retries) never started
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "http://127.0.0.1:9" in warnings[0] and "evaluate stage goes on untracked" in warnings[0]


def test_an_atlas_cache_in_a_read_only_folder_does_not_stop_training(anny_body, tmp_path,
                                                                     caplog):
    from texturepose.training.factory import _atlas

    cache = tmp_path / "cache"
    cache.mkdir()
    _read_only_folder(cache)
    try:
        atlas = _atlas(anny_body, 16, cache / "atlas16.npz")
    finally:
        cache.chmod(0o755)
    assert atlas.num_faces == int(anny_body.faces.shape[0])
    assert "could not write the UV atlas cache" in caplog.text
    assert not list(cache.iterdir())


# --- evaluate -----------------------------------------------------------------------------------

@pytest.fixture
def eval_project(tmp_path, monkeypatch, anny_body) -> Path:
    """A project root for the evaluate stage (the repository's params.yaml, files under
    ``tmp_path``) with an earlier run's metrics.json."""
    import texturepose.body as body_module

    monkeypatch.setattr(evaluate_stage, "REPO", tmp_path)
    monkeypatch.setattr(body_module, "body_from_section", lambda *a, **k: anny_body)
    (tmp_path / "reports" / "eval" / "synthetic").mkdir(parents=True)
    (tmp_path / "reports" / "metrics.json").write_text('{"synthetic": {"mpjpe": 1.0}}\n')
    (tmp_path / "reports" / "eval" / "synthetic" / "per_joint.csv").write_text("joint,mpjpe\n")
    return tmp_path


def _eval_outputs(root: Path) -> dict[Path, bytes]:
    return _snapshot(*(p for p in (root / "reports").rglob("*") if p.is_file()))


def test_evaluate_without_a_checkpoint_says_to_train(eval_project):
    before = _eval_outputs(eval_project)
    text = _stop_message(lambda: evaluate_stage.main([]))
    assert str(eval_project / "checkpoints" / "final.pt") in text and "dvc repro train" in text
    _unchanged(before)


def test_evaluate_on_another_schema_version_names_the_file(eval_project, anny_body):
    _checkpoint(eval_project / "checkpoints" / "final.pt", anny_body)
    h5, *_ = write_tiny_dataset(eval_project / "tiny", frames=1, cameras=1)
    test_file = eval_project / "data" / "processed" / "synthetic_test.h5"
    test_file.parent.mkdir(parents=True)
    shutil.move(h5, test_file)
    with h5py.File(test_file, "r+") as f:
        f.attrs["schema_version"] = 2
    before = _eval_outputs(eval_project)
    text = _stop_message(lambda: evaluate_stage.main([]))
    assert str(test_file) in text and "schema_version 2" in text
    assert "rerun the preprocessing stage" in text
    _unchanged(before)
    assert not _temporaries(eval_project)


def test_evaluate_on_a_file_that_is_not_hdf5_names_it(eval_project, anny_body):
    _checkpoint(eval_project / "checkpoints" / "final.pt", anny_body)
    test_file = eval_project / "data" / "processed" / "synthetic_test.h5"
    test_file.parent.mkdir(parents=True)
    test_file.write_text("subject,frame\nS1,0\n")  # a CSV saved under the HDF5 name
    before = _eval_outputs(eval_project)
    text = _stop_message(lambda: evaluate_stage.main([]))
    assert str(test_file) in text and "not a readable HDF5 file" in text
    assert "rerun the stage that writes it" in text
    _unchanged(before)


# --- pairs, synthesize --------------------------------------------------------------------------

def test_pairs_listing_an_absent_dataset_names_it_and_keeps_old_tables(tmp_path):
    out = tmp_path / "pairs"
    out.mkdir()
    old = out / "synthetic_train.parquet"
    old.write_bytes(b"an earlier table")
    before = _snapshot(old)
    text = _stop_message(pairs_stage.main, ["--in-dir", str(tmp_path / "processed"),
                                            "--out-dir", str(out),
                                            "--reports", str(tmp_path / "reports")])
    assert "pairs.datasets lists 'synthetic_train'" in text
    assert str(tmp_path / "processed" / "synthetic_train.h5") in text and "dvc repro" in text
    _unchanged(before)
    assert not (tmp_path / "reports").exists()


@pytest.fixture(scope="module")
def synthetic_train(tmp_path_factory) -> Path:
    """A small file in the pairs stage's input layout: ``processed/synthetic_train.h5``."""
    root = tmp_path_factory.mktemp("pairs_in")
    h5, *_ = write_tiny_dataset(root, frames=2, cameras=2)
    (root / "processed").mkdir()
    return shutil.move(h5, root / "processed" / "synthetic_train.h5")


def test_pairs_into_a_path_blocked_by_a_file_names_it(synthetic_train, tmp_path):
    blocker = tmp_path / "pairs"
    blocker.write_text("a file where the output folder should be")
    text = _stop_message(pairs_stage.main, ["--in-dir", str(synthetic_train.parent),
                                            "--out-dir", str(blocker),
                                            "--reports", str(tmp_path / "reports")])
    assert text.startswith("pairs: ") and str(blocker) in text and "writable" in text
    assert blocker.read_text() == "a file where the output folder should be"
    assert not _temporaries(tmp_path)


def test_pairs_into_a_read_only_folder_names_it(synthetic_train, tmp_path):
    out = tmp_path / "pairs"
    out.mkdir()
    _read_only_folder(out)
    try:
        text = _stop_message(pairs_stage.main, ["--in-dir", str(synthetic_train.parent),
                                                "--out-dir", str(out),
                                                "--reports", str(tmp_path / "reports")])
    finally:
        out.chmod(0o755)
    assert text.startswith("pairs: ") and str(out) in text and "writable" in text
    assert not list(out.iterdir())


def test_synthesize_without_mocap_poses_says_to_run_the_mocap_stage(tmp_path):
    out = tmp_path / "processed"
    out.mkdir()
    old = out / "synthetic_train.h5"
    old.write_bytes(b"an earlier render")
    before = _snapshot(old)
    mocap = tmp_path / "mocap" / "anny_poses.h5"
    text = _stop_message(synthesize_stage.main, ["--mocap", str(mocap), "--out-dir", str(out),
                                                 "--reports", str(tmp_path / "reports")])
    assert str(mocap) in text and "dvc repro mocap" in text
    _unchanged(before)
    assert sorted(out.iterdir()) == [old]


# --- mocap --------------------------------------------------------------------------------------

def _mocap_params(tmp_path: Path, glob: str) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["mocap"].update(
        sources=[{"name": "mine", "glob": glob, "licence": "test"}], max_frames_per_clip=3,
        test_every=0, out=str(tmp_path / "out" / "anny_poses.h5"),
        metrics=str(tmp_path / "out" / "mocap_metrics.json"),
        fit={"method": "batched", "iters_shape": 1, "shape_frames": 1, "iters": 2, "threads": 1})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture
def fast_body(monkeypatch, anny_body) -> None:
    import texturepose.body as body_module

    monkeypatch.setattr(body_module, "body_from_section", lambda *a, **k: anny_body)


def test_a_mocap_glob_that_matches_nothing_names_the_key(tmp_path, fast_body):
    glob = str(tmp_path / "bvh" / "*.bvh")
    params = _mocap_params(tmp_path, glob)
    (tmp_path / "out").mkdir()
    old = tmp_path / "out" / "anny_poses.h5"
    old.write_bytes(b"earlier poses")
    before = _snapshot(old)
    text = _stop_message(mocap_stage.main, ["--params", str(params)])
    assert f"mocap.sources[0].glob = {glob!r}" in text and "point the globs" in text
    _unchanged(before)
    assert sorted((tmp_path / "out").iterdir()) == [old]


def test_an_unreadable_bvh_is_skipped_and_counted(tmp_path, fast_body):
    folder = tmp_path / "bvh"
    folder.mkdir()
    clip = REPO / "assets" / "mocap" / "cmu" / "aclstm_indian_13.bvh.gz"
    (folder / "good.bvh").write_bytes(gzip.decompress(clip.read_bytes()))
    (folder / "broken.bvh").write_text("HIERARCHY\nROOT Hips\n{\n  OFFSET 0 0\n")
    mocap_stage.main(["--params", str(_mocap_params(tmp_path, str(folder / "*.bvh")))])
    metrics = json.loads((tmp_path / "out" / "mocap_metrics.json").read_text())
    assert metrics["clips_used"] == 1 and metrics["clips_skipped"] == 1
    (skipped,) = metrics["skipped_files"]
    assert skipped["file"].endswith("broken.bvh") and skipped["reason"]
    assert (tmp_path / "out" / "anny_poses.h5").is_file()
    assert not _temporaries(tmp_path)


# --- report -------------------------------------------------------------------------------------

@pytest.fixture
def report_project(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(report_stage, "REPO", tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "index.html").write_text("<html>an earlier report</html>")
    return tmp_path


def test_report_without_metrics_says_to_run_evaluate(report_project):
    before = _snapshot(report_project / "reports" / "index.html")
    text = _stop_message(report_stage.main)
    assert str(report_project / "reports" / "metrics.json") in text and "run evaluate" in text
    _unchanged(before)
    assert not _temporaries(report_project)


def test_report_on_a_half_written_metrics_file_says_to_rerun_evaluate(report_project):
    (report_project / "reports" / "metrics.json").write_text('{"synthetic": {"mpjpe": 1')
    before = _snapshot(report_project / "reports" / "index.html")
    text = _stop_message(report_stage.main)
    assert "metrics.json: not valid JSON" in text and "rerun evaluate" in text
    _unchanged(before)


def test_report_into_a_read_only_folder_names_it(report_project):
    reports = report_project / "reports"
    (reports / "metrics.json").write_text('{"synthetic": {"mpjpe": 1.0}}')
    before = _snapshot(reports / "index.html")
    _read_only_folder(reports)
    try:
        text = _stop_message(report_stage.main)
    finally:
        reports.chmod(0o755)
    assert text.startswith("report: ") and str(reports) in text and "writable" in text
    _unchanged(before)
    assert not _temporaries(report_project)


def test_evaluate_reads_the_params_and_root_it_is_given(tmp_path, monkeypatch):
    """`stages/evaluate.py --params FILE --root DIR`: the checkpoint of that file, under DIR."""
    params = yaml.safe_load((Path(evaluate_stage.REPO) / "params.yaml").read_text())
    params["evaluate"]["checkpoint"] = "models/other.pt"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(params))
    text = _stop_message(lambda: evaluate_stage.main(
        ["--params", str(tmp_path / "recipe.yaml"), "--root", str(tmp_path / "proj")]))
    assert str(tmp_path / "proj" / "models" / "other.pt") in text
