import numpy as np
import pytest

from texturepose import keypoints as kp


def test_flip_permutation_is_involution_and_swaps_sides():
    perm = kp.FLIP_PERMUTATION
    assert np.array_equal(perm[perm], np.arange(kp.NUM_KEYPOINTS))
    assert kp.SUPERSET[perm[kp.INDEX["l_wrist"]]] == "r_wrist"
    assert perm[kp.INDEX["nose"]] == kp.INDEX["nose"]


@pytest.mark.parametrize("order", sorted(kp.NATIVE_ORDERS))
def test_round_trip_through_superset(order):
    n = len(kp.NATIVE_ORDERS[order])
    pts = np.random.default_rng(0).normal(size=(4, n, 3)).astype(np.float32)
    sup = kp.to_superset(pts, order)
    back = kp.from_superset(sup, order)
    known = kp.superset_map(order) >= 0
    assert np.array_equal(back[:, known], pts[:, known])
    # Unannotated superset points stay at the fill value.
    untouched = np.setdiff1d(np.arange(kp.NUM_KEYPOINTS), kp.superset_map(order)[known])
    assert np.all(sup[:, untouched] == 0)


def test_known_correspondences():
    # LSP index 13 is the head top; COCO index 0 the nose; MPII index 8 the upper neck.
    assert kp.superset_map("lsp14")[13] == kp.INDEX["head_top"]
    assert kp.superset_map("coco17")[0] == kp.INDEX["nose"]
    assert kp.superset_map("mpii16")[8] == kp.INDEX["neck"]
    h17 = [kp.NATIVE_ORDERS["h36m32"][i] for i in kp.H36M32_TO_17]
    assert tuple(h17) == kp.NATIVE_ORDERS["h36m17"]


def test_wrong_shape_and_unknown_order_are_clear():
    with pytest.raises(ValueError, match="lsp14"):
        kp.to_superset(np.zeros((13, 2)), "lsp14")
    with pytest.raises(KeyError, match="known"):
        kp.superset_map("nope")
