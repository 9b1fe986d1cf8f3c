"""Fault catalogue, HDF5 files: garbage image bytes inside a schema file name the file, the
sample and the stage to rerun; the file itself and its good samples stay readable."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from texturepose.data.hdf5 import Hdf5Dataset, Hdf5Writer
from texturepose.data.schema import SchemaError
from texturepose.keypoints import NUM_KEYPOINTS


def _write(path, dataset: str, n: int = 3):
    rng = np.random.default_rng(0)
    with Hdf5Writer(path, dataset=dataset, split="train", crop_res=16, source="test",
                    licence="none") as w:
        for i in range(n):
            w.add({"image": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                   "crop_center": np.array([8.0, 8.0]), "crop_size": 16.0,
                   "keypoints_2d": rng.normal(size=(NUM_KEYPOINTS, 3)),
                   "visible": np.ones(NUM_KEYPOINTS, np.uint8), "image_name": f"im{i}.jpg",
                   "subject": "S1", "sequence": "seq", "camera": "c0", "frame": i, "person": 0})
    return path


def _garble(path, index: int) -> None:
    with h5py.File(path, "r+") as f:
        f["image_jpeg"][index] = np.frombuffer(b"this is not a JPEG at all", np.uint8)


@pytest.mark.parametrize(("dataset", "stage"), [("lsp", "preprocess_datasets"),
                                                ("synthetic", "synthesize")])
def test_garbage_image_bytes_name_the_file_the_sample_and_the_stage(tmp_path, dataset, stage):
    path = _write(tmp_path / f"{dataset}_train.h5", dataset)
    _garble(path, 1)
    ds = Hdf5Dataset(path)
    with pytest.raises(SchemaError) as e:
        ds[1]
    msg = str(e.value)
    assert str(path) in msg and "sample 1 (image_jpeg)" in msg
    assert f"rerun the stage that wrote it (dvc repro {stage})" in msg
    assert isinstance(e.value, ValueError)  # callers catching ValueError still do
    # nothing was lost: the file is still there and its good samples still read
    assert path.is_file()
    assert ds[0]["image"].shape == (16, 16, 3) and ds[2]["frame"] == 2
