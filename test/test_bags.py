"""rosbag2 read/write with the rosbags library (both storages) and the offline bag evaluation."""

import json

import numpy as np
import pytest

pytest.importorskip("rosbags")

from frs_ros.data import bags  # noqa: E402

W, H = 160, 120


@pytest.fixture(scope="module")
def episode():
    from frs_ros.sim.generate import generate_episode
    from frs_ros.sim.world import SimConfig

    return generate_episode(3, "test", n_frames=10, config=SimConfig(width=W, height=H))


@pytest.mark.parametrize("storage", bags.STORAGES)
@pytest.mark.parametrize("depth_encoding", ["16UC1", "32FC1"])
def test_sim_bag_roundtrip(tmp_path, episode, storage, depth_encoding):
    path = tmp_path / f"bag_{storage}"
    stamps = bags.write_sim_bag(path, episode.frames, storage=storage, depth_encoding=depth_encoding)
    topics = bags.bag_topics(path)
    assert topics[bags.DEFAULT_TOPICS["color"]] == "sensor_msgs/msg/Image"
    assert topics[bags.SIM_TOPICS["objects"]] == "std_msgs/msg/String"
    frames = list(bags.read_frames(path))
    assert [f.stamp_ns for f in frames] == stamps
    for f, src in zip(frames, episode.frames):
        np.testing.assert_array_equal(f.rgb, src.rgb)
        assert f.intrinsics == src.intrinsics
        valid = np.isfinite(src.depth)
        assert np.array_equal(np.isfinite(f.depth), valid)
        np.testing.assert_allclose(f.depth[valid], src.depth[valid], atol=6e-4 if depth_encoding == "16UC1" else 0)
        np.testing.assert_array_equal(f.gt.instance_map, src.gt.instance_map)
        assert set(f.gt.objects) == set(src.gt.objects)


def test_colour_only_bag(tmp_path, episode):
    path = tmp_path / "rgb_only"
    bags.write_sim_bag(path, episode.frames[:3], storage="sqlite3", topics={"depth": ""}, ground_truth=False)
    frames = list(bags.read_frames(path))
    assert len(frames) == 3 and all(f.depth is None and f.gt is None for f in frames)


@pytest.mark.parametrize("storage", bags.STORAGES)
def test_our_output_messages_roundtrip(tmp_path, storage):
    store = bags.typestore()
    T = store.types
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:4] = 255
    img = bags.image_msg(mask, "mono8", 5, "cam")
    depth = T["frs_ros/msg/DepthStats"](mean=1.0, std=0.1, min=0.9, max=1.1, median=1.0, valid_fraction=1.0,
                                         source="sensor", missing_reason="")
    pt = T["geometry_msgs/msg/PointStamped"](header=img.header, point=T["geometry_msgs/msg/Point"](x=0.1, y=0.2, z=1.0))
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=2, y_offset=1, height=2, width=2, do_rectify=False)
    target = T["frs_ros/msg/Target"](header=img.header, track_id=3, label="mug", score=0.9, mask=img, box=roi,
                                     depth=depth, centroid=pt)
    arr = T["frs_ros/msg/TargetArray"](header=img.header, query="the mug", goal_id="ab", targets=[target])
    path = tmp_path / "out"
    with bags.BagWriter(path, storage) as w:
        w.write("/frs/targets", "frs_ros/msg/TargetArray", 5, arr)
        w.write("/frs/target/mask", "sensor_msgs/msg/Image", 5, img)
    got = list(bags.read_messages(path))
    assert [g[0] for g in got] == ["/frs/targets", "/frs/target/mask"]
    back = got[0][3]
    assert back.query == "the mug" and back.targets[0].track_id == 3 and back.targets[0].centroid.point.z == 1.0
    from frs_ros.wire.image_codec import mask_from_msg

    np.testing.assert_array_equal(mask_from_msg(back.targets[0].mask), mask > 0)
    with pytest.raises(bags.BagError, match="exists"):
        bags.BagWriter(path, storage)


@pytest.mark.ros
def test_rclpy_serialized_messages_are_readable(tmp_path):
    """The demo recorder writes rclpy's CDR bytes as they are; rosbags must read them."""
    from rclpy.serialization import serialize_message

    from frs_ros.msg import TargetArray
    from frs_ros.nodes import conversions as cv

    msg = TargetArray(header=cv.make_header(7, "cam"), query="q", goal_id="g")
    path = tmp_path / "raw"
    with bags.BagWriter(path, "mcap") as w:
        w.write_raw("/frs/targets", "frs_ros/msg/TargetArray", 7, serialize_message(msg))
    (_, _, stamp, back), = list(bags.read_messages(path))
    assert stamp == 7 and back.query == "q" and back.header.frame_id == "cam"


def test_bag_eval_on_a_small_sim_bag(tmp_path, episode, capsys):
    from frs_ros import bag_eval

    path = tmp_path / "sim_bag"
    stamps = bags.write_sim_bag(path, episode.frames, storage="mcap")
    ann = bag_eval.sim_annotations(episode, stamps)
    ann_path = tmp_path / "ann.json"
    ann_path.write_text(json.dumps(ann))
    out = tmp_path / "report.json"
    rc = bag_eval.main([str(path), "--annotations", str(ann_path), "--reasoner-backend", "oracle", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["frames"] == len(episode.frames) and report["answered"] == len(episode.queries)
    assert report["gIoU"] >= 0.8 and 0.0 <= report["cIoU"] <= 1.0
    if "J&F" in report:
        assert 0.0 <= report["J&F"] <= 1.0
    assert "gIoU" in capsys.readouterr().out


def test_bag_eval_reports_bad_inputs(tmp_path):
    from frs_ros import bag_eval

    bad = tmp_path / "ann.json"
    bad.write_text(json.dumps({"queries": [{"query": "x"}]}))
    assert bag_eval.main([str(tmp_path), "--annotations", str(bad), "--reasoner-backend", "oracle"]) == 2


def test_revos_directory_as_annotations(tmp_path, episode):
    """A ReVOS layout played as a camera bag: expressions map onto the bag's frames by order."""
    from frs_ros import bag_eval
    from frs_ros.data.sim_export import sim_episode_to_sample
    from frs_ros.data.video import load_revos, write_revos
    from frs_ros.masks import RLE

    video = sim_episode_to_sample(episode, name="vid0")
    write_revos(tmp_path / "revos", [video], split="valid")
    loaded = load_revos(tmp_path / "revos", "valid")[0]
    bag = tmp_path / "revos_bag"
    stamps = bag_eval.dataset_to_bag(bag, loaded.frames, loaded.depth, loaded.intrinsics, storage="sqlite3")
    assert bag_eval._bag_stamps(bag, {}) == stamps
    ann = bag_eval.dataset_annotations(tmp_path / "revos", "revos", stamps, "valid", video="vid0")
    assert len(ann) == len(loaded.expressions)
    a = ann[0]
    assert a["stamp_ns"] == stamps[0] and len(a["frames"]) == len(stamps) - 1
    e = loaded.expressions[0]
    want = np.zeros(loaded.frames[0].shape[:2], bool)
    for oid in e.obj_ids:
        want |= loaded.tracks[oid][3]
    np.testing.assert_array_equal(RLE.from_json(a["frames"][str(stamps[3])]).decode(), want)
    with pytest.raises(ValueError, match="--video"):
        bag_eval.dataset_annotations(tmp_path / "revos", "revos", stamps, "valid", video="nope")
