"""Evaluation outs (metrics JSON, CSV, plot, overlay grid, MLflow) and the HTML report, the latter
opened in headless Chromium: the page loads from file://, every picture decodes, and the numbers
it shows are those of metrics.json."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from texturepose.evaluation.evaluate import summarise, summarise_2d
from texturepose.evaluation.mlflow_log import PARENT_TAG, flatten_metrics, log_evaluation
from texturepose.evaluation.outputs import (
    overlay_grid,
    plot_error_by_joint,
    select_examples,
    write_csv,
    write_summary,
)
from texturepose.evaluation.report import format_number, write_report
from texturepose.files import write_json
from texturepose.keypoints import NUM_KEYPOINTS, SUPERSET

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

METRICS = {
    "h36m_p1": {"mpjpe": 71.2345, "pa_mpjpe": 49.876, "n": 2181, "skipped": 0},
    "h36m_p2": {"mpjpe": 68.01, "pa_mpjpe": 45.55, "n": 548, "skipped": 3},
    "lsp": {"pck@0.1": 0.61234, "pck@0.2": 0.8765, "err_norm": 0.1234, "n": 1000},
    "synthetic": {"mpjpe": float("nan"), "pve": 88.04, "n": 0},
}


def test_metrics_json_is_valid_and_atomic(tmp_path):
    path = tmp_path / "reports" / "metrics.json"
    write_json(path, {"a": {"x": np.float32(1.5), "y": float("nan")}, "n": np.int64(3)})
    assert json.loads(path.read_text()) == {"a": {"x": 1.5, "y": None}, "n": 3}
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text())["n"] == 3  # the old file survives a failed write
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temporary left


def test_csv_and_plot(tmp_path):
    df = pd.DataFrame({"joint": ["a", "b"], "mpjpe": [10.12345, 20.0], "pa_mpjpe": [5.0, 9.0]})
    write_csv(tmp_path / "j.csv", df)
    assert pd.read_csv(tmp_path / "j.csv")["mpjpe"].tolist() == [10.123, 20.0]
    plot_error_by_joint(df, tmp_path / "j.png")
    img = cv2.imread(str(tmp_path / "j.png"))
    assert img is not None and img.shape[0] > 100 and img.std() > 0
    with pytest.raises(ValueError, match="none of the columns"):
        plot_error_by_joint(df, tmp_path / "k.png", columns=("pve",))


def test_write_summary_3d_and_2d(tmp_path):
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(4, NUM_KEYPOINTS, 3))
    s3 = summarise(gt + 0.01 * rng.normal(size=gt.shape), gt, groups={"sequence": list("aabb")})
    paths = write_summary(tmp_path / "h36m", s3, "h36m")
    assert set(paths) == {"per_joint", "by_joint", "per_sequence", "per_sample"}
    assert len(pd.read_csv(paths["per_joint"])) == len(SUPERSET)
    assert pd.read_csv(paths["per_sequence"])["n"].tolist() == [2, 2]
    assert cv2.imread(str(paths["by_joint"])) is not None
    s2 = summarise_2d(gt[..., :2], gt[..., :2], np.ones((4, NUM_KEYPOINTS)))
    paths = write_summary(tmp_path / "lsp", s2, "lsp", per_sample=False)
    assert "pck@0.2" in pd.read_csv(paths["per_joint"]).columns and "per_sample" not in paths


def test_select_examples():
    errors = np.array([5.0, 1.0, np.nan, 9.0, 3.0, 7.0, 2.0])
    picks = select_examples(errors, k=1)
    assert picks == [("best", 1), ("median", 0), ("worst", 3)]  # sorted: 1 2 3 [5] 7 9
    two = select_examples(errors, k=2)
    assert [t for t, _ in two] == ["best"] * 2 + ["median"] * 2 + ["worst"] * 2
    assert len(select_examples(errors[:2], k=3)) == 2  # no repeats


class LazyRenders:
    """A sequence that renders on access and records which samples were asked for."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.asked = n, seed, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        self.asked.append(i)
        img = np.zeros((64, 48, 3), np.uint8)
        img[:, :, self.seed % 3] = 40 + 10 * i
        return img


def test_overlay_grid_reads_only_selected(tmp_path):
    errors = np.arange(20, dtype=float)[::-1]
    images, front, side = LazyRenders(20, 0), LazyRenders(20, 1), LazyRenders(20, 2)
    picks = overlay_grid(images, front, side, errors, tmp_path / "grid.png", k=2, height=64)
    assert [i for _, i in picks] == [19, 18, 10, 9, 0, 1]
    assert sorted(images.asked) == sorted(i for _, i in picks) == sorted(side.asked)
    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid.shape[0] == 6 * (64 + 22 + 4)  # six rows, each a caption bar and the tiles


def test_overlay_grid_with_the_mesh_renderer(tmp_path):
    overlay = pytest.importorskip("texturepose.render.overlay", reason="render helper not there")
    trimesh = pytest.importorskip("trimesh")
    box = trimesh.creation.box(extents=(0.4, 0.8, 0.2))
    verts = np.asarray(box.vertices, np.float32) + np.array([0, 0, 3.0], np.float32)
    faces = np.asarray(box.faces)
    k = np.array([[150.0, 0, 32], [0, 150.0, 32], [0, 0, 1]])
    crops = [np.full((64, 64, 3), 30 * i, np.uint8) for i in range(4)]

    class Front:
        def __getitem__(self, i):
            return overlay.render_overlay(crops[i], verts, faces, k)

    class Side:
        def __getitem__(self, i):
            return overlay.render_side_view(verts, faces, k, (64, 64))

    path = tmp_path / "grid.png"
    overlay_grid(crops, Front(), Side(), np.array([3.0, 1.0, 2.0, 4.0]), path, k=1, height=64)
    grid = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    tiles = grid[22:86]  # first row (best = sample 1), below its caption
    front, side = tiles[:, 68:132], tiles[:, 136:200]
    assert (np.abs(front.astype(int) - 30).sum(-1) > 60).mean() > 0.05  # the mesh covers it
    assert (side.min(-1) < 250).mean() > 0.02  # the side view is not blank


def test_log_evaluation_to_training_run(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from texturepose.tracking import stage_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    art = tmp_path / "grid.png"
    cv2.imwrite(str(art), np.zeros((4, 4, 3), np.uint8))
    with stage_run("train", {"a": 1}, project_root=tmp_path, uri=uri) as train:
        train_id = train.run_id
    with stage_run("evaluate", {}, project_root=tmp_path, uri=uri) as run:
        log_evaluation(run, METRICS, [art], train_run_id=train_id)
        eval_id = run.run_id
    client = mlflow.tracking.MlflowClient(uri)
    got = client.get_run(eval_id)
    assert got.data.tags[PARENT_TAG] == train_id
    assert got.data.metrics["eval/h36m_p1/mpjpe"] == pytest.approx(71.2345)
    assert got.data.metrics["eval/lsp/pck_0.2"] == pytest.approx(0.8765)
    assert "eval/synthetic/mpjpe" not in got.data.metrics  # NaN is not logged
    assert [a.path for a in client.list_artifacts(eval_id, "evaluation")] == ["evaluation/grid.png"]
    with pytest.raises(FileNotFoundError, match="missing.png"):
        log_evaluation(run, METRICS, [tmp_path / "missing.png"])
    assert flatten_metrics({"a": {"b": True, "c": "x", "d": 2}}) == {"eval/a/d": 2.0}


def make_inputs(tmp_path: Path) -> dict:
    reports = tmp_path / "reports"
    write_json(reports / "metrics.json", METRICS)
    per_joint = pd.DataFrame({"joint": ["l_knee", "r_knee"], "mpjpe": [80.0, 70.0]})
    write_csv(reports / "per_joint.csv", per_joint)
    plot_error_by_joint(per_joint, reports / "error_by_joint.png")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (40, 30, 3), dtype=np.uint8) for _ in range(5)]
    overlay_grid(imgs, imgs, imgs, rng.uniform(0, 100, 5), reports / "overlays.png", k=1)
    cv2.imwrite(str(reports / "photo.jpg"), imgs[0])
    (reports / "summary.json").write_text(json.dumps({
        "commit": "abc1234", "date": "2026-12-01T10:00:00+00:00", "seeds": [0, 1, 2],
        "steps": [1200], "overrides": [],
        "rows": [{"eval_set": "synthetic", "configuration": "no <texture>", "seeds": 3,
                  "n": 1024, "pa_mpjpe_mean": 52.25, "pa_mpjpe_std": 1.5},
                 {"eval_set": "synthetic", "configuration": "mean pose (reference)",
                  "seeds": None, "n": 1024, "pa_mpjpe_mean": 120.0}]}))
    return {
        "metrics": reports / "metrics.json",
        "images": {
            "Error by joint": reports / "error_by_joint.png",
            "Best, median and worst": reports / "overlays.png",
            "A JPEG": reports / "photo.jpg",
        },
        "tables": {"Per joint": reports / "per_joint.csv"},
        "ablations": reports / "summary.json",
    }


def test_report_static_content(tmp_path):
    inputs = make_inputs(tmp_path)
    out = write_report(tmp_path / "reports" / "index.html", **inputs)
    page = out.read_text()
    assert "<script" not in page and not re.search(r'(src|href)="(?!data:)', page)  # no fetches
    assert page.count('<img src="data:image/') == 3
    assert "no &lt;texture&gt;" in page  # table cells are escaped
    assert "52.2 \u00b1 1.500" in page and "abc1234" in page and "[0, 1, 2]" in page
    again = write_report(tmp_path / "again.html", **inputs).read_text()
    assert again == page  # deterministic for DVC
    with pytest.raises(FileNotFoundError, match="nope.png"):
        write_report(tmp_path / "x.html", METRICS, images={"x": tmp_path / "nope.png"})
    with pytest.raises(FileNotFoundError, match="run evaluate"):
        write_report(tmp_path / "x.html", tmp_path / "missing.json")
    assert not (tmp_path / "x.html").exists()


# Appended to a copy of the page: report what the browser decoded and displays.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images].map(i => ({alt: i.alt, w: i.naturalWidth, ok: i.complete}));
  const cells = [...document.querySelectorAll('td[data-metric]')].map(
    td => ({key: td.dataset.metric, value: td.dataset.value, text: td.textContent}));
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({title: document.title, imgs, cells});
  document.body.appendChild(pre);
});
</script>"""


def leaves(d: dict, path: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from leaves(v, f"{path}{k}/")
        else:
            yield f"{path}{k}", v


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_in_headless_chromium(tmp_path):
    inputs = make_inputs(tmp_path)
    out = write_report(tmp_path / "reports" / "index.html", **inputs)
    probe = out.with_name("probe.html")
    probe.write_text(out.read_text().replace("</body>", PROBE + "</body>"))
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'chrome'}",
        "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000",
        "--dump-dom", probe.as_uri(),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
    assert m, (
        f"page did not load or the probe did not run (rc {res.returncode}): {res.stderr[-2000:]}"
    )
    got = json.loads(html.unescape(m.group(1)))
    assert got["title"] == "texturepose evaluation"
    assert [i["alt"] for i in got["imgs"]] == list(inputs["images"])
    assert all(i["ok"] and i["w"] > 0 for i in got["imgs"]), got["imgs"]
    shown = {c["key"]: c for c in got["cells"]}
    written = dict(leaves(json.loads(inputs["metrics"].read_text())))
    assert set(shown) == set(written)
    for key, value in written.items():
        cell = shown[key]
        assert json.loads(cell["value"]) == value, key
        if value is None:
            assert cell["text"] == "\u2014"
            continue
        decimals = len(cell["text"].partition(".")[2])
        assert math.isclose(float(cell["text"]), value, abs_tol=0.5 * 10**-decimals + 1e-12), key
        assert cell["text"] == format_number(value)
