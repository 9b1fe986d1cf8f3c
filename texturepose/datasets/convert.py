"""The preprocess stage's work: each enabled dataset's splits converted to the HDF5 schema.

The raw files are read from ``datasets.<name>.root`` when it is set (the params are the truth),
else from the fetch stage's ``data/raw/real/<name>``; a link there that points elsewhere than the
configured root is stale and named in a warning. A split that fails (unknown split name, missing
files, nothing readable) does not stop the others: its error goes into the dataset's report
and the run ends with every failure listed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from texturepose.datasets import get_converter
from texturepose.files import write_json

log = logging.getLogger(__name__)


class DatasetConfigError(ValueError):
    """A ``datasets.<name>`` section that cannot be used; the message names the key."""


@dataclass
class ConversionReport:
    dataset: str
    root: Path
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # "datasets.<name>.splits[i] = ...: why"

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "root": str(self.root), "splits": self.splits,
                "errors": self.errors}


def dataset_root(name: str, cfg: Mapping[str, Any], raw_dir: Path, project_root: Path) -> Path:
    """Where dataset ``name``'s raw files are (see the module docstring)."""
    link = raw_dir / name
    configured = cfg.get("root")
    if configured:
        root = Path(configured)
        root = root if root.is_absolute() else project_root / root
        if not root.exists():
            raise DatasetConfigError(
                f"datasets.{name}.root = {configured!r}: {root} does not exist; point it at "
                f"your copy of {name} (docs/datasets.md lists the files)")
        if link.exists() and link.resolve() != root.resolve():
            log.warning("%s: %s points at %s, not at datasets.%s.root = %s: reading the root "
                        "(rerun the fetch_datasets stage to refresh the link)", name, link,
                        link.resolve(), name, root)
        return root
    if link.exists():
        return link
    raise DatasetConfigError(f"datasets.{name}: no root set and no {link}; set "
                             f"datasets.{name}.root or run the fetch_datasets stage")


def convert_dataset(name: str, cfg: Mapping[str, Any], defaults: Mapping[str, Any],
                    raw_dir: Path, out_dir: Path, report_dir: Path,
                    project_root: Path) -> ConversionReport:
    """Convert every split of ``datasets.<name>``; write ``<report_dir>/<name>.json``."""
    root = dataset_root(name, cfg, raw_dir, project_root)
    log.info("%s: reading %s", name, root)
    convert = get_converter(name)
    crop_res = int(cfg.get("crop_res") or defaults.get("crop_res", 224))
    options = dict(cfg.get("options") or {})
    if "every_nth" in cfg:
        options["every_nth"] = int(cfg["every_nth"])
    report = ConversionReport(name, root)
    for i, split in enumerate(cfg.get("splits") or ["train"]):
        t0 = time.perf_counter()
        try:
            counts = convert(root, out_dir / f"{name}_{split}.h5", split=split,
                             crop_res=crop_res, **options)
        except (ValueError, KeyError, OSError) as e:  # the converters' documented failures
            why = f"unknown key {e.args[0]!r}" if isinstance(e, KeyError) else e
            report.errors.append(f"datasets.{name}.splits[{i}] = {split!r}: {why}")
            log.error("%s/%s failed: %s", name, split, why)
            continue
        counts["seconds"] = round(time.perf_counter() - t0, 2)
        counts["samples_per_second"] = round(counts["written"] / max(counts["seconds"], 1e-9), 1)
        report.splits[split] = counts
        log.info("%s/%s: %d written, %d skipped %s", name, split, counts["written"],
                 counts["skipped"], counts.get("skipped_reasons") or "")
    write_json(report_dir / f"{name}.json", report.to_dict())
    return report


def convert_datasets(section: Mapping[str, Any], names: list[str], raw_dir: Path, out_dir: Path,
                     report_dir: Path, project_root: Path) -> dict[str, ConversionReport]:
    """Every dataset of ``names``; ``<report_dir>/summary.json`` is written even when some fail
    (:class:`DatasetConfigError` lists the failures after everything else was converted)."""
    defaults = {k: v for k, v in section.items() if not isinstance(v, Mapping)}
    out_dir.mkdir(parents=True, exist_ok=True)  # the stage's out exists even with none enabled
    reports: dict[str, ConversionReport] = {}
    errors: list[str] = []
    for name in names:
        try:
            reports[name] = rep = convert_dataset(name, section[name], defaults, raw_dir,
                                                  out_dir, report_dir, project_root)
            errors += rep.errors
        except DatasetConfigError as e:
            errors.append(str(e))
    summary: dict[str, Any] = {n: {s: {"written": c["written"], "skipped": c["skipped"]}
                                   for s, c in r.splits.items()} for n, r in reports.items()}
    if errors:
        summary["errors"] = errors
    write_json(report_dir / "summary.json", summary)
    if errors:
        raise DatasetConfigError("preprocess failed for:\n  " + "\n  ".join(errors))
    return reports

