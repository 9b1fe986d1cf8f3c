"""The params recipes under params/ are complete files (the stages read one file), so each may
only differ from params.yaml where its header says: anything else is a stale copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stages.common import load_params

REPO = Path(__file__).resolve().parents[1]

#: What params/real.yaml changes (docs/real.md); a dotted prefix covers everything under it.
REAL_CHANGES = ("datasets.lsp", "datasets.lspet", "datasets.coco", "data.mix", "evaluate.sets",
                "train.steps", "train.checkpoint_every", "train.overlay_every")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _differences(a: dict, b: dict) -> set[str]:
    fa, fb = _flatten(a), _flatten(b)
    return {k for k in fa.keys() | fb.keys() if fa.get(k, "<absent>") != fb.get(k, "<absent>")}


def _covered(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def test_real_recipe_differs_from_params_only_where_it_says():
    diff = _differences(load_params(REPO / "params.yaml"),
                        load_params(REPO / "params" / "real.yaml"))
    stale = sorted(k for k in diff if not _covered(k, REAL_CHANGES))
    assert not stale, f"params/real.yaml differs from params.yaml at {stale}: copy them over"
    # each listed change is a real change (a stale list would hide a copy)
    assert all(any(_covered(k, (p,)) for k in diff) for p in REAL_CHANGES)


@pytest.mark.parametrize("key", ["mocap.fit.method", "loss.texture", "model.res"])
def test_the_check_fails_on_a_stale_copy(key):
    params = load_params(REPO / "params.yaml")
    changed = load_params(REPO / "params.yaml")
    node = changed
    *path, last = key.split(".")
    for k in path:
        node = node[k]
    node[last] = "something else"
    diff = _differences(params, changed)
    assert diff == {key} and not _covered(key, REAL_CHANGES)
