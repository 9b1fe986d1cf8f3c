"""MLflow runs for stages: one small module so every stage tracks the same way.

Default store: a SQLite file inside the project (``mlflow.db``, git-ignored), so tracking works
offline with no server. ``MLFLOW_TRACKING_URI`` or the ``tracking.uri`` param point it to a real
server instead. If the store cannot be reached the stage goes on, logs a warning once, and the
returned run object swallows further logging calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (lists kept as their string form)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def resolve_uri(uri: str | None, project_root: str | os.PathLike) -> str:
    """Environment first, then the param, then the embedded SQLite store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if uri:
        return uri
    return f"sqlite:///{Path(project_root).resolve() / 'mlflow.db'}"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _dvc_experiment_name() -> str | None:
    # `dvc exp run` sets DVC_EXP_NAME for the stages it runs (DVC >= 3).
    return os.environ.get("DVC_EXP_NAME")


class StageRun:
    """Thin wrapper over an active MLflow run that never raises on logging failures."""

    def __init__(self, mlflow_module: Any | None, run_id: str | None) -> None:
        self._mlflow = mlflow_module
        self.run_id = run_id
        self._warned = False

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def _call(self, fn: str, *args: Any, **kwargs: Any) -> None:
        if self._mlflow is None:
            return
        try:
            getattr(self._mlflow, fn)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - tracking must never stop training
            if not self._warned:
                log.warning("MLflow %s failed (%s); going on without tracking", fn, e)
                self._warned = True

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._call("log_metrics", {k: float(v) for k, v in metrics.items()}, step=step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = {k: str(v)[:500] for k, v in flatten(params).items()}
        self._call("log_params", flat)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._call("log_artifact", str(path), artifact_path=artifact_path)

    def log_image(self, image: Any, name: str) -> None:
        self._call("log_image", image, name)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._call("set_tags", {k: str(v) for k, v in tags.items()})


#: Seconds to wait for a tracking server before going on untracked (MLflow's own client retries
#: for minutes).
PROBE_TIMEOUT_S = 3.0


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when ``uri`` is not an HTTP(S) server or it answers within ``timeout`` seconds;
    else why it cannot be reached."""
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout):
            return None
    except OSError as e:
        return f"{uri} does not answer within {timeout:g} s ({e})"


def run_exists(run_id: str, uri: str | None, project_root: str | os.PathLike = ".") -> bool:
    """Whether the store at ``uri`` (resolved as :func:`stage_run` does) holds ``run_id``;
    False when the store cannot be reached."""
    resolved = resolve_uri(uri, Path(project_root))
    if probe_server(resolved):
        return False
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=resolved).get_run(run_id)
        return True
    except Exception:  # noqa: BLE001 - unknown run, unreadable store: both mean "not there"
        return False


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any],
    *,
    project_root: str | os.PathLike = ".",
    experiment: str = "texturepose",
    uri: str | None = None,
    run_id: str | None = None,
    enabled: bool = True,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[StageRun]:
    """Open (or resume, with ``run_id``) an MLflow run for a stage.

    Logs the flattened params and tags the run with the stage, git commit and DVC experiment
    name (and ``tags``). A new run is named ``run_name``, else ``<stage> <DVC experiment>``
    under ``dvc exp run``, else the stage. If MLflow cannot be reached, yields an inactive run
    and says so once.
    """
    if not enabled:
        yield StageRun(None, None)
        return
    root = Path(project_root)
    try:
        import mlflow

        resolved = resolve_uri(uri, root)
        unreachable = probe_server(resolved)
        if unreachable:
            raise ConnectionError(unreachable)
        mlflow.set_tracking_uri(resolved)
        mlflow.set_experiment(experiment)
        exp_name = _dvc_experiment_name()
        name = run_name or (f"{stage} {exp_name}" if exp_name else stage)
        active = mlflow.start_run(run_id=run_id, run_name=None if run_id else name)
    except Exception as e:  # noqa: BLE001 - unreachable server, bad URI, locked DB...
        log.warning("MLflow tracking unavailable (%s); the %s stage goes on untracked", e, stage)
        yield StageRun(None, None)
        return
    run = StageRun(mlflow, active.info.run_id)
    try:
        all_tags = {"stage": stage,
                    "git_commit": _git(["rev-parse", "HEAD"], root) or "unknown"}
        dirty = _git(["status", "--porcelain"], root)
        all_tags["git_dirty"] = str(bool(dirty))
        if exp_name:
            all_tags["dvc_experiment"] = exp_name
        run.set_tags({**all_tags, **(tags or {})})
        if run_id is None:
            run.log_params(params)
        yield run
    finally:
        with contextlib.suppress(Exception):
            mlflow.end_run()
