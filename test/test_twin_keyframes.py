"""Two-tier twin: background keyframes through the real Tracker (frs_ros.twin.keyframes + tracker)."""

import math
import threading
import time

import numpy as np
import pytest

from frs_ros.twin.backends import build_twin_backends
from frs_ros.twin.backends.sim import SimSegmenter
from frs_ros.twin.config import TwinConfig
from frs_ros.twin.depth import depth_stats
from frs_ros.twin.keyframes import DelayedKeyframes
from frs_ros.twin.synthetic import Shape2D, make_frame
from frs_ros.twin.tracker import Tracker

DT = 100_000_000  # 10 Hz


def _scene(i, with_c=False, with_a=True, with_depth=True):
    s = [Shape2D(2, "bottle", "rect", 90, 50, 16, 30, 1.2, (30, 160, 60))]
    if with_a:  # a red mug moving right 2 px per frame
        s.append(Shape2D(1, "mug", "disc", 24 + 2 * i, 40, 20, 20, 1.0, (200, 30, 30)))
    if with_c:
        s.append(Shape2D(3, "bowl", "rect", 40, 80, 24, 12, 0.8, (40, 80, 200)))
    return make_frame(s, width=128, height=96, stamp_ns=i * DT, seq=i, with_depth=with_depth)


def _sim_to_tracks(pairs):
    seen = {}
    for twin, frame in pairs:
        for o in twin.objects:
            if o.visible:
                ids, counts = np.unique(frame.gt.instance_map[o.mask.decode()], return_counts=True)
                seen.setdefault(int(ids[np.argmax(counts)]), set()).add(o.track_id)
    return seen


class _GatedSim(SimSegmenter):
    """The sim segmenter, but a keyframe's segmentation waits until the test opens the gate."""

    def __init__(self, config):
        super().__init__(config)
        self.gate = threading.Event()
        self.started = threading.Event()

    def segment(self, frame):
        self.started.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().segment(frame)


def test_updates_never_wait_for_a_background_keyframe():
    cfg = TwinConfig(propagator="flow", keyframes="background", keyframe_interval=3)
    be = build_twin_backends(cfg)
    be.segmenter = _GatedSim(cfg)
    tr = Tracker(cfg, backends=be)
    try:
        twins = [tr.update(_scene(i)) for i in range(4)]  # returns although the model is blocked
        assert tr.backends.segmenter.started.wait(10)
        assert all(not t.objects for t in twins) and tr.keyframe_status()["in_flight"]
        assert tr.stats["keyframes_submitted"] == 1 and tr.stats["keyframes"] == 0
        tr.backends.segmenter.gate.set()
        assert tr.wait_keyframe(30)
        f = _scene(4)
        twin = tr.update(f)  # the keyframe of frame 0 lands on frame 4, brought forward by flow
        assert twin.stamp_ns == 4 * DT and twin.keyframe_ns == 0
        assert sorted(o.label for o in twin.objects) == ["bottle", "mug"]
        mug = next(o for o in twin.objects if o.label == "mug")
        gt = f.gt.instance_map == 1
        m = mug.mask.decode()
        assert (m & gt).sum() / (m | gt).sum() > 0.85  # where the mug is NOW, not at frame 0 (8 px back)
        assert mug.keyframe_ns == 0 and mug.label_ns == 0 and mug.last_seen_ns == 4 * DT
        st = tr.keyframe_status()
        assert st["lag_frames"] == 4 and st["latency_s"] >= st["model_s"] > 0
    finally:
        tr.backends.segmenter.gate.set()
        tr.close()


@pytest.mark.parametrize("discover", [False, True])
def test_late_keyframes_keep_one_id_per_object_and_exact_depth(discover):
    cfg = TwinConfig(propagator="flow", keyframe_interval=4, retire_after_s=10, discover=discover)
    tr = Tracker(cfg, keyframe_runner=lambda work: DelayedKeyframes(work, 3))
    pairs = []
    for i in range(20):
        f = _scene(i, with_c=i >= 5, with_a=i < 12)  # bowl appears at 5, mug leaves at 12
        pairs.append((tr.update(f), f))
    m = _sim_to_tracks(pairs)
    # sim id 0 is background: flow keeps the mug's mask where it was until a keyframe lands
    assert set(m) - {0} == {1, 2, 3} and all(len(m[k]) == 1 for k in (1, 2, 3))
    assert not pairs[-1][0].get(next(iter(m[1]))).visible  # a landed keyframe saw the mug gone
    bowl = next(iter(m[3]))
    born = next(t for t, _ in pairs if bowl in t.ids()).get(bowl)
    if discover:  # found by depth on the frame it appears; the keyframes that land later keep its id
        assert born.first_seen_ns == 5 * DT and born.keyframe_ns == 5 * DT
        assert pairs[-1][0].get(bowl).label == "bowl"  # labelled by a keyframe that landed since
    else:  # found by a keyframe submitted after it appeared, landing 3 frames later: its mask comes from then
        assert 5 * DT < born.first_seen_ns <= 12 * DT and born.keyframe_ns == born.first_seen_ns - 3 * DT
    for twin, f in pairs:
        assert twin.keyframe_ns <= twin.stamp_ns
        for o in twin.objects:
            if o.visible:  # statistics of the twin's own mask on this frame's depth, exactly
                ref = depth_stats(f.depth, o.mask.decode(), "sensor")
                assert (o.depth.median, o.depth.mean, o.depth.valid_fraction) == (ref.median, ref.mean, ref.valid_fraction)
    assert tr.stats["keyframes"] >= 3 and tr.stats["segment_calls"] == tr.stats["keyframes"]


def test_no_depth_gives_nan_with_a_reason_on_the_cheap_path():
    tr = Tracker(TwinConfig(propagator="flow"), keyframe_runner=lambda work: DelayedKeyframes(work, 1))
    for i in range(4):
        twin = tr.update(_scene(i, with_depth=False))
    assert twin.objects
    for o in twin.objects:
        assert math.isnan(o.depth.median) and o.depth.missing_reason == "no depth image"
        assert np.all(np.isnan(o.centroid_m))


def test_cpu_budget_spaces_keyframes_by_measured_model_time():
    class _Slow(SimSegmenter):
        def segment(self, frame):
            time.sleep(0.5)
            return super().segment(frame)

    cfg = TwinConfig(propagator="flow", keyframe_interval=1, keyframe_cpu_budget=0.1)
    be = build_twin_backends(cfg)
    be.segmenter = _Slow(cfg)
    tr = Tracker(cfg, backends=be, keyframe_runner=lambda work: DelayedKeyframes(work, 1))
    tr.update(_scene(0))  # submits (no tracks yet)
    tr.update(_scene(1))  # lands: the next keyframe may start 0.5 s x (1/0.1 - 1) = 4.5 s later
    st = tr.keyframe_status()
    assert st["model_s"] >= 0.5 and 0 < st["next_in_s"] <= 9 * st["model_s"]
    n = tr.stats["keyframes_submitted"]
    tr.update(_scene(2))  # due by interval, but held back by the budget
    assert tr.stats["keyframes_submitted"] == n == 1


def test_held_keyframes_do_not_start():
    tr = Tracker(TwinConfig(propagator="flow", keyframe_interval=1), keyframe_runner=lambda work: DelayedKeyframes(work, 1))
    tr.hold_keyframes()
    for i in range(3):
        twin = tr.update(_scene(i))
    assert tr.stats["keyframes_submitted"] == 0 and not twin.objects
    tr.hold_keyframes(False)
    tr.update(_scene(3))
    tr.update(_scene(4))
    assert tr.stats["keyframes_submitted"] >= 1 and tr.latest().objects


def test_detect_waits_for_the_segmenter_a_background_keyframe_holds_and_says_so():
    from frs_ros.reasoning.types import ToolCall
    from frs_ros.twin.tools import run_tool

    cfg = TwinConfig(propagator="flow", keyframes="background", keyframe_interval=3, labeler="sim")
    be = build_twin_backends(cfg)
    be.segmenter = _GatedSim(cfg)
    tr = Tracker(cfg, backends=be)
    try:
        for i in range(2):
            tr.update(_scene(i))
        assert be.segmenter.started.wait(10)  # the keyframe is inside the segmenter now
        msgs, out = [], {}
        th = threading.Thread(target=lambda: out.update(r=run_tool(ToolCall("detect", ("mug",)), tr,
                                                                 on_wait=msgs.append)))
        th.start()
        deadline = time.monotonic() + 10
        while not msgs and time.monotonic() < deadline:
            time.sleep(0.01)
        # the mug is not in the (still empty) twin: detect needs segment_boxes, which the keyframe holds
        assert msgs == ["waiting for the segmenter (in use by a background keyframe)"] and th.is_alive()
        be.segmenter.gate.set()
        th.join(30)
        assert not th.is_alive() and "(new)" in out["r"] and len(msgs) == 1
        assert tr.wait_keyframe(30)
        msgs.clear()
        run_tool(ToolCall("detect", ("bottle",)), tr, on_wait=msgs.append)
        assert msgs == []  # a free model: no wait, no message
    finally:
        be.segmenter.gate.set()
        tr.close()


class _CountingSim(SimSegmenter):
    """The sim segmenter, logging which model calls the worker makes (segment / set_tracks / propagate)."""

    def __init__(self, config):
        super().__init__(config)
        self.calls = []

    def segment(self, frame):
        self.calls.append(("segment", frame.seq))
        return super().segment(frame)

    def set_tracks(self, frame, masks):
        self.calls.append(("seed", frame.seq, tuple(sorted(masks))))
        return super().set_tracks(frame, masks)

    def propagate(self, frame):
        self.calls.append(("propagate", frame.seq))
        return super().propagate(frame)


def test_video_refreshes_between_segmentations_correct_masks_and_keep_ids():
    # keyframe_video=2: segmentation, then two refreshes by the segmenter's own video propagation
    # (sim ids here; SAM-2's memory on a robot), then segmentation again; one id per object throughout
    cfg = TwinConfig(propagator="flow", keyframes="background", keyframe_interval=3, keyframe_video=2)
    be = build_twin_backends(cfg)
    be.segmenter = seg = _CountingSim(cfg)
    tr = Tracker(cfg, backends=be, keyframe_runner=lambda work: DelayedKeyframes(work, 1))
    pairs = []
    for i in range(16):
        f = _scene(i, with_c=i >= 8)  # a bowl appears at frame 8: only a segmentation may add it
        pairs.append((tr.update(f), f))
    tr.close()
    # frames 0 and 1 segment (no tracks yet when the second was due); the first refresh seeds the
    # video session with the tracks merged from the segmentation (frame 2), then 2 refreshes, then
    # a segmentation again, and its tracks (the bowl, found by discover at frame 8, too) seed the next
    assert seg.calls[:6] == [("segment", 0), ("segment", 1), ("seed", 2, (1, 2)), ("propagate", 4),
                             ("propagate", 7), ("segment", 10)]
    assert seg.calls[6][:1] == ("seed",) and len(seg.calls[6][2]) == 3
    assert tr.stats["video_refreshes"] == 3 and tr.stats["segment_calls"] == 3 and tr.keyframe_error is None
    assert tr.stats["discovered"] == 1  # the bowl: a refresh finds nothing new, discover does
    assert all(len(ids) == 1 for ids in _sim_to_tracks(pairs).values())  # one track per object
    assert len(_sim_to_tracks(pairs)) == 3
    # a refresh sets the masks it names to its frame's: the mug's mask on a refresh landing is exact
    # up to the one frame of flow it was brought forward by
    landed = [i for i, (tw, f) in enumerate(pairs) if any(o.keyframe_ns and o.keyframe_ns == (i - 1) * DT
                                                         for o in tw.objects)]
    assert landed
    twin, f = pairs[landed[-1]]
    mug = next(o for o in twin.objects if o.visible and o.label == "mug")
    gt = f.gt.instance_map == 1
    inter = (mug.mask.decode() & gt).sum()
    assert inter / (mug.mask.decode() | gt).sum() > 0.9


def test_video_refresh_needs_background_keyframes_and_flow():
    from frs_ros.twin.config import TwinConfigError

    with pytest.raises(TwinConfigError, match="keyframes: background"):
        TwinConfig(propagator="flow", keyframe_video=2)
    with pytest.raises(TwinConfigError, match="propagator: flow"):
        TwinConfig(propagator="segmenter", keyframes="background", keyframe_video=2)


def test_delayed_runner_lands_video_refreshes_after_their_own_delay():
    cfg = TwinConfig(propagator="flow", keyframes="background", keyframe_interval=2, keyframe_video=1)
    be = build_twin_backends(cfg)
    be.segmenter = seg = _CountingSim(cfg)
    tr = Tracker(cfg, backends=be, keyframe_runner=lambda work: DelayedKeyframes(work, 4, 1))
    landed = []
    for i in range(14):
        n0 = tr.stats["video_refreshes"] + tr.stats["segment_calls"]
        tr.update(_scene(i))
        if tr.stats["video_refreshes"] + tr.stats["segment_calls"] > n0:
            landed.append((i, tr.keyframe_status()["lag_frames"]))
    tr.close()
    kinds = {c[1]: c[0] for c in seg.calls if c[0] != "seed"}  # frame -> job kind
    lags = {kinds[i - lag]: lag for i, lag in landed}
    assert lags == {"segment": 4, "propagate": 1}
    with pytest.raises(ValueError, match="video_delay_frames"):
        DelayedKeyframes(lambda f: ([], None), 3, 0)


def test_report_rows_with_video_refreshes_run():
    from frs_ros.twin.report import run_jf

    rows = run_jf(1, 8, "val", 160, 120, (0.1,))
    e = [r for r in rows if r["config"].startswith("(e)")]
    assert len(e) == 1 and 0.0 <= e[0]["J"] <= 1.0 and e[0]["pairs"] > 0
