"""`dvc repro` reruns what changed: every repository file a stage's script imports, directly or
through other modules, is covered by that stage's ``deps`` in dvc.yaml.

The oracle is the import graph itself, read with :mod:`ast` (imports inside functions count too,
and so do the ``__init__.py`` files of every package on the way, which Python executes).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("texturepose", "stages")


def _module_file(name: str) -> Path | None:
    """The repository file of a dotted module name, or None when it is not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _imports(path: Path) -> set[str]:
    """Dotted names a file imports (``from a import b`` yields ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(REPO).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{alias.name}" for alias in node.names)
    return names


def imported_files(script: Path) -> set[Path]:
    """Every repository file executed when ``script`` runs."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            for mod in _with_parents(name):
                f = _module_file(mod)
                if f is not None and f not in seen:
                    todo.append(f)
    return seen


PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
TEMPLATE = re.compile(r"\$\{([\w.]+)\}")


def _lookup(dotted: str):
    node = PARAMS
    for key in dotted.split("."):
        assert isinstance(node, dict) and key in node, f"dvc.yaml's ${{{dotted}}}: no params key"
        node = node[key]
    return node


def _resolve(node):
    """dvc.yaml with its ``${params.key}`` templates filled in from params.yaml, as DVC does."""
    if isinstance(node, dict):
        return {_resolve(k): _resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v) for v in node]
    if isinstance(node, str):
        return TEMPLATE.sub(lambda m: str(_lookup(m.group(1))), node)
    return node


def _stages() -> dict[str, dict]:
    return _resolve(yaml.safe_load((REPO / "dvc.yaml").read_text()))["stages"]


def _dep_path(dep) -> str:
    return next(iter(dep)) if isinstance(dep, dict) else dep


def _script(stage: dict) -> Path:
    words = stage["cmd"].split()
    assert words[:1] == ["python"] and words[1].startswith("stages/"), stage["cmd"]
    return REPO / words[1]


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_deps_cover_every_imported_file(name):
    stage = _stages()[name]
    deps = [REPO / _dep_path(d) for d in stage.get("deps", [])]
    missing = []
    for f in sorted(imported_files(_script(stage))):
        if f.name == "__init__.py" and f.parent in (REPO / "stages",):
            continue
        if not any(f == d or d in f.parents for d in deps):
            missing.append(str(f.relative_to(REPO)))
    assert not missing, f"dvc.yaml stage {name!r} imports files not in its deps: {missing}"


def test_the_walker_sees_indirect_imports():
    files = {str(f.relative_to(REPO)) for f in imported_files(REPO / "stages" / "train.py")}
    # train.py -> training -> losses -> data.keypoints: three hops, none written in train.py.
    assert "texturepose/keypoints.py" in files
    assert "texturepose/__init__.py" in files


def test_tracking_settings_do_not_retrain():
    params = _stages()["train"].get("params", [])
    assert "tracking" not in params


def _strings(node, key=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{key}[{i}]")
    elif isinstance(node, str):
        yield key, node


def test_the_default_needs_nothing_beside_the_repository():
    params = PARAMS
    # Real datasets that are switched off may name their folders beside the checkout.
    used = {k: v for k, v in params.items() if k != "datasets"}
    used["datasets"] = {k: v for k, v in params["datasets"].items()
                        if not isinstance(v, dict) or v.get("enabled", True)}
    outside = [f"{k} = {v!r}" for k, v in _strings(used)
               if "/" in v and not v.startswith(("http://", "https://", "sqlite:"))
               and not (REPO / v).resolve().is_relative_to(REPO)]
    assert not outside, f"params.yaml points outside the repository: {outside}"
    for stage in _stages().values():
        for dep in stage.get("deps", []):
            assert (REPO / _dep_path(dep)).resolve().is_relative_to(REPO), dep
    sources = params["mocap"]["sources"]
    assert all(list(REPO.glob(s["glob"])) for s in sources), sources  # the clips ship here


def test_paths_between_stages_are_written_once_in_params():
    """The mocap, HDF5, pairs and checkpoint paths in dvc.yaml are ``${...}`` of params.yaml, so
    a stage's out and the next stage's dep cannot disagree."""
    raw = (REPO / "dvc.yaml").read_text()
    for literal in ("anny_poses.h5", "data/processed/", "data/pairs/", "checkpoints/final.pt\n"
                    "      - data"):
        assert literal not in raw, f"dvc.yaml writes {literal!r} literally; use ${{...}}"
    stages = _stages()
    assert stages["mocap"]["outs"] == [PARAMS["mocap"]["out"]]
    assert PARAMS["mocap"]["out"] in stages["synthesize"]["deps"]
    assert PARAMS["mocap"]["out"] in stages["train"]["deps"]
    assert PARAMS["evaluate"]["checkpoint"] in stages["evaluate"]["deps"]
    train_out = [_dep_path(o) for o in stages["train"]["outs"]]
    assert PARAMS["evaluate"]["checkpoint"] in train_out
    for name in ("synthetic_train", "synthetic_test"):
        assert f"{PARAMS['data']['processed_dir']}/{name}.h5" in stages["synthesize"]["outs"]
