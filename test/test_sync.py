"""ROS-free synchroniser and hand-off helpers (no rclpy)."""

import threading
import time

import pytest

from frs_ros.nodes.sync import ApproximateTimeSync, LatestSlot, StampStore, ThrottledReporter

MS = 1_000_000


def test_exact_and_approximate_matching():
    s = ApproximateTimeSync(("color", "depth", "info"), slop_ns=10 * MS)
    assert s.add("color", 100 * MS, "c1") is None
    assert s.add("depth", 105 * MS, "d1") is None
    out = s.add("info", 100 * MS, "i1")
    assert out == {"color": "c1", "depth": "d1", "info": "i1"}


def test_outside_slop_does_not_match():
    s = ApproximateTimeSync(("color", "depth"), slop_ns=10 * MS)
    s.add("color", 100 * MS, "c1")
    assert s.add("depth", 120 * MS, "d") is None


def test_picks_closest_partner_and_latest_frame_wins():
    s = ApproximateTimeSync(("color", "depth"), slop_ns=5 * MS)
    s.add("color", 100 * MS, "c100")
    s.add("color", 133 * MS, "c133")
    s.add("color", 166 * MS, "c166")
    out = s.add("depth", 165 * MS, "d165")
    assert out == {"color": "c166", "depth": "d165"}
    # the older colour frames were dropped, and a late depth for them is stale
    assert s.add("depth", 100 * MS, "d100") is None
    assert s.add("depth", 133 * MS, "d133") is None
    assert s.dropped >= 4


def test_queue_size_bounds_memory():
    s = ApproximateTimeSync(("color", "depth"), slop_ns=0, queue_size=2)
    for i in range(10):
        s.add("color", i * MS, i)
    assert len(s._queues["color"]) == 2
    assert s.add("depth", 9 * MS, "d") == {"color": 9, "depth": "d"}


def test_single_stream_emits_every_message():
    s = ApproximateTimeSync(("color",), slop_ns=0)
    assert s.add("color", 1, "a") == {"color": "a"}
    assert s.add("color", 2, "b") == {"color": "b"}


def test_bad_arguments():
    with pytest.raises(ValueError):
        ApproximateTimeSync((), 0)
    with pytest.raises(ValueError):
        ApproximateTimeSync(("a",), -1)
    s = ApproximateTimeSync(("a",), 0)
    with pytest.raises(KeyError):
        s.add("b", 0, None)


def test_latest_slot_skips_stale_values_and_wakes_waiters():
    slot = LatestSlot()
    assert slot.wait_newer(0, timeout_s=0.01) == (0, None)
    slot.put("a")
    slot.put("b")
    seq, v = slot.wait_newer(0, timeout_s=0.01)
    assert (seq, v) == (2, "b")
    got = []

    def waiter():
        got.append(slot.wait_newer(seq, timeout_s=5.0))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    slot.put("c")
    t.join(2.0)
    assert got == [(3, "c")]
    t = threading.Thread(target=lambda: got.append(slot.wait_newer(3, timeout_s=10.0)))
    t.start()
    slot.close()
    t.join(2.0)
    assert got[-1] == (3, None)


def test_stamp_store_nearest_and_capacity():
    st = StampStore(capacity=3)
    for s in (10, 20, 30, 40):
        st.put(s, f"v{s}")
    assert len(st) == 3 and st.get(10) is None
    assert st.get(20) == "v20" and st.get(22) is None and st.get(22, tolerance_ns=5) == "v20"


def test_throttled_reporter_counts_everything_logs_once_per_period():
    now = [0.0]
    r = ThrottledReporter(period_s=10.0, clock=lambda: now[0])
    assert r.report("bad_encoding") is True
    assert r.report("bad_encoding") is False
    assert r.report("other") is True
    now[0] = 11.0
    assert r.report("bad_encoding") is True
    assert r.counts["bad_encoding"] == 3 and r.total == 4
