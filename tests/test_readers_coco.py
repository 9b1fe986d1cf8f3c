"""COCO converter on the genuine COCO-2017 subset, and the 2014 layout from a fixture."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from texturepose.data.hdf5 import Hdf5Dataset
from texturepose.datasets.coco import convert_coco
from texturepose.datasets.common import ReaderError
from texturepose.keypoints import INDEX

COCO_NAMES = ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder",
              "l_elbow", "r_elbow", "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee",
              "l_ankle", "r_ankle")
COCO_IDX = np.array([INDEX[n] for n in COCO_NAMES])


@pytest.fixture(scope="module")
def coco_val(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("coco") / "coco_val.h5"
    counts = convert_coco(shared_data / "coco-mini", out, "val", crop_res=64, min_keypoints=6)
    return out, counts


def _expected_people(root, split, min_kp=6):
    data = json.loads((root / "annotations" / f"person_keypoints_{split}2017.json").read_text())
    images = {im["id"]: im for im in data["images"]}
    anns = sorted(data["annotations"], key=lambda a: (a["image_id"], a["id"]))
    keep = [a for a in anns if not a["iscrowd"]
            and (np.array(a["keypoints"][2::3]) > 0).sum() >= min_kp]
    return keep, images, data


def test_coco_counts_and_values(coco_val, shared_data):
    out, counts = coco_val
    keep, images, data = _expected_people(shared_data / "coco-mini", "val")
    n_crowd = sum(a["iscrowd"] for a in data["annotations"])
    assert counts["written"] == len(keep)
    assert counts["skipped_reasons"].get("crowd annotation", 0) == n_crowd
    assert counts["written"] + counts["skipped"] == len(data["annotations"])
    ds = Hdf5Dataset(out)
    kp, vis = ds.column("keypoints_2d"), ds.column("visible")
    names = ds.column("image_name")
    for i, a in enumerate(keep):
        raw = np.array(a["keypoints"], np.float32).reshape(17, 3)
        assert names[i] == images[a["image_id"]]["file_name"]
        lab = raw[:, 2] > 0
        np.testing.assert_allclose(kp[i, COCO_IDX[lab], :2], raw[lab, :2])
        np.testing.assert_array_equal(kp[i, COCO_IDX, 2], lab.astype(np.float32))
        np.testing.assert_array_equal(vis[i, COCO_IDX], (raw[:, 2] == 2).astype(np.uint8))
        x, y, w, h = a["bbox"]
        np.testing.assert_allclose(ds.column("crop_center")[i], [x + w / 2, y + h / 2], atol=1e-3)
        assert ds.column("crop_size")[i] == pytest.approx(1.2 * max(w, h), rel=1e-5)
    # people of one image are numbered 0, 1, ... in annotation-id order
    per_image: dict[str, list[int]] = {}
    for n, p in zip(names, ds.column("person"), strict=True):
        per_image.setdefault(n, []).append(int(p))
    assert all(v == list(range(len(v))) for v in per_image.values())
    assert ds.attrs["year"] == 2017 and "CC BY 4.0" in ds.attrs["licence"]


def test_coco_2014_layout(shared_data, tmp_path):
    src = shared_data / "coco-mini"
    keep, images, data = _expected_people(src, "val")
    ann = keep[0]
    im = dict(images[ann["image_id"]])
    name14 = f"COCO_val2014_{im['id']:012d}.jpg"
    (tmp_path / "val2014").mkdir()
    shutil.copy(src / "val2017" / im["file_name"], tmp_path / "val2014" / name14)
    im["file_name"] = name14
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_val2014.json").write_text(json.dumps(
        {"images": [im], "annotations": [ann], "categories": data["categories"]}))
    counts = convert_coco(tmp_path, tmp_path / "c.h5", "val", crop_res=32, year=2014)
    assert counts["written"] == 1
    assert Hdf5Dataset(tmp_path / "c.h5").column("image_name")[0] == name14


def test_coco_bad_json(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_train2017.json").write_text("{not json")
    with pytest.raises(ReaderError, match="not valid JSON"):
        convert_coco(tmp_path, tmp_path / "c.h5", "train")
    (tmp_path / "annotations" / "person_keypoints_train2017.json").write_text('{"images": []}')
    with pytest.raises(ReaderError, match="'annotations'"):
        convert_coco(tmp_path, tmp_path / "c.h5", "train")
    assert not (tmp_path / "c.h5").exists()
