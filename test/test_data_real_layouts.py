"""Loaders for the published LLM-Seg40K and RefCOCOg layouts, on small hand-made fixtures."""

import json
import pickle

import cv2
import numpy as np
import pytest

from frs_ros.data import DatasetFormatError, load_llmseg40k, load_refcocog
from frs_ros.data import coco_rle
from frs_ros.data.refcocog import load_refs_pickle


def _img(path, h, w):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))


def test_llmseg40k_fixture(tmp_path):
    _img(tmp_path / "coco" / "000000000139.jpg", 3, 4)
    _img(tmp_path / "ego" / "ego_1.jpg", 3, 4)
    # 3x4 mask, column 1 set: column-major runs [3 zeros, 3 ones, 6 zeros] -> "336" (hand-encoded)
    ann = {
        "000000000139.jpg": {"from_dataset": "coco", "qa_pairs": [
            {"question": "Where can I sit down to read?", "answer": "The chair.", "rle_seg": {"size": [3, 4], "counts": "336"}},
            {"question": "Nothing?", "answer": "-", "rle_seg": {"size": [3, 4], "counts": "<"}},  # 12 zeros
        ]},
        "ego_1.jpg": {"from_dataset": "ego_objects", "qa_pairs": [
            {"question": "What keeps food cold?", "answer": "The fridge.", "rle_seg": {"size": [3, 4], "counts": [0, 12]}},
        ]},
    }
    jp = tmp_path / "llm_seg_val.json"
    jp.write_text(json.dumps(ann))
    samples = load_llmseg40k(jp, tmp_path / "coco", tmp_path / "ego")
    assert [s.name for s in samples] == ["000000000139", "ego_1"]
    q0, q1 = samples[0].queries
    expected = np.zeros((3, 4), bool)
    expected[:, 1] = True
    np.testing.assert_array_equal(q0.mask, expected)
    assert q0.text == "Where can I sit down to read?" and q0.is_sentence and q0.ignore_mask is None
    assert not q1.mask.any()
    assert samples[1].queries[0].mask.all()
    with pytest.raises(DatasetFormatError, match="ego_objects_image_dir"):
        load_llmseg40k(jp, tmp_path / "coco")
    ann["ego_1.jpg"]["qa_pairs"][0]["rle_seg"] = {"size": [3, 4], "counts": [0, 11]}
    jp.write_text(json.dumps(ann))
    with pytest.raises(DatasetFormatError, match="qa 0"):
        load_llmseg40k(jp, tmp_path / "coco", tmp_path / "ego")


def _refcocog_fixture(root):
    d = root / "refcocog"
    d.mkdir(parents=True)
    refs = [
        {"ref_id": 10, "ann_id": 100, "image_id": 1, "split": "val", "category_id": 47,
         "file_name": "COCO_train2014_000000000001_100.jpg", "sent_ids": [1, 2],
         "sentences": [{"tokens": ["a", "red", "cup"], "raw": "A red cup.", "sent_id": 1, "sent": "a red cup"},
                       {"tokens": ["cup"], "raw": "cup", "sent_id": 2, "sent": "the cup on the left"}]},
        {"ref_id": 11, "ann_id": 101, "image_id": 1, "split": "val", "category_id": 1,
         "sentences": [{"sent": "the crowd", "sent_id": 3}]},
        {"ref_id": 12, "ann_id": 100, "image_id": 1, "split": "train", "category_id": 47,
         "sentences": [{"sent": "train only", "sent_id": 4}]},
    ]
    with open(d / "refs(umd).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    crowd = np.zeros((10, 12), bool)
    crowd[6:9, 0:3] = True
    inst = {
        "images": [{"id": 1, "file_name": "COCO_train2014_000000000001.jpg", "height": 10, "width": 12}],
        "annotations": [
            # two polygon parts: box x 2..6, y 1..4 and box x 8..10, y 5..7 (pycocotools: [x0, x1) x [y0, y1))
            {"id": 100, "image_id": 1, "iscrowd": 0, "category_id": 47,
             "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4], [8.0, 5.0, 10.0, 5.0, 10.0, 7.0, 8.0, 7.0]]},
            {"id": 101, "image_id": 1, "iscrowd": 1, "category_id": 1,
             "segmentation": {"size": [10, 12], "counts": coco_rle.encode_counts(crowd)}},
        ],
        "categories": [{"id": 47, "name": "cup"}, {"id": 1, "name": "person"}],
    }
    (d / "instances.json").write_text(json.dumps(inst))
    _img(root / "images" / "mscoco" / "images" / "train2014" / "COCO_train2014_000000000001.jpg", 10, 12)
    return d, root / "images" / "mscoco" / "images" / "train2014", crowd


def test_refcocog_fixture(tmp_path):
    d, image_dir, crowd = _refcocog_fixture(tmp_path)
    (s,) = load_refcocog(d, image_dir, split="val")
    assert s.name == "COCO_train2014_000000000001"
    assert [q.text for q in s.queries] == ["a red cup", "the cup on the left", "the crowd"]
    assert [q.source_id for q in s.queries] == ["ref10/sent1", "ref10/sent2", "ref11/sent3"]
    cup = np.zeros((10, 12), bool)
    cup[1:4, 2:6] = True
    cup[5:7, 8:10] = True
    np.testing.assert_array_equal(s.queries[0].mask, cup)
    np.testing.assert_array_equal(s.queries[1].mask, cup)
    np.testing.assert_array_equal(s.queries[2].mask, crowd)
    assert not s.queries[0].is_sentence
    (t,) = load_refcocog(d, image_dir, split="train")
    assert [q.text for q in t.queries] == ["train only"]
    with pytest.raises(DatasetFormatError, match="no refs with split 'test'"):
        load_refcocog(d, image_dir, split="test")


def test_refs_pickle_refuses_objects(tmp_path):
    p = tmp_path / "refs(umd).p"
    p.write_bytes(pickle.dumps([{"x": np.int64(3)}]))  # needs numpy class lookup -> refused
    with pytest.raises(DatasetFormatError, match="plain containers"):
        load_refs_pickle(p)


def test_matches_pycocotools_when_installed():
    mu = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = int(rng.integers(5, 60)), int(rng.integers(5, 60))
        k = int(rng.integers(3, 10))
        poly = list(rng.random(2 * k) * np.tile([w * 1.2, h * 1.2], k) - np.tile([w * 0.1, h * 0.1], k))
        ref = mu.decode(mu.frPyObjects([poly], h, w))[:, :, 0].astype(bool)
        np.testing.assert_array_equal(coco_rle.polygons_to_mask([poly], h, w), ref)
        m = rng.random((h, w)) < rng.random()
        assert mu.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode() == coco_rle.encode(m)["counts"]
