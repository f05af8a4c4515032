"""depth_runs: background: depth from colour on a worker thread, carried to every frame by the flow
(through the real Tracker and FlowPropagator; a scripted estimator gives known depths and a latency
the test controls, the tiny real DepthAnything V2 runs in test_twin_backends)."""

import math
import threading
import time

import numpy as np
import pytest

from frs_ros.twin.backends import TwinBackends
from frs_ros.twin.backends.flow import FlowPropagator
from frs_ros.twin.backends.sim import SimLabeler, SimSegmenter
from frs_ros.twin.config import TwinConfig, TwinConfigError
from frs_ros.twin.synthetic import Shape2D, make_frame
from frs_ros.twin.tracker import Tracker

DT = 100_000_000  # 10 Hz
W, H = 96, 72


class ScriptedDepth:
    """The depth image each frame was drawn with (what a perfect model would say), given only when
    ``release`` is set: the model's latency is the test's to choose. ``fail``: raise instead."""

    def __init__(self, truth: dict[int, np.ndarray]) -> None:
        self.truth, self.release, self.calls, self.fail = truth, threading.Event(), [], False

    def estimate(self, frame):
        self.calls.append(int(frame.stamp_ns))
        assert self.release.wait(10.0), "the test never released the estimate"
        if self.fail:
            raise RuntimeError("model exploded")
        return self.truth[int(frame.stamp_ns)].copy(), "metric"


def _box(cx):
    return Shape2D(1, "box", "rect", cx, 36, 20, 14, 1.2, (200, 60, 40))


MUG = Shape2D(2, "mug", "disc", 70, 30, 12, 12, 0.8, (40, 90, 200))


def _setup(n, move=0.0):
    frames, truth = [], {}
    for i in range(n):
        f = make_frame([_box(30 + move * i), MUG], width=W, height=H, stamp_ns=(i + 1) * DT, seq=i)  # 0 = no stamp
        truth[(i + 1) * DT] = f.depth
        f.depth = None  # a colour-only camera
        frames.append(f)
    cfg = TwinConfig(segmenter="sim", labeler="sim", propagator="flow", depth="depth_anything_v2",
                     depth_runs="background", keyframe_interval=100, coverage_drop=1e-6, keyframe_nice=0)
    est = ScriptedDepth(truth)
    be = TwinBackends(segmenter=SimSegmenter(cfg), labeler=SimLabeler(cfg), depth=est, propagator=FlowPropagator(cfg))
    return Tracker(cfg, backends=be), frames, est


def _right(tr, twin, est, frame) -> float:
    """Smallest share, over the twin's objects, of mask pixels whose depth is the true one (1 cm)."""
    d, _ = tr.latest_depth()
    truth = est.truth[int(frame.stamp_ns)]
    return min(float((np.abs(d[m] - truth[m]) < 0.01).mean()) for m in (o.mask.decode() for o in twin.objects))


def test_update_never_waits_for_the_depth_model_and_says_there_is_no_depth_yet():
    tr, frames, est = _setup(3)
    try:
        t0 = time.monotonic()
        twins = [tr.update(f) for f in frames]  # the model holds its first estimate all along
        assert time.monotonic() - t0 < 2.0
        deadline = time.monotonic() + 5.0
        while not est.calls and time.monotonic() < deadline:  # the worker thread starts it when it can
            time.sleep(0.01)
        assert est.calls == [DT]  # one estimate in flight at a time: the first frame's
        o = twins[-1].objects[0]
        assert twins[-1].depth_source == "none" and math.isnan(o.depth.median) and o.depth.missing_reason
        assert tr.keyframe_status()["depth_ns"] == 0
    finally:
        est.release.set()
        tr.close()


@pytest.mark.parametrize("move", [0.0, 3.0])
def test_a_landed_estimate_is_carried_to_the_current_frame_with_its_stamp(move):
    # the estimate of frame 0 lands while frame 3 is the latest: brought forward by the flow of
    # frames 1-3, then carried frame to frame; the box moves `move` px a frame
    tr, frames, est = _setup(8, move)
    try:
        for f in frames[:3]:
            tr.update(f)
        est.release.set()
        assert tr.wait_depth(5.0)
        twin = tr.update(frames[3])
        st = tr.keyframe_status()
        assert twin.depth_source == "depth_anything_v2_metric" and st["depth_ns"] == DT
        assert st["depth_lag_frames"] == 3 and st["depth_latency_s"] > 0
        assert tr.wait_depth(5.0) and est.calls[:2] == [DT, 4 * DT]  # the worker took the latest frame next
        # the depth image under each mask is the surface there now, not where it was 3 frames ago
        # (9 px ago for the moving box: 55 % of it would be wrong); carried on frame by frame, edges
        # pick up the flow's noise (>= 88 % right over 8 frames, a 1-frame lag each)
        assert _right(tr, twin, est, frames[3]) >= 0.95
        for f in frames[4:]:
            twin = tr.update(f)
            tr.wait_depth(5.0)
            assert _right(tr, twin, est, f) >= 0.85
        box = next(o for o in twin.objects if o.label == "box")
        mug = next(o for o in twin.objects if o.label == "mug")
        # exact on the visible masks: nearest-neighbour carrying keeps each surface's own depth
        assert box.depth.median == pytest.approx(1.2) and mug.depth.median == pytest.approx(0.8)
        assert np.isfinite(box.centroid_m).all() and box.centroid_m[2] == pytest.approx(1.2, abs=0.01)
        assert tr.keyframe_status()["depth_ns"] >= 4 * DT
    finally:
        est.release.set()
        tr.close()


def test_a_failing_depth_model_is_counted_and_tracking_goes_on():
    tr, frames, est = _setup(4)
    est.fail = True
    est.release.set()
    try:
        for f in frames:
            twin = tr.update(f)
            tr.wait_depth(5.0)
        assert tr.stats["depth_errors"] >= 2 and "model exploded" in tr.depth_error
        assert len(twin.objects) == 2 and all(o.visible for o in twin.objects)
        assert twin.depth_source == "none"
    finally:
        tr.close()


def test_background_depth_needs_the_flow_propagator():
    with pytest.raises(TwinConfigError, match="propagator: flow"):
        TwinConfig(depth="depth_anything_v2", depth_runs="background", propagator="segmenter")
    TwinConfig(depth="sensor", depth_runs="background", propagator="segmenter")  # no model: nothing to carry
