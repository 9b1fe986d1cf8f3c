"""Atomic writes (texturepose/files.py): complete or absent, and stale temporaries cleaned."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from texturepose.files import atomic_path, new_temp_path, remove_stale_temps, write_json


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped), so it is not alive."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"n": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_temporary_keeps_the_suffix_and_sits_beside_the_target(tmp_path):
    tmp = new_temp_path(tmp_path / "sub" / "a.h5")
    assert tmp.parent == tmp_path / "sub" and tmp.suffix == ".h5" and tmp.name.startswith(".a.h5.")


def test_stale_temporary_of_a_killed_writer_is_removed_on_the_next_write(tmp_path):
    path = tmp_path / "final.pt"
    stale = tmp_path / f".final.pt.{_dead_pid()}.abc123.tmp.pt"
    stale.write_bytes(b"x" * 1000)
    mine = new_temp_path(path)  # a live writer's (this process's) temporary is kept
    other = tmp_path / f".other.pt.{_dead_pid()}.abc123.tmp.pt"  # another target's is kept
    other.write_bytes(b"y")
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"new")
    assert not stale.exists() and mine.exists() and other.exists()
    assert path.read_bytes() == b"new"


def test_remove_stale_temps_spares_a_running_writer(tmp_path):
    path = tmp_path / "x.parquet"
    live = tmp_path / f".x.parquet.{os.getppid()}.q1w2e3.tmp.parquet"
    live.write_bytes(b"")
    assert remove_stale_temps(path) == [] and live.exists()


def test_write_json_refuses_objects_and_writes_paths_and_nan(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"p": tmp_path, "x": float("nan")})
    assert json.loads(path.read_text()) == {"p": str(tmp_path), "x": None}
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
