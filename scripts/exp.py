"""`dvc exp run`, but only when it cannot delete workspace outputs.

    python scripts/exp.py -n no-texture -S loss.texture=0
    python scripts/exp.py --queue -n kp2d -S loss.adversarial=0 -S loss.texture=0

Every argument goes to `dvc exp run` unchanged. Before it runs, `dvc status --json` (offline: it
compares the workspace with dvc.lock and the local cache) is checked: `dvc exp run` restores its
baseline from DVC's cache and deletes a workspace output it does not find there, so an output
that is **not in the cache** (produced elsewhere, after a `git clean` of .dvc/cache, or copied
in) or **modified** since dvc.lock (its new content was never cached) would be lost. Then this
script refuses, names those outputs and the command that keeps them: `dvc commit` (caches the
workspace versions and updates dvc.lock). Outputs that are merely deleted, and changed
dependencies or params, are safe: the experiment reruns those stages.

Exit status: that of `dvc exp run`; 2 when refused or when `dvc status` fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# `dvc status` states of an output whose workspace content is not in the cache.
UNSAFE = ("not in cache", "modified")


def unsafe_outputs(status: Mapping[str, Any]) -> dict[str, str]:
    """``{output: state}`` of every output of ``dvc status --json`` that `dvc exp run` could
    delete or overwrite without a copy in the cache (see :data:`UNSAFE`)."""
    found: dict[str, str] = {}
    for entries in status.values():
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, Mapping):
                continue  # e.g. "always changed", "changed checksum"
            for out, state in (entry.get("changed outs") or {}).items():
                if state in UNSAFE:
                    found[out] = state
    return dict(sorted(found.items()))


def refusal(status: Mapping[str, Any]) -> str | None:
    """Why `dvc exp run` must not run on a workspace of this ``dvc status --json``, or None."""
    unsafe = unsafe_outputs(status)
    if not unsafe:
        return None
    listed = "\n".join(f"  {out}: {state}" for out, state in unsafe.items())
    return (
        "refusing to run `dvc exp run`: it restores its baseline from DVC's cache and would "
        f"delete or overwrite these workspace outputs, which are not in the cache:\n{listed}\n"
        "Keep them first with `dvc commit` (it caches the workspace versions and updates "
        "dvc.lock; `dvc commit <stage>` for one stage), or bring back the locked versions with "
        "`dvc checkout` if those are the ones you want; then run this command again."
    )


def dvc_executable() -> str:
    """The `dvc` beside this Python (the project's .venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("dvc")
    return str(beside) if beside.is_file() else (shutil.which("dvc") or "dvc")


def dvc_status(cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """``dvc status --json`` of the repository at ``cwd``; RuntimeError with dvc's message when it
    fails."""
    try:
        out = subprocess.run([dvc_executable(), "status", "--json"], cwd=cwd,
                             capture_output=True, text=True, check=False)
    except OSError as e:
        raise RuntimeError(f"cannot run dvc ({e}): install the project (bash scripts/setup.sh) "
                           "and activate .venv") from e
    if out.returncode != 0:
        raise RuntimeError(f"`dvc status --json` failed (exit {out.returncode}): "
                           f"{(out.stderr or out.stdout).strip()}")
    text = out.stdout.strip()
    try:
        return json.loads(text[text.index("{"):]) if text else {}
    except ValueError as e:
        raise RuntimeError(f"`dvc status --json` printed no JSON: {text[:500]!r}") from e


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    try:
        status = dvc_status()
    except RuntimeError as e:
        print(f"scripts/exp.py: {e}", file=sys.stderr)
        return 2
    reason = refusal(status)
    if reason:
        print(f"scripts/exp.py: {reason}", file=sys.stderr)
        return 2
    return subprocess.call([dvc_executable(), "exp", "run", *args])


if __name__ == "__main__":
    sys.exit(main())
