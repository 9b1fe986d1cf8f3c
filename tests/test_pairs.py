"""Pairs table: a hand-made identity table with the expected pairs written out by hand, and a
brute-force oracle on a random table."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from texturepose.data.pairs import build_pairs, pair_counts, write_pairs


def _table(rows):
    return pd.DataFrame(rows, columns=["subject", "sequence", "camera", "frame", "person"])


def _as_set(pairs, kind):
    sel = pairs[pairs["kind"] == kind]
    return {(int(i), int(j), int(g)) for i, j, g in zip(sel["i"], sel["j"], sel["gap"],
                                                        strict=True)}


def test_hand_made_table():
    t = _table([
        ("S1", "walk", "C1", 0, 0),  # 0
        ("S1", "walk", "C2", 0, 0),  # 1
        ("S1", "walk", "C1", 2, 0),  # 2
        ("S1", "walk", "C2", 2, 0),  # 3
        ("S1", "walk", "C1", 9, 0),  # 4: too far from 0 and 2 for max_gap=5
        ("S1", "run", "C1", 0, 0),   # 5: other sequence
        ("S2", "walk", "C2", 0, 0),  # 6: other subject
        ("S1", "walk", "C3", 2, 1),  # 7: other person at the same instant
        ("", "", "", 0, 0),          # 8: single image with no identity
        ("", "", "", 0, 0),          # 9
    ])  # fmt: skip
    pairs = build_pairs(t, min_gap=1, max_gap=5)
    assert _as_set(pairs, "multiview") == {(0, 1, 0), (2, 3, 0)}
    assert _as_set(pairs, "temporal") == {(0, 2, 2), (1, 3, 2)}
    assert pair_counts(pairs) == {"multiview": 2, "temporal": 2}
    wide = build_pairs(t, min_gap=3, max_gap=9)
    assert _as_set(wide, "temporal") == {(0, 4, 9), (2, 4, 7)}


def test_brute_force_oracle():
    rng = np.random.default_rng(0)
    n = 300
    t = pd.DataFrame({
        "subject": rng.choice(["A", "B"], n), "sequence": rng.choice(["x", "y"], n),
        "camera": rng.choice(["1", "2", "3"], n), "frame": rng.integers(0, 30, n),
        "person": rng.integers(0, 2, n),
    })
    pairs = build_pairs(t, min_gap=2, max_gap=6)
    mv, tp = set(), set()
    rows = list(t.itertuples(index=False))
    for i, j in itertools.combinations(range(n), 2):
        a, b = rows[i], rows[j]
        same = a.subject == b.subject and a.sequence == b.sequence and a.person == b.person
        if not same:
            continue
        if a.frame == b.frame and a.camera != b.camera:
            mv.add((i, j, 0))
        gap = abs(int(a.frame) - int(b.frame))
        if a.camera == b.camera and 2 <= gap <= 6:
            first, second = (i, j) if a.frame < b.frame else (j, i)
            tp.add((first, second, gap))
    assert _as_set(pairs, "multiview") == mv
    assert _as_set(pairs, "temporal") == tp
    assert len(pairs) == len(mv) + len(tp)  # no duplicates


def test_bad_arguments_and_parquet_round_trip(tmp_path):
    t = _table([("S1", "w", "C1", 0, 0), ("S1", "w", "C1", 1, 0)])
    with pytest.raises(ValueError, match="min_gap"):
        build_pairs(t, min_gap=0, max_gap=3)
    with pytest.raises(ValueError, match="lacks columns"):
        build_pairs(t.drop(columns=["camera"]))
    pairs = build_pairs(t, 1, 1)
    path = write_pairs(pairs, tmp_path / "p.parquet")
    back = pd.read_parquet(path)
    assert back[["i", "j", "gap"]].values.tolist() == [[0, 1, 1]]
    assert list(back["kind"].astype(str)) == ["temporal"]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
