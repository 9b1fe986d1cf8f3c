"""Atomic file writes, the one home for them: every output is complete or absent.

A writer writes to a temporary name beside the target, ``.<name>.<pid>.<random>.tmp<suffix>``
(same folder, so the rename is atomic; same suffix, so numpy/OpenCV/pandas pick the format), and
renames it over the target only when it succeeded. Temporaries that a killed earlier writer of
the same target left behind (its process is gone) are removed before a new one is made.

A whole folder is written the same way (:func:`atomic_dir`): into a temporary sibling folder
``.<name>.<pid>.<random>.tmp``, then swapped in (the old folder renamed aside to ``...old``, the
new one renamed in, the old one removed), so a reader sees the old folder or the new one, never a
mix.

A leaf module: imports nothing from the package.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TEMP_MARK = ".tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``path`` whose writing process no longer runs; return them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(
        rf"^\.{re.escape(path.name)}\.(\d+)\.[^.]+{re.escape(TEMP_MARK + path.suffix)}$"
    )
    removed = []
    for p in path.parent.iterdir():
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            size = p.stat().st_size
            p.unlink(missing_ok=True)
            removed.append(p)
            log.warning("removed %s (%.1f MB), left by a killed writer of %s", p.name,
                        size / 1e6, path.name)
    return removed


#: ``.<target>.<pid>.<random>.tmp<suffix>``, as :func:`new_temp_path` names them.
_TEMP_NAME = re.compile(rf"^\.(?P<target>.+)\.(?P<pid>\d+)\.[^.]+{re.escape(TEMP_MARK)}")
#: folder -> {target name: stale temporaries}, listed once per process and folder.
_stale_by_folder: dict[Path, dict[str, list[Path]]] = {}


def _stale_temps_once(path: Path) -> None:
    """:func:`remove_stale_temps` without listing the folder again for every file written there
    (a predict run writes thousands): temporaries of killed writers are older than this
    process's first write into the folder, so one listing per folder finds them all."""
    folder = path.parent.resolve()
    if folder not in _stale_by_folder:
        found: dict[str, list[Path]] = {}
        for p in folder.iterdir():
            m = _TEMP_NAME.match(p.name)
            if m and p.name.endswith(TEMP_MARK + Path(m["target"]).suffix):
                found.setdefault(m["target"], []).append(p)
        _stale_by_folder[folder] = found
    if _stale_by_folder[folder].pop(path.name, None):
        remove_stale_temps(path)


def new_temp_path(path: str | os.PathLike) -> Path:
    """A fresh, empty temporary file beside ``path`` (stale ones of ``path`` removed first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _stale_temps_once(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.",
                               suffix=TEMP_MARK + path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def commit_temp(tmp: str | os.PathLike, path: str | os.PathLike, fsync: bool = False,
                mode: int = 0o644) -> Path:
    """Rename a finished temporary over ``path`` (``mode``: mkstemp makes 0600)."""
    if fsync:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return Path(path)


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds,
    remove it when the block fails (the target is never touched then)."""
    tmp = new_temp_path(path)
    try:
        yield tmp
        commit_temp(tmp, path, fsync=fsync)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


OLD_MARK = ".old"


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temp_dirs(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders of ``path`` that a killed :func:`atomic_dir` writer left
    (its process is gone); return them. A folder it had renamed aside (``...old``) while
    ``path`` itself is missing was killed mid-swap: it is renamed back to ``path`` instead."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(
        rf"^\.{re.escape(path.name)}\.(\d+)\.[^.]+({re.escape(TEMP_MARK)}|{re.escape(OLD_MARK)})$"
    )
    removed = []
    for p in sorted(path.parent.iterdir()):
        m = pattern.match(p.name)
        if not m or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        if m.group(2) == OLD_MARK and not (path.exists() or path.is_symlink()):
            os.rename(p, path)
            log.warning("restored %s from %s, left by a writer killed while swapping it",
                        path, p.name)
            continue
        _remove_tree(p)
        removed.append(p)
        log.warning("removed %s, left by a killed writer of %s", p.name, path.name)
    return removed


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh, empty folder beside ``path`` to write into; when the block succeeds, swap
    it in whole (the old ``path`` renamed aside, the new folder renamed to ``path``, the old
    one removed). When the block fails the temporary folder is removed and ``path`` is never
    touched: it keeps every file of the previous run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_MARK,
                                dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700
    old = None
    if path.exists() or path.is_symlink():
        old = tmp.with_name(tmp.name[: -len(TEMP_MARK)] + OLD_MARK)
        os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        if old is not None:
            os.rename(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        _remove_tree(old)


def json_ready(x: Any) -> Any:
    """Plain JSON types; NaN/inf (not valid JSON) become null."""
    if isinstance(x, Mapping):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_ready(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_ready(x.tolist())
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: str | os.PathLike, data: Any, sort_keys: bool = True) -> Path:
    """Write ``data`` as indented JSON (``dvc metrics`` reads it), atomically."""
    with atomic_path(path) as tmp:
        text = json.dumps(json_ready(data), indent=2, sort_keys=sort_keys)
        tmp.write_text(text + "\n")
    return Path(path)
