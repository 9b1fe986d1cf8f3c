"""One static, self-contained HTML page of an evaluation: metrics table, tables, plots, overlays.

Pictures are embedded as base64 data URIs, so the page opens from ``file://``, an e-mail or a CI
artifact without its folder and without a server. The page has no script and no timestamp: the
same inputs give the same bytes (a DVC out).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from texturepose.files import atomic_path

log = logging.getLogger(__name__)

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
.note { color: #666; font-size: 0.9em; }
"""


def format_number(v: Any) -> str:
    """Shown text of a metric: integers as is, |x| >= 10 with one decimal (mm), else three
    decimals (fractions such as PCK); missing values as an em dash."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "\u2014"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, int):
        return str(v)
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"


def _metric_rows(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Nested metrics -> ``{row: {metric: value}}``: the leaf's key is the column, the path
    above it the row ("" for top-level numbers)."""
    rows: dict[str, dict[str, Any]] = {}

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for k, v in node.items():
            if isinstance(v, Mapping):
                walk(v, path + (str(k),))
            else:
                rows.setdefault("/".join(path), {})[str(k)] = v

    walk(metrics, ())
    return rows


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """HTML table: one row per evaluation set, one column per metric. Each cell carries
    ``data-metric="set/metric"`` and the full-precision ``data-value`` for machine checks."""
    rows = _metric_rows(metrics)
    cols: list[str] = []
    for r in rows.values():
        cols += [c for c in r if c not in cols]
    counts = [c for c in ("n", "skipped", "refine_steps") if c in cols]  # after the metrics
    cols = [c for c in cols if c not in counts] + counts
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = []
    for name, vals in rows.items():
        cells = []
        for c in cols:
            key = f"{name}/{c}" if name else c
            if c not in vals:
                cells.append("<td></td>")
                continue
            v = vals[c]
            data = json.dumps(v if not isinstance(v, float) or math.isfinite(v) else None)
            cells.append(
                f'<td data-metric="{e(key)}" data-value="{e(data)}">{e(format_number(v))}</td>'
            )
        body.append(f"<tr><th>{e(name or 'all')}</th>{''.join(cells)}</tr>")
    return (
        f'<table id="metrics"><thead><tr><th>evaluation set</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _data_uri(path: Path) -> str:
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"{path}: unsupported picture type {path.suffix!r}; use {sorted(_MIME)}")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _csv_table(path: Path, max_rows: int) -> str:
    df = pd.read_csv(path)
    note = ""
    if len(df) > max_rows:
        note = (
            f'<p class="note">First {max_rows} of {len(df)} rows; see {html.escape(path.name)}.</p>'
        )
        df = df.head(max_rows)
    return df.to_html(index=False, escape=True, na_rep="\u2014", float_format=format_number) + note


def ablation_table(summary: Mapping[str, Any]) -> str:
    """The ablation summary as HTML: "mean ± std" over seeds per configuration, under a line
    saying which commit, date, seeds and steps produced it."""
    e = html.escape
    head = (f"<p class='note'>Run here by scripts/ablation.py at commit {e(str(summary['commit']))}"
            f" on {e(str(summary['date']))}: seeds {e(str(summary['seeds']))}, steps "
            f"{e(str(summary['steps']))}, overrides {e(str(summary.get('overrides') or 'none'))}."
            " Mean ± standard deviation over seeds.</p>")
    columns = [("pa_mpjpe", "PA-MPJPE (mm)"), ("mpjpe", "MPJPE (mm)"), ("pck@0.1", "PCK@0.1"),
               ("pck@0.2", "PCK@0.2"), ("head_pck@0.2", "head PCK@0.2")]
    rows = []
    for r in summary.get("rows", []):
        cells = [e(str(r.get("eval_set"))), e(str(r.get("configuration"))),
                 e(str(r.get("seeds") or "\u2014")), e(str(r.get("n")))]
        for key, _ in columns:
            mean, std = r.get(f"{key}_mean"), r.get(f"{key}_std")
            text = format_number(mean)
            if mean is not None and std is not None:
                text += " \u00b1 " + format_number(std)
            cells.append(e(text))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{e(h)}</th>" for h in
                     ["set", "configuration", "seeds", "n", *(c for _, c in columns)])
    return (head + f"<table><thead><tr>{header}</tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


def write_report(
    out: str | os.PathLike,
    metrics: Mapping[str, Any] | str | os.PathLike,
    images: Mapping[str, str | os.PathLike] | Sequence[tuple[str, str | os.PathLike]] = (),
    tables: Mapping[str, str | os.PathLike] | Sequence[tuple[str, str | os.PathLike]] = (),
    ablations: str | os.PathLike | None = None,
    title: str = "texturepose evaluation",
    max_rows: int = 200,
) -> Path:
    """Write the report page to ``out`` (atomically) and return its path.

    ``metrics`` is the metrics mapping or the path of ``metrics.json``; ``images`` and
    ``tables`` map captions to PNG/JPEG/SVG files and CSV files (in page order); ``ablations``
    is the ``summary.json`` that ``scripts/ablation.py`` wrote, shown with its commit, date and
    seeds when the file exists. Missing pictures or tables raise FileNotFoundError naming them.
    """
    source = "metrics"
    if not isinstance(metrics, Mapping):
        source = Path(metrics).name
        try:
            metrics = json.loads(Path(metrics).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"metrics file {metrics} does not exist: run evaluate"
            ) from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{metrics}: not valid JSON ({err}); rerun evaluate") from None
        if not isinstance(metrics, Mapping):
            raise ValueError(f"{source}: expected a JSON object of metrics")
    images = list(images.items()) if isinstance(images, Mapping) else list(images)
    tables = list(tables.items()) if isinstance(tables, Mapping) else list(tables)
    missing = [str(p) for _, p in images + tables if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"report inputs do not exist: {missing}; run evaluate first")
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<h2>Metrics</h2><p class='note'>From {e(source)}. 3D errors in mm (MPJPE after root "
        "alignment, PA-MPJPE after similarity Procrustes); PCK as fractions.</p>",
        metrics_table(metrics),
    ]
    if ablations is not None and Path(ablations).is_file():
        parts += ["<h2>Ablations</h2>", ablation_table(json.loads(Path(ablations).read_text()))]
    if images:
        parts.append("<h2>Pictures</h2>")
    for caption, path in images:
        parts.append(
            f'<figure><img src="{_data_uri(Path(path))}" alt="{e(caption)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>"
        )
    for caption, path in tables:
        parts += [f"<h2>{e(caption)}</h2>", _csv_table(Path(path), max_rows)]
    parts.append("</body></html>\n")
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    log.info("report with %d pictures and %d tables -> %s", len(images), len(tables), out)
    return out
