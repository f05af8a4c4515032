"""ROS-free synchroniser and hand-off helpers (no rclpy)."""

import threading
import time

import pytest

from frs_ros.wire.sync import ApproximateTimeSync, LatestSlot, StampStore, ThrottledReporter

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


# ---- issue 14: one bad or future-stamped set must not stall the synchroniser; clock jumps reset it
S = 1_000_000_000


def _frame(s, t_ns, tag=""):
    out = None
    for k in ("color", "depth", "info"):
        out = s.add(k, t_ns, f"{k}{tag}@{t_ns}")
    return out


def test_a_rejected_future_set_does_not_make_later_sets_stale():
    s = ApproximateTimeSync(("color", "depth", "info"), slop_ns=10 * MS)
    assert _frame(s, 1 * S) is not None
    future = _frame(s, 3601 * S, "bad")  # one malformed set stamped an hour ahead
    assert future is not None
    s.reject()  # the consumer could not convert it
    assert s.last_emitted_ns == 1 * S
    for i in range(1, 5):  # normal sets flow again at once
        assert _frame(s, 1 * S + i * 100 * MS) is not None
    assert s.jumps == 1  # the forward jump was reported (and then forgotten with the set)


def test_clock_jump_back_resets_and_frames_flow():
    jumps = []
    s = ApproximateTimeSync(("color", "depth", "info"), slop_ns=10 * MS, on_jump=jumps.append)
    for i in range(3):
        assert _frame(s, 60 * S + i * 100 * MS) is not None
    # a late message (within jump_ns) is stale, as before
    assert s.add("depth", 60 * S, "late") is None and s.stale == 1 and not jumps
    # a bag loops / the simulator restarts at t=0: every later set would be "older" without the reset
    for i in range(3):
        assert _frame(s, i * 100 * MS) is not None, i
    assert [j.direction for j in jumps] == ["backward"] and jumps[0].size_s == pytest.approx(60.2)
    assert s.last_emitted_ns == 200 * MS


def test_accepted_jump_forward_then_back_recovers():
    jumps = []
    s = ApproximateTimeSync(("color", "depth", "info"), slop_ns=10 * MS, on_jump=jumps.append)
    assert _frame(s, 10 * S) is not None
    assert _frame(s, 3610 * S) is not None  # a valid set from the future (an NTP step forward, a bad driver clock)
    assert _frame(s, 10 * S + 100 * MS) is not None  # the clock comes back: reset, not an hour of stale sets
    assert [j.direction for j in jumps] == ["forward", "backward"]


def test_jump_back_drops_the_old_time_line_but_keeps_the_new():
    s = ApproximateTimeSync(("color", "depth"), slop_ns=10 * MS)
    s.add("color", 50 * S, "c50")
    assert s.add("depth", 50 * S, "d50") is not None
    s.add("color", 50 * S + 100 * MS, "c50.1")  # waiting for its depth when the clock jumps
    assert s.add("depth", 1 * S, "d1") is None  # jump back: c50.1 belongs to the old time line
    assert s.add("color", 1 * S, "c1") == {"color": "c1", "depth": "d1"}
    assert all(st < 2 * S for st, _ in s._queues["color"])


def test_jump_threshold_must_exceed_slop():
    with pytest.raises(ValueError, match="jump_ns"):
        ApproximateTimeSync(("a",), slop_ns=2 * S, jump_ns=1 * S)


def test_latest_slot_age():
    now = [100.0]
    slot = LatestSlot(clock=lambda: now[0])
    assert slot.age_s() is None and slot.latest_with_age() == (0, None, None)
    slot.put("a")
    now[0] = 102.5
    assert slot.age_s() == pytest.approx(2.5) and slot.latest_with_age() == (1, "a", pytest.approx(2.5))
