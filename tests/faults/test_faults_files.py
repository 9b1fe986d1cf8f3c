"""Fault catalogue, folder writes (:func:`texturepose.files.atomic_dir`): a failure keeps the
previous folder whole and leaves no temporary; a success replaces it whole; what a killed writer
left is cleaned up (or, killed mid-swap, put back) by the next one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from texturepose.files import atomic_dir


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped), so it is not alive."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _files(folder):
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


@pytest.fixture
def old(tmp_path):
    folder = tmp_path / "eval" / "held"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("old a\n")
    (folder / "b.png").write_text("old b\n")
    return folder


def test_a_failure_midway_keeps_every_old_file_and_leaves_no_temporary(old):
    before = _files(old)
    with pytest.raises(RuntimeError, match="writer failed"), atomic_dir(old) as tmp:
        assert tmp.parent == old.parent and tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "a.csv").write_text("new a\n")  # one file written, then the next fails
        raise RuntimeError("writer failed")
    assert _files(old) == before
    assert [p.name for p in old.parent.iterdir()] == ["held"]


def test_a_success_replaces_the_folder_whole(old):
    with atomic_dir(old) as tmp:
        (tmp / "a.csv").write_text("new a\n")
        (tmp / "c.csv").write_text("new c\n")
    assert _files(old) == {"a.csv": "new a\n", "c.csv": "new c\n"}  # b.png was the old run's
    assert [p.name for p in old.parent.iterdir()] == ["held"]
    assert oct(old.stat().st_mode & 0o777) == "0o755"


def test_a_first_write_creates_the_folder(tmp_path):
    with atomic_dir(tmp_path / "new" / "set") as tmp:
        (tmp / "x.txt").write_text("x")
    assert _files(tmp_path / "new" / "set") == {"x.txt": "x"}


def test_leftovers_of_a_killed_writer_are_removed(old):
    stale = old.parent / f".held.{_dead_pid()}.abc123.tmp"
    stale.mkdir()
    (stale / "a.csv").write_text("half")
    aside = old.parent / f".held.{_dead_pid()}.def456.old"  # killed after the swap, before rm
    aside.mkdir()
    live = old.parent / f".held.{os.getppid()}.q1w2e3.tmp"  # a running writer's: kept
    live.mkdir()
    with atomic_dir(old) as tmp:
        (tmp / "a.csv").write_text("new a\n")
    assert not stale.exists() and not aside.exists() and live.is_dir()
    assert _files(old) == {"a.csv": "new a\n"}


def test_a_folder_renamed_aside_by_a_writer_killed_mid_swap_is_put_back(old):
    before = _files(old)
    aside = old.parent / f".held.{_dead_pid()}.abc123.old"
    old.rename(aside)  # killed between renaming the old folder aside and the new one in
    with pytest.raises(RuntimeError), atomic_dir(old):
        raise RuntimeError("this run fails too")
    assert _files(old) == before and not aside.exists()
