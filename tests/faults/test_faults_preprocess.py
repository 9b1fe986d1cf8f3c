"""Fault catalogue, preprocess stage: bad dataset sections name their params key; one bad split
does not lose the others' outputs or the report."""

from __future__ import annotations

import json
import logging

import pytest

from texturepose.datasets.convert import DatasetConfigError, convert_datasets, dataset_root


def _section(shared_data, **lsp):
    return {"crop_res": 32, "lsp": {"enabled": True, "root": str(shared_data / "lsp"),
                                    "splits": ["train"], "options": {"limit": 3}, **lsp}}


def test_a_stale_fetch_link_loses_to_the_configured_root(shared_data, tmp_path, caplog):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "lsp").symlink_to(tmp_path)  # left by an earlier fetch of another root
    with caplog.at_level(logging.WARNING):
        root = dataset_root("lsp", {"root": str(shared_data / "lsp")}, raw, tmp_path)
    assert root == shared_data / "lsp"
    assert "points at" in caplog.text and "fetch_datasets" in caplog.text


def test_the_root_used_is_logged(shared_data, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        convert_datasets(_section(shared_data), ["lsp"], tmp_path / "raw", tmp_path / "out",
                         tmp_path / "rep", tmp_path)
    assert f"lsp: reading {shared_data / 'lsp'}" in caplog.text


def test_an_unknown_split_names_its_key_and_keeps_the_good_split(shared_data, tmp_path):
    section = _section(shared_data, splits=["train", "tset"])
    with pytest.raises(DatasetConfigError, match=r"datasets\.lsp\.splits\[1\] = 'tset'"):
        convert_datasets(section, ["lsp"], tmp_path / "raw", tmp_path / "out", tmp_path / "rep",
                         tmp_path)
    assert (tmp_path / "out" / "lsp_train.h5").is_file()
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["lsp"]["train"]["written"] == 3
    assert "datasets.lsp.splits[1] = 'tset'" in summary["errors"][0]
    assert json.loads((tmp_path / "rep" / "lsp.json").read_text())["errors"]


def test_a_missing_root_names_the_key_and_what_to_do(tmp_path):
    section = {"lsp": {"enabled": True, "root": "nowhere/lsp", "splits": ["train"]}}
    with pytest.raises(DatasetConfigError, match=r"datasets\.lsp\.root = 'nowhere/lsp'.*does "
                       r"not exist; point it at your copy"):
        convert_datasets(section, ["lsp"], tmp_path / "raw", tmp_path / "out", tmp_path / "rep",
                         tmp_path)
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["errors"]


def test_no_root_and_no_link_says_to_fetch(tmp_path):
    with pytest.raises(DatasetConfigError, match=r"datasets\.lsp: no root set .* fetch_datasets"):
        dataset_root("lsp", {"root": None}, tmp_path, tmp_path)
