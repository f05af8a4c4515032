"""keyframe_events: the tracker keyframes early when an object appears or is uncovered between
keyframes (through the real Tracker with the flow propagator)."""

import numpy as np

from frs_ros.twin.config import TwinConfig
from frs_ros.twin.synthetic import Shape2D, make_frame
from frs_ros.twin.tracker import Tracker

DT = 100_000_000  # 10 Hz
MUG = Shape2D(1, "mug", "disc", 15, 20, 10, 10, 1.0, (200, 30, 30))
BOTTLE = Shape2D(2, "bottle", "rect", 45, 25, 8, 16, 1.2, (30, 160, 60))


def _run(events: bool, scenes):
    # coverage_drop ~0: only the event triggers (and the first frame) keyframe
    # discover off: this file is about keyframes (test_twin_discover.py: new objects without one)
    tr = Tracker(TwinConfig(propagator="flow", keyframe_interval=100, keyframe_events=events, retire_after_s=10,
                            coverage_drop=1e-6, discover=False))
    out = []
    for i, shapes in enumerate(scenes):
        f = make_frame(shapes, stamp_ns=i * DT, seq=i)
        twin = tr.update(f)
        out.append((tr.stats["keyframes"], sum(o.visible for o in twin.objects)))
    tr.close()
    return tr, out


def test_an_object_appearing_between_keyframes_triggers_one():
    bowl = Shape2D(3, "bowl", "rect", 20, 40, 12, 6, 0.8, (40, 80, 200))
    scenes = [[MUG, BOTTLE] + ([bowl] if i >= 4 else []) for i in range(8)]
    tr, out = _run(True, scenes)
    assert [k for k, _ in out] == [1, 1, 1, 1, 2, 2, 2, 2]  # keyframe on the frame the bowl appears, once
    assert out[4][1] == 3 and tr.stats["event_keyframes"] == 1
    _, off = _run(False, scenes)
    assert off[-1] == (1, 2)  # without events the bowl waits for the next keyframe


def test_an_uncovered_object_triggers_a_keyframe():
    box = Shape2D(9, "box", "rect", 15, 20, 20, 20, 0.6, (130, 80, 40))  # in front of the mug
    scenes = [[MUG, BOTTLE] + ([box] if 3 <= i < 6 else []) for i in range(9)]
    tr, out = _run(True, scenes)
    # the box appearing is an event (frame 3); the box leaving uncovers the hidden mug (frame 6)
    assert [k for k, _ in out] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert out[6][1] == 2 and 1 in {o.track_id for o in tr.latest().objects if o.visible}  # the mug, same id
    _, off = _run(False, scenes)
    assert [k for k, _ in off] == [1] * 9
