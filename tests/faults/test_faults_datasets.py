"""Fault catalogue, dataset converters: a JPEG that still decodes but whose entropy-coded data is
damaged (libjpeg warns "Corrupt JPEG data" and returns garbage blocks) is skipped and counted,
and the warning at the end names the file and what to do."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.datasets.common import CorruptImageError, ReaderError, read_image
from texturepose.datasets.convert import convert_datasets


def _scramble(src, dst, n=40, seed=0):
    """Copy ``src`` to ``dst`` with ``n`` bytes of its entropy-coded data replaced."""
    data = bytearray(src.read_bytes())
    sos = data.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    span = len(data) - 2 - start
    rng = np.random.default_rng(seed)
    for i in rng.choice(np.arange(start + span // 4, start + span // 2), n, replace=False):
        data[i] = int(rng.integers(0, 256))
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture
def lsp_copy(shared_data, tmp_path):
    """An LSP root with the genuine joints.mat, im0001-im0005, and im0002 scrambled."""
    root = tmp_path / "lsp"
    (root / "images").mkdir(parents=True)
    shutil.copy(shared_data / "lsp" / "joints.mat", root / "joints.mat")
    for i in (1, 3, 4, 5):
        shutil.copy(shared_data / "lsp" / "images" / f"im{i:04d}.jpg", root / "images")
    _scramble(shared_data / "lsp" / "images" / "im0002.jpg", root / "images" / "im0002.jpg")
    return root


def test_a_scrambled_jpeg_is_refused_by_read_image(lsp_copy, shared_data):
    good = read_image(lsp_copy / "images" / "im0001.jpg")
    assert good.dtype == np.uint8 and good.ndim == 3
    bad = lsp_copy / "images" / "im0002.jpg"
    with pytest.raises(CorruptImageError, match=r"corrupt image .*im0002\.jpg .*Corrupt JPEG data"
                       r".*fetch or extract the dataset again"):
        read_image(bad)
    assert issubclass(CorruptImageError, ReaderError)


def test_a_scrambled_jpeg_is_skipped_counted_and_named(lsp_copy, tmp_path, caplog):
    section = {"crop_res": 32, "lsp": {"enabled": True, "root": str(lsp_copy),
                                       "splits": ["train"], "options": {"limit": 3}}}
    with caplog.at_level(logging.WARNING):
        convert_datasets(section, ["lsp"], tmp_path / "raw", tmp_path / "out", tmp_path / "rep",
                         tmp_path)
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())["lsp"]["train"]
    assert summary == {"written": 3, "skipped": 1}
    counts = json.loads((tmp_path / "rep" / "lsp.json").read_text())["splits"]["train"]
    assert counts["skipped_reasons"] == {"corrupt image": 1}
    assert "im0002.jpg" in counts["skipped_examples"]["corrupt image"]
    names = list(Hdf5Dataset(tmp_path / "out" / "lsp_train.h5").column("image_name"))
    assert names == ["im0001.jpg", "im0003.jpg", "im0004.jpg"]
    warning = [r.getMessage() for r in caplog.records if "corrupt image" in r.getMessage()]
    assert warning and "im0002.jpg" in warning[-1] and "rerun the preprocess stage" in warning[-1]
