"""Benchmark: the DVC pipeline's cost per stage, from nothing, on a fresh clone.

    python bench/pipeline.py [-S train.steps=20 -S synthetic.subjects_train=2 ...] [--keep]

1. ``git clone`` of this repository's current commit (``HEAD``; uncommitted edits are not in
   it) into a temporary folder; ``dvc.lock`` is removed there so that nothing counts as done.
2. ``-S key=value`` overrides (dotted keys, YAML values) are written into the clone's
   params.yaml.
3. Every stage of dvc.yaml, in its order, with ``dvc repro -s <stage>``: wall time and peak
   memory (the largest RSS of the process tree, from ``wait4``'s rusage).
4. A no-op ``dvc repro``: its time (aim: under 10 s); no stage may run.
5. A one-parameter change (``loss.texture``) and ``dvc repro``: only train, evaluate and report
   may run; anything else is an error (exit status 1).

Stages run with this interpreter (``sys.executable`` is first on ``PATH``, the clone first on
``PYTHONPATH``) and the existing Anny cache (``ANNY_CACHE_DIR``, default ``data/cache/anny``
here). ``--keep`` keeps the clone (its path is printed); each step's log is in its ``bench-logs/``.
The full default run takes about 22 minutes on this 2-core machine (12 for the stages, 10 for
the `loss.texture` rerun of train).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
#: What a one-parameter change of ``loss.texture`` must rerun, and nothing else.
EXPECTED_AFTER_TEXTURE = {"train", "evaluate", "report"}


class _Loader(yaml.SafeLoader):
    """Reads ``1e-4`` (no dot) as a number, as the stages' params loader does (YAML 1.1 reads
    it as a string, which would be written back quoted)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


@dataclass
class Step:
    name: str
    seconds: float
    peak_rss_mb: float
    ran: list[str]
    log: Path


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value read as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"-S wants key=value, got {text!r}")
    return key.strip().split("."), _load(value)


def set_params(path: Path, overrides: list[tuple[list[str], Any]]) -> None:
    """Write ``overrides`` into the params file (comments are lost; DVC compares values)."""
    params = _load(path.read_text())
    for keys, value in overrides:
        node = params
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                raise SystemExit(f"-S {'.'.join(keys)}: {k!r} is not a section of params.yaml")
            node = node[k]
        if keys[-1] not in node:  # a typo would silently add an unused key
            raise SystemExit(f"-S {'.'.join(keys)}: no such key in params.yaml")
        node[keys[-1]] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run_step(name: str, cmd: list[str], cwd: Path, env: dict[str, str], logs: Path) -> Step:
    """Run ``cmd`` with its output in ``logs/<name>.log``; wall time, peak RSS of the process
    and its descendants (``os.wait4``'s rusage covers every reaped descendant), and the stages
    that DVC reports running. Exits with the log's tail if the command fails."""
    log = logs / f"{name.replace(' ', '_')}.log"
    with log.open("wb") as out:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-40:])
        raise SystemExit(f"{name}: {' '.join(cmd)} failed ({proc.returncode}); log {log}:\n{tail}")
    kib = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS
    ran = re.findall(r"Running stage '([^']+)'", text)
    return Step(name, seconds, kib / 1024, ran, log)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-S", dest="overrides", action="append", default=[], type=parse_override,
                    metavar="KEY=VALUE", help="params.yaml override in the clone (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the clone")
    ap.add_argument("--anny-cache", default=os.environ.get(
        "ANNY_CACHE_DIR", str(REPO / "data" / "cache" / "anny")))
    args = ap.parse_args()

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    clone = Path(tempfile.mkdtemp(prefix="texturepose-pipeline-"))
    try:
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", "--detach", commit],
                       check=True)
        (clone / "dvc.lock").unlink(missing_ok=True)  # from nothing: no stage counts as done
        if args.overrides:
            set_params(clone / "params.yaml", args.overrides)
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = str(clone) + (os.pathsep + env["PYTHONPATH"]
                                          if env.get("PYTHONPATH") else "")
        env["ANNY_CACHE_DIR"] = str(Path(args.anny_cache).resolve())
        logs = clone / "bench-logs"
        logs.mkdir()
        dvc = [sys.executable, "-m", "dvc"]
        stages = list(yaml.safe_load((clone / "dvc.yaml").read_text())["stages"])
        shown = ", ".join(".".join(k) + f"={v}" for k, v in args.overrides) or "none"
        print(f"clone of {commit[:10]} in {clone}; overrides: {shown}")
        print(f"{'stage':<22}{'seconds':>9}{'peak RSS MB':>13}  ran")
        steps = []
        for stage in stages:
            step = run_step(stage, [*dvc, "repro", "-s", stage], clone, env, logs)
            steps.append(step)
            print(f"{stage:<22}{step.seconds:>9.1f}{step.peak_rss_mb:>13.0f}  "
                  f"{', '.join(step.ran) or '-'}", flush=True)
        total = sum(s.seconds for s in steps)
        print(f"{'all stages':<22}{total:>9.1f}{max(s.peak_rss_mb for s in steps):>13.0f}")

        noop = run_step("no-op repro", [*dvc, "repro"], clone, env, logs)
        print(f"no-op dvc repro: {noop.seconds:.1f} s (aim: < 10 s), stages run: "
              f"{', '.join(noop.ran) or 'none'}")
        params = _load((clone / "params.yaml").read_text())
        old = float(params["loss"]["texture"])
        new = old / 2 if old else 1.0
        set_params(clone / "params.yaml", [(["loss", "texture"], new)])
        change = run_step("loss.texture change", [*dvc, "repro"], clone, env, logs)
        print(f"loss.texture {old} -> {new}: dvc repro {change.seconds:.1f} s, peak RSS "
              f"{change.peak_rss_mb:.0f} MB, stages run: {', '.join(change.ran) or 'none'}")
        failures = []
        if noop.ran:
            failures.append(f"the no-op dvc repro ran {noop.ran}")
        extra = sorted(set(change.ran) - EXPECTED_AFTER_TEXTURE)
        if extra or "train" not in change.ran:
            failures.append(f"changing loss.texture ran {change.ran}: it must rerun train, "
                            f"and no stage but {sorted(EXPECTED_AFTER_TEXTURE)}")
        if failures:
            raise SystemExit("FAIL: " + "; ".join(failures) + f" (logs in {logs}; --keep keeps "
                             "them)")
        # DVC skips a stage whose inputs came out unchanged (e.g. the same metrics when the
        # texture term never switches on: train.steps < loss.texture_start).
        skipped = sorted(EXPECTED_AFTER_TEXTURE - set(change.ran))
        print("OK: the no-op repro ran nothing; loss.texture reran only "
              f"{', '.join(change.ran)}" + (f" ({', '.join(skipped)}: inputs unchanged, "
                                            "skipped by DVC)" if skipped else ""))
    finally:
        if args.keep:
            print(f"kept the clone: {clone}")
        else:
            shutil.rmtree(clone, ignore_errors=True)


if __name__ == "__main__":
    main()
