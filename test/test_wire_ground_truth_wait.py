"""GroundTruthWait: frames queued until their simulator ground truth (no rclpy)."""

from dataclasses import dataclass, field

import pytest

from frs_ros.wire.ground_truth_wait import GroundTruthWait
from frs_ros.wire.sync import StampStore


@dataclass
class FakeFrame:
    stamp_ns: int
    gt: object = None
    extras: dict = field(default_factory=dict)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _wait(**kw):
    store, clock = StampStore(64), Clock()
    return GroundTruthWait(store, clock=clock, **kw), store, clock


def test_late_ground_truth_is_waited_for_not_failed():
    w, store, clock = _wait(max_wait_s=2.0)
    w.add(FakeFrame(1))
    assert w.pop_ready() is None and len(w) == 1
    clock.t += 0.8  # later than the old fixed 0.3 s wait
    store.put(1, (-1, "gt1", {"T_world_camera": "pose"}))
    frame = w.pop_ready()
    assert frame.stamp_ns == 1 and frame.gt == "gt1" and frame.extras == {"T_world_camera": "pose"}
    assert len(w) == 0 and (w.matched, w.skipped, w.expired) == (1, 0, 0)


def test_newest_ready_frame_wins_and_older_ones_are_skipped():
    w, store, clock = _wait()
    for s in (1, 2, 3, 4):
        w.add(FakeFrame(s))
    store.put(1, (-1, "gt1"))
    store.put(3, (-1, "gt3"))
    assert w.pop_ready().gt == "gt3"
    assert [f.stamp_ns for _, f in w._queue] == [4]  # noqa: SLF001 - 4 still waits for its ground truth
    assert w.skipped == 2 and w.matched == 1


def test_frames_expire_after_max_wait_and_starvation_is_measured():
    w, store, clock = _wait(max_wait_s=1.0)
    w.add(FakeFrame(1))
    clock.t += 0.6
    w.add(FakeFrame(2))
    clock.t += 0.6
    assert w.pop_ready() is None
    assert w.expired == 1 and len(w) == 1  # frame 1 waited 1.2 s, frame 2 only 0.6 s
    assert w.starved_s() == pytest.approx(1.2)
    store.put(2, (-1, "gt2"))
    assert w.pop_ready().stamp_ns == 2 and w.starved_s() == 0.0


def test_capacity_pushes_out_the_oldest():
    w, store, clock = _wait(capacity=2)
    for s in (1, 2, 3):
        w.add(FakeFrame(s))
    assert len(w) == 2 and w.expired == 1


@pytest.mark.parametrize("kw", [{"max_wait_s": 0.0}, {"capacity": 0}])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        GroundTruthWait(StampStore(4), **kw)
