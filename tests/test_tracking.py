import logging

import mlflow

from texturepose.tracking import flatten, resolve_uri, stage_run


def test_flatten_nested_params():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}) == {
        "a.b": 1,
        "a.c.d": "x",
        "e": [1, 2],
    }


def test_stage_run_logs_params_tags_and_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with stage_run("train", {"loss": {"texture": 0.5}}, project_root=tmp_path, uri=uri) as run:
        assert run.active
        run.log_metrics({"loss": 1.5}, step=3)
        run_id = run.run_id
    mlflow.set_tracking_uri(uri)
    got = mlflow.get_run(run_id)
    assert got.data.params["loss.texture"] == "0.5"
    assert got.data.tags["stage"] == "train"
    assert got.data.tags["dvc_experiment"] == "exp-test"
    assert got.data.metrics["loss"] == 1.5


def test_unreachable_store_does_not_stop_the_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")  # discard port: refused
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with stage_run("train", {"a": 1}, project_root=tmp_path) as run:
        run.log_metrics({"x": 1.0})  # must not raise
    assert not run.active


def test_default_store_is_inside_the_project(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_unreachable_server_is_probed_once_quickly_without_mlflow_retries(tmp_path, monkeypatch,
                                                                         caplog):
    # No retry settings: MLflow's own client would retry for minutes; the probe answers at once.
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    caplog.set_level(logging.WARNING, logger="texturepose.tracking")
    with stage_run("evaluate", {"a": 1}, project_root=tmp_path) as run:
        assert not run.active
    assert "http://127.0.0.1:9 does not answer" in caplog.text
    assert "goes on untracked" in caplog.text


def test_run_exists_and_an_untracked_evaluation_claims_nothing(tmp_path, monkeypatch, caplog):
    from texturepose.evaluation.mlflow_log import log_evaluation
    from texturepose.tracking import StageRun, run_exists

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with stage_run("train", {"a": 1}, project_root=tmp_path) as run:
        rid = run.run_id
    assert run_exists(rid, None, tmp_path)
    assert not run_exists("0123456789abcdef0123456789abcdef", None, tmp_path)
    caplog.set_level(logging.INFO, logger="texturepose.evaluation.mlflow_log")
    assert log_evaluation(StageRun(None, None), {"s": {"mpjpe": 1.0}}) == {}
    assert "nothing logged to MLflow" in caplog.text and "logged 1 metrics" not in caplog.text
