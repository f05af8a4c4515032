"""ReasonSeg-style writer -> reader round trips, LISA rasterisation rules, real-layout fixtures."""

import json
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest

from frs_ros.camera import CameraIntrinsics, Frame
from frs_ros.data import (
    DatasetFormatError,
    ImageSample,
    QueryGT,
    load_reasonseg,
    sim_image_to_sample,
    write_reasonseg,
)
from frs_ros.data.reasonseg import label_map_to_shapes, rasterise_shapes
from frs_ros.sim.types import Query, SceneGroundTruth, SimObject

H, W = 60, 80


@dataclass
class FakeSimSample:
    """Shape of frs_ros.sim.SimSample (frames, queries, events, seed, split)."""

    frames: list
    queries: list
    events: list = field(default_factory=list)
    seed: int = 7
    split: str = "val"


def _instance_map(shift: int = 0) -> np.ndarray:
    m = np.zeros((H, W), np.int32)
    cv2.ellipse(m, (20 + shift, 30), (12, 8), 20.0, 0, 360, 1, -1)  # a bowl
    cv2.rectangle(m, (45, 10), (70, 40), 2, -1)  # a box with a hole (a ring)
    cv2.rectangle(m, (52, 18), (62, 30), 0, -1)
    cv2.circle(m, (40 + shift, 45), 9, 3, -1)  # a cup, partly occluded by the bowl
    cv2.ellipse(m, (30 + shift, 40), (8, 5), 0.0, 0, 360, 1, -1)
    return m


def _frame(seed: int = 0, shift: int = 0) -> Frame:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.4, 2.5, (H, W)).astype(np.float32)
    depth[:3, :5] = np.nan
    inst = _instance_map(shift)
    objs = {i: SimObject(i, c, "red", "ceramic", 0.1, np.zeros(3)) for i, c in [(1, "bowl"), (2, "box"), (3, "cup")]}
    return Frame(
        rgb=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        intrinsics=CameraIntrinsics.from_fov(W, H, 60.0),
        depth=depth,
        gt=SceneGroundTruth(instance_map=inst, objects=objs),
    )


def _queries():
    return [
        Query("the thing I could pour hot tea into", "affordance", [3], difficulty=2, is_sentence=True,
              spec={"affordance": "pour_into"}, template_id="aff_03", split="val"),
        Query("the box", "attribute", [2], template_id="attr_00"),
        Query("both containers", "multi", [1, 3], difficulty=3),
        Query("the giraffe", "none", [], template_id="none_01"),
    ]


def test_lisa_rasterisation_rules():
    shapes = [
        {"label": "target", "points": [[10, 10], [30, 10], [30, 30], [10, 30]]},
        {"label": "ignore", "points": [[15, 15], [20, 15], [20, 20], [15, 20]]},  # smaller: drawn later
        {"label": "flag", "points": [[0, 0], [5, 0], [5, 5], [0, 5]]},  # skipped by LISA
        {"label": "target", "points": [[40.9, 40.9], [44.2, 40.2], [44.7, 44.9]]},  # truncated to int
    ]
    lab = rasterise_shapes(shapes, H, W)
    assert lab[0:6, 0:6].sum() == 0  # flag -> nothing, not 255
    assert (lab[15:21, 15:21] == 255).all()
    # target square incl. its outline (polylines thickness 1 + fillPoly): 21 x 21 px minus ignore 6 x 6
    assert (lab[10:31, 10:31] > 0).sum() == 21 * 21
    assert (lab == 255).sum() == 36
    assert lab[40, 40] == 1 and lab[44, 44] == 1  # (40,40)-(44,40)-(44,44) after int32 truncation


def test_background_extension_and_lisa_view():
    ring = np.zeros((H, W), np.uint8)
    ring[10:40, 10:50] = 1
    ring[20:30, 20:40] = 0
    shapes = label_map_to_shapes(ring)
    assert any(s["label"] == "background" for s in shapes)
    np.testing.assert_array_equal(rasterise_shapes(shapes, H, W), ring)
    # LISA's reader draws 'background' as target: it sees the hole filled
    lisa = rasterise_shapes(shapes, H, W, lisa_compatible=True)
    assert (lisa[10:40, 10:50] == 1).all()
    # exact=False writes only target/ignore; same hole-filled mask for both readers
    plain = label_map_to_shapes(ring, exact=False)
    assert all(s["label"] != "background" for s in plain)
    np.testing.assert_array_equal(rasterise_shapes(plain, H, W), lisa)


def test_polygon_round_trip_random_masks_is_exact():
    rng = np.random.default_rng(3)
    for _ in range(30):
        lab = np.zeros((H, W), np.uint8)
        for _ in range(3):
            cv2.ellipse(lab, (int(rng.integers(0, W)), int(rng.integers(0, H))),
                        (int(rng.integers(2, 25)), int(rng.integers(2, 20))), float(rng.uniform(0, 180)), 0, 360,
                        int(rng.choice([0, 1, 1, 255])), -1)
        lab[rng.random((H, W)) < 0.005] = 1
        np.testing.assert_array_equal(rasterise_shapes(label_map_to_shapes(lab), H, W), lab)


def test_sim_image_write_load_round_trip(tmp_path):
    sim = FakeSimSample(frames=[_frame()], queries=_queries())
    sample = sim_image_to_sample(sim)
    assert sample.name == "sim_val_00000007"
    assert sample.queries[3].mask.sum() == 0  # no-target query
    stats = write_reasonseg(tmp_path, [sample], split="val", image_ext=".png")
    assert [s.file for s in stats] == [
        "sim_val_00000007.json", "sim_val_00000007__q1.json", "sim_val_00000007__q2.json", "sim_val_00000007__q3.json"
    ]
    assert all(s.exact and s.iou_frs == 1.0 for s in stats)
    assert stats[1].iou_lisa < 1.0  # the box has a hole: LISA's reader fills it
    (back,) = load_reasonseg(tmp_path, "val")
    assert back.name == sample.name
    np.testing.assert_array_equal(back.rgb, sample.rgb)  # png is lossless
    assert back.intrinsics == sample.intrinsics
    valid = np.isfinite(sample.depth)
    np.testing.assert_array_equal(np.isfinite(back.depth), valid)
    assert np.abs(back.depth[valid] - sample.depth[valid]).max() <= 0.0005 + 1e-6
    for q0, q1 in zip(sample.queries, back.queries):
        np.testing.assert_array_equal(q0.mask, q1.mask)
        assert q1.ignore_mask is None
        assert q0.texts == q1.texts and q0.is_sentence == q1.is_sentence
        assert q0.meta == q1.meta
    assert back.queries[0].meta.spec == {"affordance": "pour_into"}
    assert back.queries[2].meta.target_ids == [1, 3]


def test_jpeg_and_ignore_round_trip(tmp_path):
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([xx * 3, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)  # smooth: jpeg-friendly
    mask = _instance_map() == 3
    ignore = np.zeros((H, W), bool)
    ignore[0:10, 0:10] = True
    s = ImageSample("img1", rgb, [QueryGT(["a", "b"], mask, ignore, is_sentence=False)])
    write_reasonseg(tmp_path, [s], split="test")
    (back,) = load_reasonseg(tmp_path / "test")
    q = back.queries[0]
    np.testing.assert_array_equal(q.mask, mask)
    np.testing.assert_array_equal(q.ignore_mask, ignore)
    assert q.text == "a" and q.meta is None and back.depth is None and back.intrinsics is None
    assert np.abs(back.rgb.astype(int) - rgb).mean() < 3  # jpeg: lossy colour only


def test_loads_real_reasonseg_layout(tmp_path):
    """Hand-made file in the published layout: float points, flag + ignore shapes, no extension."""
    d = tmp_path / "ReasonSeg" / "val"
    d.mkdir(parents=True)
    cv2.imwrite(str(d / "2346_1.jpg"), np.zeros((H, W, 3), np.uint8))
    doc = {
        "text": ["What can hold water for a plant?", "Something to put flowers in"],
        "is_sentence": True,
        "shapes": [
            {"label": "target", "labels": ["target"], "shape_type": "polygon", "image_name": "2346_1.jpg",
             "points": [[10.4, 10.6], [30.2, 10.1], [30.9, 30.3], [10.0, 30.8]], "group_id": None},
            {"label": "ignore", "labels": ["ignore"], "shape_type": "polygon", "image_name": "2346_1.jpg",
             "points": [[50.0, 5.0], [60.0, 5.0], [60.0, 15.0]]},
            {"label": "flag", "labels": ["flag"], "shape_type": "polygon", "image_name": "2346_1.jpg",
             "points": [[0.0, 50.0], [5.0, 50.0], [5.0, 55.0]]},
        ],
    }
    (d / "2346_1.json").write_text(json.dumps(doc))
    (s,) = load_reasonseg(tmp_path / "ReasonSeg", "val")
    q = s.queries[0]
    assert q.is_sentence and q.texts == doc["text"]
    assert q.mask.sum() == 21 * 21 and q.mask[10, 10] and q.mask[30, 30]
    assert q.ignore_mask is not None and q.ignore_mask[6, 58] and not q.ignore_mask[52, 2]
    assert q.meta is None and s.depth is None


def test_bad_files_raise_with_file_name(tmp_path):
    d = tmp_path / "val"
    d.mkdir()
    (d / "x.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="x.json"):
        load_reasonseg(d)
    (d / "x.json").write_text(json.dumps({"text": ["t"], "is_sentence": False, "shapes": []}))
    with pytest.raises(DatasetFormatError, match="x.json: no image"):
        load_reasonseg(d)
    cv2.imwrite(str(d / "x.jpg"), np.zeros((4, 4, 3), np.uint8))
    (d / "x.json").write_text(json.dumps({"text": ["t"], "is_sentence": False, "shapes": [{"label": "target"}]}))
    with pytest.raises(DatasetFormatError, match="shape 0"):
        load_reasonseg(d)
    with pytest.raises(DatasetFormatError, match="not found"):
        load_reasonseg(tmp_path / "nope")


def test_real_simulator_image_round_trip(tmp_path):
    sim = pytest.importorskip("frs_ros.sim")
    sample = sim_image_to_sample(sim.generate_image(0, "val"))
    stats = write_reasonseg(tmp_path, [sample], "val")
    assert all(s.exact for s in stats)
    (back,) = load_reasonseg(tmp_path, "val")
    for q0, q1 in zip(sample.queries, back.queries):
        np.testing.assert_array_equal(q0.mask, q1.mask)
        assert q0.meta == q1.meta and q0.texts == q1.texts
