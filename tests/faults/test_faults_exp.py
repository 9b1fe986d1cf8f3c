"""Fault catalogue, experiments: `scripts/exp.py` (the documented way to run `dvc exp run`)
refuses while a workspace output is not in DVC's cache, which `dvc exp run` could delete, naming
the outputs and the command that keeps them (`dvc commit`)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "exp.py"


@pytest.fixture(scope="module")
def exp():
    spec = importlib.util.spec_from_file_location("exp_guard", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_outputs_missing_from_the_cache_are_refused_by_name(exp):
    status = {
        "train": [{"changed outs": {"checkpoints/final.pt": "not in cache",
                                    "reports/train": "deleted"}},
                  {"changed deps": {"params.yaml": {"loss.texture": "modified"}}}],
        "evaluate": [{"changed outs": {"reports/eval": "modified"}}, "always changed"],
        "data/raw.dvc": [{"changed outs": {"data/raw": "not in cache"}}],
    }
    assert exp.unsafe_outputs(status) == {"checkpoints/final.pt": "not in cache",
                                          "data/raw": "not in cache", "reports/eval": "modified"}
    reason = exp.refusal(status)
    assert "checkpoints/final.pt: not in cache" in reason and "reports/eval: modified" in reason
    assert "reports/train" not in reason  # deleted: nothing to lose
    assert "`dvc commit`" in reason


@pytest.mark.parametrize("status", [
    {},
    {"train": [{"changed deps": {"params.yaml": {"loss.texture": "modified"}}}]},
    {"train": [{"changed outs": {"checkpoints/final.pt": "deleted"}}, "changed checksum"]},
])
def test_a_cached_workspace_is_let_through(exp, status):
    assert exp.unsafe_outputs(status) == {} and exp.refusal(status) is None


@pytest.mark.slow  # three dvc start-ups: about 8 s here
def test_end_to_end_an_uncached_output_is_refused_and_kept(tmp_path):
    dvc = Path(sys.executable).with_name("dvc")
    if not dvc.is_file() or shutil.which("git") is None:
        pytest.skip("needs git and the project's dvc")
    repo = tmp_path / "repo"
    repo.mkdir()

    def run(*cmd):
        return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)

    assert run("git", "init", "-q").returncode == 0
    assert run(str(dvc), "init", "-q").returncode == 0
    (repo / "params.yaml").write_text("n: 1\n")
    (repo / "dvc.yaml").write_text(
        "stages:\n  make:\n    cmd: python -c \"open('out.txt', 'w').write('made here')\"\n"
        "    params: [n]\n    outs: [out.txt]\n")
    # run the stage without caching its output: out.txt exists, its content is not in the cache
    made = run(str(dvc), "repro", "--no-commit", "-q")
    assert made.returncode == 0, made.stderr
    guard = run(sys.executable, str(SCRIPT), "-n", "try", "-S", "n=2")
    assert guard.returncode == 2
    assert "out.txt: not in cache" in guard.stderr and "`dvc commit`" in guard.stderr
    assert (repo / "out.txt").read_text() == "made here"
