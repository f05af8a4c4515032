"""ReVOS / MeViS writer -> reader round trips (exact masks via COCO RLE) and COCO RLE codec."""

import json
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest

from frs_ros.camera import CameraIntrinsics, Frame
from frs_ros.data import DatasetFormatError, load_mevis, load_revos, sim_episode_to_sample, write_mevis, write_revos
from frs_ros.data import coco_rle
from frs_ros.data.video import revos_meta_name
from frs_ros.sim.types import Query, SceneGroundTruth, SimObject

H, W, T = 48, 64, 5


@dataclass
class FakeSimSample:
    frames: list
    queries: list
    events: list = field(default_factory=list)
    seed: int = 3
    split: str = "val"


def _episode():
    frames = []
    for t in range(T):
        inst = np.zeros((H, W), np.int32)
        cv2.circle(inst, (10 + 6 * t, 20), 7, 1, -1)  # a cup moving right
        cv2.rectangle(inst, (30, 5), (50, 40), 2, -1)  # a box with a hole
        cv2.rectangle(inst, (36, 15), (44, 25), 0, -1)
        if t >= 3:  # the cup passes behind the box: occluded
            inst[inst == 1] = 0
            cv2.rectangle(inst, (30, 5), (50, 40), 2, -1)
            cv2.rectangle(inst, (36, 15), (44, 25), 0, -1)
        yy, xx = np.mgrid[0:H, 0:W]
        rgb = np.stack([xx * 4, yy * 5, np.full_like(xx, 40 * t)], -1).astype(np.uint8)
        depth = np.full((H, W), 1.25, np.float32)
        depth[inst > 0] = 0.8
        depth[0, :] = np.nan
        objs = {1: SimObject(1, "cup", "red", "ceramic", 0.1, np.zeros(3)), 2: SimObject(2, "box", "blue", "paper", 0.2, np.zeros(3))}
        frames.append(Frame(rgb=rgb, intrinsics=CameraIntrinsics.from_fov(W, H, 70.0), depth=depth, seq=t,
                            gt=SceneGroundTruth(inst, objs)))
    queries = [
        Query("the cup that went behind the box", "temporal", [1], difficulty=3, frame_index=2, template_id="tmp_1"),
        Query("what could I store things in?", "affordance", [2], is_sentence=True, spec={"a": 1}),
        Query("both", "multi", [1, 2]),
        Query("the banana", "none", []),
    ]
    return FakeSimSample(frames, queries)


def test_coco_rle_codec_round_trip_and_known_values():
    assert coco_rle.encode(np.zeros((2, 2), bool)) == {"size": [2, 2], "counts": "4"}
    m = np.array([[0, 1], [1, 1]], bool)  # column-major: 0,1 | 1,1 -> counts [1, 3]
    assert coco_rle.encode_counts(m) == [1, 3]
    assert coco_rle.encode(m, compressed=False) == {"size": [2, 2], "counts": [1, 3]}
    rng = np.random.default_rng(0)
    for _ in range(100):
        x = rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < rng.random()
        r = coco_rle.encode(x)
        np.testing.assert_array_equal(coco_rle.decode(r), x)
        np.testing.assert_array_equal(coco_rle.decode({"size": r["size"], "counts": r["counts"].encode()}), x)
    # long runs with negative differences exercise the sign extension of rleFrString
    big = np.zeros((300, 400), bool)
    big[:, 5] = True
    big[100:250, 100:390] = True
    np.testing.assert_array_equal(coco_rle.decode(coco_rle.encode(big)), big)
    with pytest.raises(coco_rle.CocoMaskError, match="sum"):
        coco_rle.decode({"size": [3, 3], "counts": [1, 2]})


def test_coco_polygon_matches_pycocotools_box_convention():
    # pycocotools: the box polygon (x0,y0)-(x1,y1) covers columns x0..x1-1 and rows y0..y1-1
    m = coco_rle.polygons_to_mask([[2, 2, 6, 2, 6, 5, 2, 5]], 8, 8)
    expected = np.zeros((8, 8), bool)
    expected[2:5, 2:6] = True
    np.testing.assert_array_equal(m, expected)
    tri = coco_rle.polygons_to_mask([[0, 0, 10, 0, 0, 10]], 12, 12)
    # pixel (y, x) is in when its centre (x + .5, y + .5) is inside: x + y <= 8 -> 45 px
    yy, xx = np.mgrid[0:12, 0:12]
    np.testing.assert_array_equal(tri, xx + yy <= 8)


def _check_same(a, b, exact_rgb):
    assert a.name == b.name and a.frame_names == b.frame_names
    assert sorted(a.tracks) == sorted(b.tracks)
    for k in a.tracks:
        np.testing.assert_array_equal(a.tracks[k], b.tracks[k])
    for e0, e1 in zip(a.expressions, b.expressions):
        assert (e0.text, e0.obj_ids, e0.exp_id, e0.is_sentence, e0.meta) == (e1.text, e1.obj_ids, e1.exp_id, e1.is_sentence, e1.meta)
        np.testing.assert_array_equal(a.expression_masks(e0), b.expression_masks(e1))
    assert a.intrinsics == b.intrinsics
    for d0, d1 in zip(a.depth, b.depth):
        np.testing.assert_array_equal(np.isnan(d0), np.isnan(d1))
        assert np.nanmax(np.abs(d0 - d1)) <= 0.0005 + 1e-6
    for f0, f1 in zip(a.frames, b.frames):
        if exact_rgb:
            np.testing.assert_array_equal(f0, f1)
        else:
            assert np.abs(f0.astype(int) - f1).mean() < 3


def test_sim_episode_revos_round_trip(tmp_path):
    sample = sim_episode_to_sample(_episode())
    assert sorted(sample.tracks) == [1, 2]
    assert not sample.tracks[1][3].any()  # occluded frames are empty
    meta_path = write_revos(tmp_path, [sample], split="valid")
    assert meta_path.name == revos_meta_name("valid") == "meta_expressions_valid_.json"
    meta = json.loads(meta_path.read_text())
    entry = meta["videos"][sample.name]
    assert entry["frames"] == ["00000", "00001", "00002", "00003", "00004"]
    assert entry["expressions"]["2"]["obj_id"] == [1, 2] and len(entry["expressions"]["2"]["anno_id"]) == 2
    assert entry["expressions"]["3"]["obj_id"] == [] == entry["expressions"]["3"]["anno_id"]
    mask_dict = json.loads((tmp_path / "mask_dict.json").read_text())
    cup_anno = str(entry["expressions"]["0"]["anno_id"][0])
    assert mask_dict[cup_anno][3] is None and isinstance(mask_dict[cup_anno][0]["counts"], str)
    assert (tmp_path / "JPEGImages" / sample.name / "00004.jpg").is_file()
    (back,) = load_revos(tmp_path, "valid")
    _check_same(sample, back, exact_rgb=False)
    assert back.expressions[0].meta.frame_index == 2


def test_mevis_round_trip_png_and_second_revos_split(tmp_path):
    sample = sim_episode_to_sample(_episode(), name="ep0")
    write_mevis(tmp_path, [sample], split="valid_u", image_ext=".png")
    (back,) = load_mevis(tmp_path, "valid_u")
    _check_same(sample, back, exact_rgb=True)
    # ReVOS shares one mask_dict across splits: a second split gets fresh anno ids
    write_revos(tmp_path / "revos", [sample], split="train")
    write_revos(tmp_path / "revos", [sim_episode_to_sample(_episode(), name="ep1")], split="valid")
    (a,) = load_revos(tmp_path / "revos", "train")
    (b,) = load_revos(tmp_path / "revos", "valid")
    _check_same(sample, a, exact_rgb=False)
    assert b.name == "ep1"


def test_loads_hand_made_mevis_layout_without_extension(tmp_path):
    d = tmp_path / "train"
    (d / "JPEGImages" / "vidA").mkdir(parents=True)
    for n in ("00000", "00001"):
        cv2.imwrite(str(d / "JPEGImages" / "vidA" / f"{n}.jpg"), np.zeros((6, 5, 3), np.uint8))
    m0 = np.zeros((6, 5), bool)
    m0[1:3, 2:4] = True
    meta = {"videos": {"vidA": {"expressions": {"0": {"exp": "the moving thing", "obj_id": [0], "anno_id": [17]},
                                                 "1": {"exp": "which one is empty?", "obj_id": [], "anno_id": []}},
                                 "frames": ["00000", "00001"]}}}
    (d / "meta_expressions.json").write_text(json.dumps(meta))
    (d / "mask_dict.json").write_text(json.dumps({"17": [coco_rle.encode(m0, compressed=False), None]}))
    (v,) = load_mevis(tmp_path, "train")
    np.testing.assert_array_equal(v.tracks[0][0], m0)
    assert not v.tracks[0][1].any()
    assert v.expressions[1].obj_ids == [] and v.expressions[1].is_sentence  # '?' heuristic without extension
    assert v.depth is None and v.intrinsics is None


def test_video_format_errors_name_the_file(tmp_path):
    d = tmp_path / "valid"
    d.mkdir()
    (d / "meta_expressions.json").write_text(json.dumps({"videos": {}}))
    with pytest.raises(DatasetFormatError, match="no public ground-truth"):
        load_mevis(tmp_path, "valid")
    (d / "meta_expressions.json").write_text(json.dumps({"vids": {}}))
    (d / "mask_dict.json").write_text("{}")
    with pytest.raises(DatasetFormatError, match="meta_expressions.json"):
        load_mevis(tmp_path, "valid")


def test_real_simulator_episode_round_trip(tmp_path):
    sim = pytest.importorskip("frs_ros.sim")
    sample = sim_episode_to_sample(sim.generate_episode(0, "val", n_frames=3))
    write_revos(tmp_path, [sample], "valid")
    (back,) = load_revos(tmp_path, "valid")
    for k in sample.tracks:
        np.testing.assert_array_equal(sample.tracks[k], back.tracks[k])
    assert [e.meta for e in back.expressions] == [e.meta for e in sample.expressions]
