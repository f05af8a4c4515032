"""The generated frs_ros interfaces (msg/, action/ReasonSeg.action) against real rclpy.

Every message and the action's Goal/Result/Feedback are filled with non-trivial values (NaN
centroids and depth, RLE counts, a mono8 mask Image, CameraInfo matrices) and must survive a CDR
round trip through rclpy.serialization; a TargetArray also travels over DDS in one process.
"""

from __future__ import annotations

import array
import math
import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

NAN = float("nan")


# ---------------------------------------------------------------------------- builders


def _rle(mask: np.ndarray) -> list[int]:
    """COCO-style row-major counts: alternating runs of 0 and 1, starting with a run of 0."""
    flat = mask.astype(bool).ravel(order="C")
    counts, current, run = [], False, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return counts


def _mask() -> np.ndarray:
    """(4, 6) bool mask of a small object."""
    mask = np.zeros((4, 6), dtype=bool)
    mask[1:3, 2:5] = True
    mask[3, 4] = True
    return mask


def _header(frame_id="camera_color_optical_frame"):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    return Header(stamp=Time(sec=1_700_000_000, nanosec=123_456_789), frame_id=frame_id)


def _mono8(mask: np.ndarray, header):
    from sensor_msgs.msg import Image

    h, w = mask.shape
    return Image(header=header, height=h, width=w, encoding="mono8", is_bigendian=0, step=w,
                 data=(mask.astype(np.uint8) * 255).tobytes())


def _depth_valid():
    from frs_ros.msg import DepthStats

    return DepthStats(mean=1.25, std=0.04, min=1.18, max=1.33, median=1.24, valid_fraction=0.875,
                      source="sensor", missing_reason="")


def _depth_missing():
    from frs_ros.msg import DepthStats

    return DepthStats(mean=NAN, std=NAN, min=NAN, max=NAN, median=NAN, valid_fraction=0.0,
                      source="none", missing_reason="no depth image arrived within 0.1 s of the colour frame")


def _roi():
    from sensor_msgs.msg import RegionOfInterest

    return RegionOfInterest(x_offset=2, y_offset=1, height=3, width=3, do_rectify=False)


def _twin_object(track_id=7, depth_ok=True):
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point, Vector3

    from frs_ros.msg import TwinObject

    mask = _mask()
    return TwinObject(
        track_id=track_id, label="mug", score=0.91, alt_labels=["cup", "bowl"], alt_scores=[0.06, 0.02],
        box=_roi(), area_px=int(mask.sum()), mask_height=mask.shape[0], mask_width=mask.shape[1],
        mask_rle=_rle(mask), depth=_depth_valid() if depth_ok else _depth_missing(),
        centroid=Point(x=0.12, y=-0.03, z=1.25) if depth_ok else Point(x=NAN, y=NAN, z=NAN),
        velocity=Vector3(x=NAN, y=NAN, z=NAN), visible=True,
        first_seen=Time(sec=1_700_000_000, nanosec=0), last_seen=Time(sec=1_700_000_001, nanosec=5),
        attributes_json='{"color": "red", "material": "ceramic"}')


def _camera_info(header):
    from sensor_msgs.msg import CameraInfo

    return CameraInfo(header=header, height=4, width=6, distortion_model="plumb_bob",
                      d=[0.01, -0.02, 0.0, 0.0, 0.0],
                      k=[525.0, 0.0, 3.0, 0.0, 525.0, 2.0, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[525.0, 0.0, 3.0, 0.0, 0.0, 525.0, 2.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def _target(track_id=7, depth_ok=True):
    from geometry_msgs.msg import Point, PointStamped

    from frs_ros.msg import Target

    header = _header()
    centroid = Point(x=0.12, y=-0.03, z=1.25) if depth_ok else Point(x=NAN, y=NAN, z=NAN)
    return Target(header=header, track_id=track_id, label="mug", score=0.91, mask=_mono8(_mask(), header),
                  box=_roi(), depth=_depth_valid() if depth_ok else _depth_missing(),
                  centroid=PointStamped(header=header, point=centroid))


def _target_array():
    from frs_ros.msg import TargetArray

    return TargetArray(header=_header(), query="the thing I could pour hot tea into",
                       goal_id="0f8e4c2a9b7d4e6f8a1b2c3d4e5f6a7b",
                       targets=[_target(7, depth_ok=True), _target(9, depth_ok=False)])


def _digital_twin():
    from frs_ros.msg import DigitalTwin

    header = _header()
    return DigitalTwin(header=header, seq=42, depth_source="sensor", camera_info=_camera_info(header),
                       objects=[_twin_object(7, depth_ok=True), _twin_object(9, depth_ok=False)])


def _goal():
    from frs_ros.action import ReasonSeg

    return ReasonSeg.Goal(query="the thing I could pour hot tea into", max_targets=2, keep_tracking=True,
                          timeout_s=2.5)


def _result():
    from frs_ros.action import ReasonSeg

    return ReasonSeg.Result(
        status="ok", error="", targets=[_target(7)],
        reasoning="<reason>a mug holds hot liquids</reason><answer>[7]</answer>",
        prompt_tokens=612, cached_tokens=540, generated_tokens=23,
        stage_names=["wait_twin", "serialise", "prefill", "decode", "masks"],
        stage_latencies_s=[0.01, 0.002, 0.41, 0.9, 0.003], total_latency_s=1.325)


def _feedback():
    from frs_ros.action import ReasonSeg

    return ReasonSeg.Feedback(stage=ReasonSeg.Feedback.STAGE_REASONING, stage_name="reasoning",
                              reasoning_so_far="<reason>a mug", generated_tokens=5)


BUILDERS = {
    "DepthStats": _depth_valid,
    "DepthStats(missing)": _depth_missing,
    "TwinObject": _twin_object,
    "TwinObject(no depth)": lambda: _twin_object(9, depth_ok=False),
    "DigitalTwin": _digital_twin,
    "Target": _target,
    "Target(no depth)": lambda: _target(9, depth_ok=False),
    "TargetArray": _target_array,
    "ReasonSeg.Goal": _goal,
    "ReasonSeg.Result": _result,
    "ReasonSeg.Feedback": _feedback,
}


# ---------------------------------------------------------------------------- comparison


def _assert_same(a, b, path="msg"):
    """Field-by-field equality where NaN equals NaN (the generated __eq__ says NaN != NaN)."""
    if hasattr(a, "get_fields_and_field_types"):
        assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
        for field in a.get_fields_and_field_types():
            _assert_same(getattr(a, field), getattr(b, field), f"{path}.{field}")
    elif isinstance(a, (list, tuple, array.array, np.ndarray, bytes)):
        a_list, b_list = list(a), list(b)
        assert len(a_list) == len(b_list), f"{path}: length {len(a_list)} != {len(b_list)}"
        for i, (x, y) in enumerate(zip(a_list, b_list)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float) or isinstance(a, np.floating):
        if math.isnan(a):
            assert math.isnan(b), f"{path}: NaN became {b}"
        else:
            assert b == pytest.approx(a, rel=1e-6), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(BUILDERS))
def test_serialization_round_trip(name):
    from rclpy.serialization import deserialize_message, serialize_message

    msg = BUILDERS[name]()
    data = serialize_message(msg)
    assert isinstance(data, bytes) and len(data) > 0
    back = deserialize_message(data, type(msg))
    _assert_same(msg, back)


def test_round_trip_keeps_nan_rle_and_mask_bytes():
    from rclpy.serialization import deserialize_message, serialize_message

    from frs_ros.msg import DigitalTwin, TargetArray

    twin = deserialize_message(serialize_message(_digital_twin()), DigitalTwin)
    lost = twin.objects[1]
    assert all(math.isnan(v) for v in (lost.centroid.x, lost.centroid.y, lost.centroid.z, lost.depth.mean))
    assert lost.depth.source == "none" and lost.depth.missing_reason
    seen = twin.objects[0]
    assert list(seen.mask_rle) == _rle(_mask())
    assert sum(seen.mask_rle) == seen.mask_height * seen.mask_width
    assert sum(seen.mask_rle[1::2]) == seen.area_px
    assert list(twin.camera_info.k) == [525.0, 0.0, 3.0, 0.0, 525.0, 2.0, 0.0, 0.0, 1.0]

    targets = deserialize_message(serialize_message(_target_array()), TargetArray)
    image = targets.targets[0].mask
    decoded = np.frombuffer(bytes(image.data), dtype=np.uint8).reshape(image.height, image.step)
    assert image.encoding == "mono8"
    assert set(np.unique(decoded)) == {0, 255}
    assert np.array_equal(decoded == 255, _mask())
    assert math.isnan(targets.targets[1].centroid.point.z)


def test_action_types_and_feedback_stage_constants():
    from frs_ros.action import ReasonSeg

    fb = ReasonSeg.Feedback
    stages = [fb.STAGE_WAITING_FOR_TWIN, fb.STAGE_REASONING, fb.STAGE_RUNNING_TOOL, fb.STAGE_ANSWERING]
    assert stages == [0, 1, 2, 3]
    # the action's service/message wrappers that rclpy's ActionServer/ActionClient use
    assert ReasonSeg.Impl.SendGoalService and ReasonSeg.Impl.GetResultService and ReasonSeg.Impl.FeedbackMessage


def test_target_array_pub_sub_over_dds(ros_context, unique_name):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from frs_ros.msg import TargetArray

    topic = f"/{unique_name}/targets"
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub_node = Node(f"{unique_name}_pub", context=ros_context)
    sub_node = Node(f"{unique_name}_sub", context=ros_context)
    received: list[TargetArray] = []
    got_one = threading.Event()

    def on_targets_cb(msg):
        received.append(msg)
        got_one.set()

    sub_node.create_subscription(TargetArray, topic, on_targets_cb, qos)
    publisher = pub_node.create_publisher(TargetArray, topic, qos)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(pub_node)
    executor.add_node(sub_node)
    sent = _target_array()
    try:
        deadline = time.monotonic() + 15.0
        # DDS discovery takes a moment: publish until the subscriber has matched and received one.
        while not got_one.is_set() and time.monotonic() < deadline:
            if publisher.get_subscription_count() > 0:
                publisher.publish(sent)
            executor.spin_once(timeout_sec=0.1)
        assert got_one.is_set(), f"no TargetArray arrived on {topic} within 15 s"
    finally:
        executor.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()
    _assert_same(sent, received[0])
