"""The whole graph over real rclpy + DDS (frs_bringup in one process, and the cross-process path).

Small sim images (160x120), few frames, oracle reasoner (a slow wrapper of it where something
must be cancelled). Every wait has a timeout, so a failure never hangs.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from frs_ros.nodes.soak import wait_for as _wait

pytestmark = [pytest.mark.ros, pytest.mark.slow]

W, H, N_FRAMES, RATE = 160, 120, 12, 10.0
SIM = {"width": W, "height": H, "n_frames": N_FRAMES, "loop": False, "rate_hz": RATE, "seed": 3}


class SlowOracle:
    """The oracle, streaming its rollout one "token" per ``delay_s`` and stopping between tokens
    when cancelled — something long-running to cancel/preempt, deterministically."""

    def __init__(self, config, truth):
        from frs_ros.reasoning.oracle import OracleReasoner

        self.inner = OracleReasoner(config, truth=truth)
        self.delay_s = 0.0
        self.tokens = 80  # 8 s at 0.1 s per token: far longer than any cancel takes

    def observe(self, twin, frame):
        self.inner.observe(twin, frame)

    def reason(self, query, twin, twin_text, frame, tools, *, max_targets=0, cancel=None, on_feedback=None):
        from frs_ros.nodes.soak import slow_tokens

        stopped = slow_tokens(self.tokens if self.delay_s > 0 else 0, self.delay_s, cancel, on_feedback)
        if stopped is not None:
            return stopped
        return self.inner.reason(query, twin, twin_text, frame, tools, max_targets=max_targets, cancel=cancel,
                                 on_feedback=on_feedback)


class Client:
    """An ActionClient + recorder of the output topics, on the graph's executor."""

    def __init__(self, graph, ns=""):
        import rclpy
        from rclpy.action import ActionClient
        from sensor_msgs.msg import Image

        from frs_ros.action import ReasonSeg
        from frs_ros.msg import TargetArray
        from frs_ros.nodes import common

        self.ReasonSeg = ReasonSeg
        self.node = rclpy.create_node("test_client", namespace=ns or None, context=graph.context)
        self.client = ActionClient(self.node, ReasonSeg, common.REASON_SEG)
        self.targets, self.masks, self.feedback = [], [], []
        self._lock = threading.Lock()
        self.node.create_subscription(TargetArray, common.TARGETS, self._targets_cb, common.RELIABLE_QOS)
        self.node.create_subscription(Image, common.TARGET_MASK, self._mask_cb, common.RELIABLE_QOS)
        graph.executor.add_node(self.node)
        assert self.client.wait_for_server(timeout_sec=15.0), "the ReasonSeg action server did not appear"

    def _targets_cb(self, msg):
        with self._lock:
            self.targets.append(msg)

    def _mask_cb(self, msg):
        with self._lock:
            self.masks.append(msg)

    def send(self, query, timeout=30.0, **kw):
        fut = self.client.send_goal_async(self.ReasonSeg.Goal(query=query, **kw),
                                          feedback_callback=lambda fb: self.feedback.append(fb.feedback))
        _wait(fut.done, 10.0, "goal acceptance")
        return fut.result()

    def result(self, handle, timeout=30.0):
        rf = handle.get_result_async()
        _wait(rf.done, timeout, "the goal result")
        return rf.result()


def _iou(a, b):
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


@pytest.fixture(scope="module")
def graph():
    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions

    from frs_ros.bringup import build_graph
    from frs_ros.reasoning.api import ReasonSegEngine
    from frs_ros.reasoning.config import ReasonerConfig
    from frs_ros.sim.types import QueryBook

    from conftest import ROS_DOMAIN_ID

    ctx = Context()
    rclpy.init(context=ctx, domain_id=ROS_DOMAIN_ID, signal_handler_options=SignalHandlerOptions.NO)
    cfg = ReasonerConfig(backend="oracle")
    book = QueryBook()  # filled by the sim camera, read by the oracle (its ground truth)
    slow = SlowOracle(cfg, truth=book)
    g = build_graph(overrides={"sim_camera_node": SIM, "reasoner_node": {"reasoner.backend": "oracle", "tracking_lost_s": 30.0}},
                    context=ctx, engine=ReasonSegEngine(cfg, reasoner=slow), query_book=book).start()
    g.extra["slow"] = slow
    cam = g.nodes["sim_camera_node"]
    _wait(lambda: cam.index == N_FRAMES - 1 and g.nodes["digital_twin_node"].twins >= N_FRAMES, 30.0,
          "the simulated episode to reach its last frame")
    g.extra["client"] = Client(g)
    yield g
    g.executor.remove_node(g.extra["client"].node)
    g.shutdown()
    g.extra["client"].node.destroy_node()
    ctx.try_shutdown()


@pytest.mark.torch  # the oracle answers affordance queries through match(): MiniLM embedder (sentence-transformers, torch)
def test_goals_answered_with_correct_masks(graph):
    from frs_ros.nodes.conversions import image_to_array, mask_from_msg, stamp_to_ns

    cli, cam = graph.extra["client"], graph.nodes["sim_camera_node"]
    queries = [q for q in cam.sample.queries if q.target_ids and q.kind != "temporal"]
    assert queries, "the test episode has no targeted queries"
    checked = 0
    for q in queries[:3]:
        res = cli.result(cli.send(q.text))
        r = res.result
        assert r.status == "ok", (q.text, r.status, r.error)
        assert "<answer>" in r.reasoning and r.total_latency_s > 0 and "wait_twin" in r.stage_names
        assert len(r.stage_names) == len(r.stage_latencies_s)
        stamp = stamp_to_ns(r.targets[0].header.stamp)
        k, gt = graph.ground_truth.get(stamp)[:2]
        gt_mask = gt.union_mask(q.target_ids)
        if not gt_mask.any():
            continue  # target hidden in the held frame
        pred = np.zeros((H, W), bool)
        for t in r.targets:
            assert t.mask.encoding == "mono8" and t.mask.header.frame_id == "camera_color_optical_frame"
            assert set(np.unique(image_to_array(t.mask)).tolist()) <= {0, 255}
            assert stamp_to_ns(t.mask.header.stamp) == stamp
            assert np.isfinite(t.centroid.point.z) and t.depth.source == "sensor" and t.depth.median > 0
            pred |= mask_from_msg(t.mask)
        assert _iou(pred, gt_mask) >= 0.9, q.text
        # the union mask topic carries the same mask with the source image's header
        _wait(lambda: any(stamp_to_ns(m.header.stamp) == stamp for m in list(cli.masks)), 5.0, "the mask topic")
        m = next(m for m in list(cli.masks) if stamp_to_ns(m.header.stamp) == stamp)
        assert _iou(mask_from_msg(m), gt_mask) >= 0.9
        checked += 1
    assert checked >= 1


def test_no_target_query_is_ok_and_empty(graph):
    cli, cam = graph.extra["client"], graph.nodes["sim_camera_node"]
    q = next((q for q in cam.sample.queries if not q.target_ids), None)
    if q is None:
        pytest.skip("the episode has no no-target query")
    r = cli.result(cli.send(q.text)).result
    assert r.status == "ok" and list(r.targets) == []


@pytest.mark.parametrize("query, match", [("", "empty"), ("   ", "empty"), ("x" * 600, "max_query_chars"),
                                          ("the mug\x07", "control")])
def test_bad_goals_are_rejected_with_a_sentence(graph, query, match):
    cli = graph.extra["client"]
    res = cli.result(cli.send(query))
    assert res.result.status == "rejected" and match in res.result.error


def test_cancel_mid_reasoning(graph):
    from action_msgs.msg import GoalStatus

    cli, cam, slow = graph.extra["client"], graph.nodes["sim_camera_node"], graph.extra["slow"]
    q = next(q for q in cam.sample.queries if q.target_ids)
    slow.delay_s = 0.1
    try:
        cli.feedback.clear()
        h = cli.send(q.text)
        _wait(lambda: any(f.stage_name == "reasoning" and f.generated_tokens >= 2 for f in list(cli.feedback)), 10.0,
              "reasoning feedback")
        t0 = time.monotonic()
        cancel = h.cancel_goal_async()
        _wait(cancel.done, 5.0, "the cancel response")
        res = cli.result(h)
        assert res.result.status == "cancelled" and "client" in res.result.error
        assert res.status == GoalStatus.STATUS_CANCELED
        assert time.monotonic() - t0 < 4.0  # stopped between tokens, not after the 8 s rollout
    finally:
        slow.delay_s = 0.0


def test_new_goal_preempts_the_running_one(graph):
    cli, cam, slow = graph.extra["client"], graph.nodes["sim_camera_node"], graph.extra["slow"]
    q = next(q for q in cam.sample.queries if q.target_ids)
    slow.delay_s = 0.1
    try:
        cli.feedback.clear()
        first = cli.send(q.text)
        _wait(lambda: any(f.stage_name == "reasoning" for f in list(cli.feedback)), 10.0, "the first goal reasoning")
        slow.delay_s = 0.0
        second = cli.send(q.text)
        r1, r2 = cli.result(first).result, cli.result(second).result
        assert r1.status == "cancelled" and "preempted" in r1.error
        assert r2.status == "ok"
    finally:
        slow.delay_s = 0.0


@pytest.mark.torch  # the oracle answers affordance queries through match(): MiniLM embedder (sentence-transformers, torch)
def test_tracking_continues_after_the_answer_until_stopped(graph):
    from std_msgs.msg import Empty

    from frs_ros.nodes import common
    from frs_ros.nodes.conversions import stamp_to_ns

    cli, cam = graph.extra["client"], graph.nodes["sim_camera_node"]
    q = next(q for q in cam.sample.queries if q.target_ids and q.kind != "temporal")
    r = cli.result(cli.send(q.text, keep_tracking=True)).result
    assert r.status == "ok"
    ids = {t.track_id for t in r.targets}
    answer_stamp = stamp_to_ns(r.targets[0].header.stamp)
    later = lambda: [m for m in list(cli.targets)  # noqa: E731
                     if stamp_to_ns(m.header.stamp) > answer_stamp and {t.track_id for t in m.targets} & ids]
    _wait(lambda: len(later()) >= 3, 10.0, "tracked targets on later frames")
    assert all(m.query == q.text for m in later())
    stop = cli.node.create_publisher(Empty, common.TARGET_STOP, common.RELIABLE_QOS)
    _wait(lambda: graph.nodes["reasoner_node"].tracking is None or (stop.publish(Empty()) and False), 5.0,
          "tracking to stop")
    n = len(cli.targets)
    time.sleep(0.5)
    assert len(cli.targets) == n  # nothing more after the stop


def test_goals_while_inactive_end_error_then_work_after_activate(graph):
    from rclpy.lifecycle import TransitionCallbackReturn

    cli, cam, node = graph.extra["client"], graph.nodes["sim_camera_node"], graph.nodes["reasoner_node"]
    q = next(q for q in cam.sample.queries if q.target_ids)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    try:
        r = cli.result(cli.send(q.text)).result
        assert r.status == "error" and "not active" in r.error
    finally:
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert cli.result(cli.send(q.text)).result.status == "ok"


def test_ingest_survives_malformed_messages(ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image

    from frs_ros.camera import CameraIntrinsics
    from frs_ros.nodes import conversions as cv
    from frs_ros.nodes.camera_ingest_node import CameraIngestNode
    from frs_ros.wire.sync import FrameBuffer

    buf = FrameBuffer()
    node = CameraIngestNode(frame_buffer=buf, context=ros_context, parameter_overrides=[
        Parameter("color_topic", value="/bad/color"), Parameter("depth_topic", value="/bad/depth"),
        Parameter("camera_info_topic", value="/bad/info"), Parameter("qos_reliability", value="reliable"),
        Parameter("stall_warn_s", value=0.5), Parameter("republish", value=False)])
    pub_node = rclpy.create_node("bad_camera", context=ros_context)
    from frs_ros.nodes import common

    pc = pub_node.create_publisher(Image, "/bad/color", common.RELIABLE_QOS)
    pd = pub_node.create_publisher(Image, "/bad/depth", common.RELIABLE_QOS)
    pi = pub_node.create_publisher(CameraInfo, "/bad/info", common.RELIABLE_QOS)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    ex.add_node(pub_node)
    spin = lambda s: [ex.spin_once(timeout_sec=0.02) for _ in range(int(s / 0.02))]  # noqa: E731
    try:
        _wait(lambda: (spin(0.1), pc.get_subscription_count() > 0 and pi.get_subscription_count() > 0)[1], 10.0,
              "discovery")
        k = CameraIntrinsics.from_fov(8, 6, 60.0)
        rgb = np.zeros((6, 8, 3), np.uint8)
        depth = np.full((6, 8), 1.0, np.float32)

        def send(t, color=None, dep=None, info=True):
            h = cv.make_header(t, "cam")
            pc.publish(color or cv.color_to_msg(rgb, h))
            pd.publish(dep or cv.depth_to_msg(depth, h, "16UC1"))
            if info:
                pi.publish(cv.intrinsics_to_camera_info(k, h))

        # 1. missing camera_info: no frame, a throttled warning, no crash
        send(1_000_000_000, info=False)
        spin(1.5)
        assert node.frames == 0 and node.health.reporter.counts.get("no_frames", 0) >= 1
        # 2. wrong encoding on the colour topic
        bad_enc = cv.color_to_msg(rgb, cv.make_header(2_000_000_000, "cam"))
        bad_enc.encoding = "yuv422_weird"
        send(2_000_000_000, color=bad_enc)
        # 3. wrong data length on the depth topic
        bad_len = cv.depth_to_msg(depth, cv.make_header(3_000_000_000, "cam"), "16UC1")
        bad_len.data = bytes(10)
        send(3_000_000_000, dep=bad_len)
        spin(0.5)
        assert node.frames == 0 and node.health.reporter.counts.get("bad_frame", 0) >= 2
        # 4. and it still works afterwards
        send(4_000_000_000)
        _wait(lambda: (spin(0.05), node.frames == 1)[1], 5.0, "a good frame after the bad ones")
        seq, frame = buf.latest()
        assert frame.stamp_ns == 4_000_000_000 and np.allclose(frame.depth, 1.0, atol=1e-3)
    finally:
        ex.shutdown()
        node.destroy_node()
        pub_node.destroy_node()


@pytest.mark.torch  # the oracle answers affordance queries through match(): MiniLM embedder (sentence-transformers, torch)
def test_cross_process_handoff_over_topics(ros_context):
    """The same nodes without shared buffers: frames, twin and ground truth travel over DDS."""
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from frs_ros.nodes.camera_ingest_node import CameraIngestNode
    from frs_ros.nodes.conversions import mask_from_msg, stamp_to_ns
    from frs_ros.nodes.digital_twin_node import DigitalTwinNode
    from frs_ros.nodes.reasoner_node import ReasonerNode
    from frs_ros.nodes.sim_camera_node import SimCameraNode
    from frs_ros.wire.sync import StampStore

    ns = "xp"
    topics = [Parameter("color_topic", value="camera/color"), Parameter("depth_topic", value="camera/depth"),
              Parameter("camera_info_topic", value="camera/info")]
    # the test's own view of the ground truth (the nodes get it over topics); deep enough for the
    # camera's 10 Hz while a first oracle goal that calls match() loads the sentence embedder (12.8 s
    # once on a loaded 2-core machine: a 64-frame store had dropped the answer's frame by then)
    gt_probe = StampStore(capacity=1024)
    cam = SimCameraNode(ground_truth=gt_probe, context=ros_context, namespace=ns,
                        parameter_overrides=topics + [Parameter(k, value=v) for k, v in SIM.items()])
    ingest = CameraIngestNode(context=ros_context, namespace=ns, parameter_overrides=topics)
    twin = DigitalTwinNode(context=ros_context, namespace=ns)
    reasoner = ReasonerNode(context=ros_context, namespace=ns,
                            parameter_overrides=[Parameter("reasoner.backend", value="oracle")])
    ex = MultiThreadedExecutor(num_threads=6, context=ros_context)
    nodes = [cam, ingest, twin, reasoner]
    for n in nodes:
        ex.add_node(n)

    class _G:  # what Client needs
        context, executor = ros_context, ex

    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        _wait(lambda: twin.twins >= 3 and cam.index == N_FRAMES - 1, 30.0, "twins built from frs/frame/* topics")
        assert reasoner.query_book.all(), "the queries did not arrive on frs/sim/queries"
        cli = Client(_G, ns)
        q = next(q for q in cam.sample.queries if q.target_ids and q.kind != "temporal")
        r = cli.result(cli.send(q.text)).result
        assert r.status == "ok", r.error
        stamp = stamp_to_ns(r.targets[0].header.stamp)
        _, gt = gt_probe.get(stamp)[:2]
        pred = np.zeros((H, W), bool)
        for t in r.targets:
            pred |= mask_from_msg(t.mask)
        gt_mask = gt.union_mask(q.target_ids)
        if gt_mask.any():
            assert _iou(pred, gt_mask) >= 0.9
        # a twin that overtook its frame and ground truth (they come on other topics): a goal looks
        # them up again, so the oracle does not fail 'needs ... a frame with ground truth'
        from frs_ros.wire.sync import TwinSnapshot

        snap = reasoner.twin_buffer.latest()[1]
        done = reasoner._complete(TwinSnapshot(twin=snap.twin, frame=None))
        assert done.frame is not None and done.frame.gt is not None and done.frame.stamp_ns == snap.twin.stamp_ns
        ex.remove_node(cli.node)
        cli.node.destroy_node()
    finally:
        ex.shutdown(timeout_sec=2.0)
        for n in nodes:
            n.destroy_node()
        th.join(timeout=5.0)
