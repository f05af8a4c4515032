"""camera_ingest_node over real rclpy + DDS: clock jumps and future-stamped sets (issue 14).

A publisher plays a camera (colour, depth, camera_info with one stamp per set); the node's
frames must keep flowing, within a second, after a malformed set stamped an hour ahead, a valid
one from the future, and a jump back in time (a bag replay looping, a simulator restarting).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

S = 1_000_000_000


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def camera(ros_context, unique_name):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image

    from frs_ros.camera import CameraIntrinsics
    from frs_ros.nodes import common, conversions as cv
    from frs_ros.nodes.camera_ingest_node import CameraIngestNode
    from frs_ros.wire.sync import FrameBuffer

    topic = f"/{unique_name}"
    buf = FrameBuffer()
    node = CameraIngestNode(frame_buffer=buf, context=ros_context, parameter_overrides=[
        Parameter("color_topic", value=f"{topic}/color"), Parameter("depth_topic", value=f"{topic}/depth"),
        Parameter("camera_info_topic", value=f"{topic}/info"), Parameter("qos_reliability", value="reliable"),
        Parameter("republish", value=False)])
    pub_node = rclpy.create_node(f"{unique_name}_camera", context=ros_context)
    pubs = [pub_node.create_publisher(t, f"{topic}/{n}", common.RELIABLE_QOS)
            for t, n in ((Image, "color"), (Image, "depth"), (CameraInfo, "info"))]
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(pub_node)
    k = CameraIntrinsics.from_fov(8, 6, 60.0)
    rgb = np.zeros((6, 8, 3), np.uint8)
    depth = np.full((6, 8), 1.0, np.float32)

    class Camera:
        def __init__(self):
            self.node, self.buffer = node, buf

        def spin(self, seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=0.01)

        def send(self, t_ns, bad=False):
            h = cv.make_header(t_ns, "cam")
            color = cv.color_to_msg(rgb, h)
            if bad:
                color.encoding = "yuv422_weird"
            pubs[0].publish(color)
            pubs[1].publish(cv.depth_to_msg(depth, h, "16UC1"))
            pubs[2].publish(cv.intrinsics_to_camera_info(k, h))

        def play(self, start_ns, n, period_s=0.05):
            """n sets from start_ns, one every period_s (stamps and wall time alike); returns the next stamp."""
            for i in range(n):
                self.send(start_ns + int(i * period_s * S))
                self.spin(period_s)
            return start_ns + int(n * period_s * S)

        def flows_again(self, start_ns, within_s=1.0):
            """Frames resume within ``within_s`` of normal sets from ``start_ns``; returns the next stamp."""
            before = node.frames
            t = start_ns
            end = time.monotonic() + within_s
            while time.monotonic() < end and node.frames <= before:
                self.send(t)
                self.spin(0.05)
                t += int(0.05 * S)
            assert node.frames > before, f"no frame accepted within {within_s} s after stamp {start_ns / S:.2f} s"
            return t

    cam = Camera()
    try:
        _wait(lambda: (cam.spin(0.05), all(p.get_subscription_count() > 0 for p in pubs))[1], 10.0, "discovery")
        yield cam
    finally:
        ex.shutdown()
        node.destroy_node()
        pub_node.destroy_node()


def test_a_malformed_future_set_does_not_stop_the_pipeline(camera):
    t = camera.play(1000 * S, 4)
    assert camera.node.frames >= 3
    camera.send(t + 3600 * S, bad=True)  # one set an hour ahead, and malformed: dropped
    camera.spin(0.2)
    t = camera.flows_again(t + int(0.2 * S))
    t = camera.play(t, 4)
    assert camera.buffer.latest()[1].stamp_ns >= t - S and camera.node.health.reporter.counts.get("bad_frame") == 1


def test_clock_jumps_back_and_forward_recover(camera):
    t = camera.play(1000 * S, 4)
    # a valid set from the future (an NTP step, a driver clock glitch) is taken, then the clock comes back
    camera.send(t + 3600 * S)
    camera.spin(0.2)
    t = camera.flows_again(t + int(0.2 * S))
    # a bag replay loops / the simulator restarts at t=0
    t = camera.flows_again(1 * S)
    camera.play(t, 4)
    counts = camera.node.health.reporter.counts
    assert counts.get("clock_jump_backward", 0) >= 2 and counts.get("clock_jump_forward", 0) >= 1, counts
    assert camera.node.health.extra["clock_jumps"] >= 3
    assert camera.buffer.latest()[1].stamp_ns < 10 * S  # the new time line


def test_stall_warning_says_what_was_dropped(camera):
    t = camera.play(1000 * S, 3)
    node = camera.node
    from rclpy.parameter import Parameter

    said = []
    problem = node.health.problem
    node.health.problem = lambda kind, message, **kw: (said.append(message), problem(kind, message, **kw))
    assert node.set_parameters([Parameter("stall_warn_s", value=0.5)])[0].successful  # run time: applies at once
    for i in range(12):  # stamps that went back a little (< clock_jump_s): late, dropped as stale
        camera.send(t - int(0.5 * S) + i)
        camera.spin(0.1)
    stalls = [m for m in said if m.startswith("no synchronised frame")]
    assert stalls and "older than the last accepted set" in stalls[-1] and "clock_jump_s" in stalls[-1], said


def test_guard_counts_a_shutdown_race_without_a_warning(ros_context, unique_name):
    """A callback that meets a destroyed entity (Ctrl-C while a message is in flight) is counted as
    '<kind>:shutdown' and logged at debug level only; any other exception is still a warning."""
    import rclpy
    from rclpy.exceptions import InvalidHandle

    from frs_ros.nodes.common import NodeHealth

    node = rclpy.create_node(unique_name, context=ros_context)
    try:
        health = NodeHealth(node)
        logged = []
        health.problem = lambda kind, message, level="warning": logged.append((kind, level))

        def destroyed(_msg):
            raise InvalidHandle("cannot use Destroyable because destruction was requested")

        def broken(_msg):
            raise ValueError("bad message")

        assert health.guard("color_msg")(destroyed)(None) is None
        assert health.guard("color_msg")(broken)(None) is None
        assert logged == [("color_msg:shutdown", "debug"), ("color_msg:ValueError", "warning")]
    finally:
        node.destroy_node()
