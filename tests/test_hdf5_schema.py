"""The schema writer/reader: streaming chunks, optional fields, atomicity."""

import numpy as np
import pytest

from texturepose.data.hdf5 import Hdf5Dataset, Hdf5Writer
from texturepose.data.schema import SchemaError
from texturepose.keypoints import NUM_KEYPOINTS


def _sample(i: int, with_3d: bool) -> dict:
    rng = np.random.default_rng(i)
    s = {
        "image": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
        "crop_center": np.array([i, i + 1.0]),
        "crop_size": 10.0 + i,
        "keypoints_2d": rng.normal(size=(NUM_KEYPOINTS, 3)),
        "visible": np.ones(NUM_KEYPOINTS, np.uint8),
        "image_name": f"im{i}.jpg",
        "subject": "S1",
        "sequence": f"seq{i % 2}",
        "camera": "c0",
        "frame": i,
        "person": 0,
    }
    if with_3d:
        s["keypoints_3d"] = np.full((NUM_KEYPOINTS, 4), float(i))
    return s


def test_streamed_chunks_with_late_optional_field(tmp_path):
    path = tmp_path / "d.h5"
    with Hdf5Writer(path, dataset="t", split="train", crop_res=16, source="test", licence="none",
                    chunk_size=3) as w:
        for i in range(8):
            w.add(_sample(i, with_3d=i >= 4))  # the 3D field first appears in the second chunk
    ds = Hdf5Dataset(path)
    assert len(ds) == 8
    assert ds.column("has_3d").tolist() == [False] * 4 + [True] * 4
    assert ds[6]["keypoints_3d"][0, 0] == 6.0 and not ds[1]["has_3d"]
    assert ds[5]["frame"] == 5 and ds[5]["sequence"] == "seq1"
    assert ds[5]["image"].shape == (16, 16, 3)


def test_failure_leaves_nothing(tmp_path):
    path = tmp_path / "d.h5"
    with pytest.raises(RuntimeError):
        with Hdf5Writer(path, dataset="t", split="train", crop_res=16, source="t", licence="n",
                        chunk_size=2) as w:
            for i in range(5):
                w.add(_sample(i, False))
            raise RuntimeError("reader crashed")
    assert not path.exists() and not list(tmp_path.iterdir())


def test_no_samples_is_a_clear_error(tmp_path):
    w = Hdf5Writer(tmp_path / "e.h5", dataset="t", split="x", crop_res=8, source="s", licence="l")
    w.skip("corrupt JPEG")
    with pytest.raises(SchemaError, match="corrupt JPEG"):
        w.close()
    assert not (tmp_path / "e.h5").exists()
