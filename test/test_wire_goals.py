"""Goal policies of the reasoner node, ROS-free."""

import numpy as np
import pytest

from frs_ros.camera import CameraIntrinsics
from frs_ros.masks import rle_encode
from frs_ros.wire.goals import GoalArbiter, TrackingSession, check_goal_query
from frs_ros.wire.geometry import apply_transform
from frs_ros.reasoning.config import InvalidQueryError
from frs_ros.twin.types import DigitalTwin, TwinObject


@pytest.mark.parametrize("q, match", [("", "empty"), ("   \n", "empty"), (b"mug", "str"), (None, "str"),
                                      ("x" * 20, "more than"), ("the mug\x00", "control")])
def test_bad_queries_are_explained(q, match):
    with pytest.raises(InvalidQueryError, match=match):
        check_goal_query(q, max_chars=10 if isinstance(q, str) and len(q) == 20 else 100)


def test_good_query_passes():
    assert check_goal_query("the red mug\nplease", 100) == "the red mug\nplease"


def test_preempt_policy_cancels_the_running_goal():
    arb = GoalArbiter("preempt")
    a, why = arb.admit("a" * 32)
    assert a is not None and not why
    b, _ = arb.admit("b" * 32)
    assert a.cancel.is_set() and a.preempted and arb.active is b
    arb.finish(a)  # the old goal finishing must not clear the new one
    assert arb.active is b
    arb.finish(b)
    assert arb.active is None


def test_reject_policy_refuses_while_busy():
    arb = GoalArbiter("reject")
    a, _ = arb.admit("a" * 32)
    b, why = arb.admit("b" * 32)
    assert b is None and "reject" in why and not a.cancel.is_set()
    arb.finish(a)
    assert arb.admit("c" * 32)[0] is not None
    with pytest.raises(ValueError):
        GoalArbiter("queue")


def _twin(stamp_s, visible):
    k = CameraIntrinsics(fx=10, fy=10, cx=2, cy=2, width=4, height=4)
    m = np.zeros((4, 4), bool)
    m[1, 1] = True
    obj = TwinObject(track_id=5, mask=rle_encode(m), box=(1, 1, 2, 2), area_px=1, label="mug", score=1.0, visible=visible)
    return DigitalTwin(stamp_ns=int(stamp_s * 1e9), frame_id="cam", intrinsics=k, objects=[obj])


def test_tracking_session_follows_then_stops_when_lost_too_long():
    s = TrackingSession("g", "the mug", [5, 9], lost_s=1.0, last_seen_ns=0)
    assert s.visible_ids(_twin(0.1, True)) == [5]
    assert s.visible_ids(_twin(0.5, False)) == []
    assert s.visible_ids(_twin(1.0, False)) == []
    assert s.visible_ids(_twin(1.2, False)) is None and "not visible" in s.stopped_reason
    assert s.visible_ids(_twin(1.3, True)) is None  # stays stopped


def test_apply_transform_rotation_and_translation():
    q90z = np.array([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    out = apply_transform(np.array([1.0, 0, 0]), q90z, np.array([1.0, 0, 0]))
    np.testing.assert_allclose(out, [1.0, 1.0, 0.0], atol=1e-12)
    assert np.isnan(apply_transform(np.zeros(3), np.array([0, 0, 0, 1.0]), np.full(3, np.nan))).all()


def test_feedback_throttle():
    from frs_ros.wire.goals import FeedbackThrottle

    t = FeedbackThrottle(0.1)
    assert t.allow("reasoning", 0.0) and not t.allow("reasoning", 0.05) and t.allow("reasoning", 0.11)
    assert t.allow("running_tool", 0.12)  # a stage change always goes out


# ---- issue 14: goal fields, cancel at acceptance, stale twins
@pytest.mark.parametrize("q", ["\u200b", "\ufeff\u2060", " \u200b\u200c\u200d \t", "\u2060\n"])
def test_invisible_only_queries_are_blank(q):
    with pytest.raises(InvalidQueryError, match="empty"):
        check_goal_query(q, 100)


def test_visible_text_with_zero_width_characters_passes():
    assert check_goal_query("the\u200bmug", 100) == "the\u200bmug"


@pytest.mark.parametrize("timeout_s, want", [(0.0, 120.0), (2.5, 2.5), (3600.0, 3600.0), (float("inf"), 3600.0),
                                             (3.4e38, 3600.0)])
def test_goal_budget(timeout_s, want):
    from frs_ros.wire.goals import goal_budget_s

    budget, note = goal_budget_s(timeout_s, 120.0)
    assert budget == want and (("clamped" in note) == (timeout_s > 3600))


@pytest.mark.parametrize("timeout_s", [-1.0, float("nan"), float("-inf"), -1e-9])
def test_goal_budget_refuses_nonsense_with_a_reason(timeout_s):
    from frs_ros.wire.goals import InvalidGoalError, goal_budget_s

    with pytest.raises(InvalidGoalError, match="timeout_s"):
        goal_budget_s(timeout_s, 120.0)


def test_cancel_before_admit_is_not_lost():
    arb = GoalArbiter("preempt")
    a, _ = arb.admit("a" * 32)
    arb.request_cancel("b" * 32)  # the cancel callback ran before goal b was admitted
    b, why = arb.admit("b" * 32)
    assert b is None and why == "" and not a.cancel.is_set()  # b never runs and does not preempt a
    assert arb.cancel_requested("b" * 32)
    arb.finish(None, "b" * 32)
    assert not arb.cancel_requested("b" * 32)
    arb.request_cancel("a" * 32)  # a running goal is stopped at once
    assert a.cancel.is_set() and not a.preempted
    arb.finish(a)
    assert arb.active is None and not arb.cancel_requested("a" * 32)


def test_cancel_memory_is_bounded():
    arb = GoalArbiter("preempt")
    for i in range(GoalArbiter.MAX_CANCELS + 10):
        arb.request_cancel(f"{i:032d}")
    assert len(arb._cancels) == GoalArbiter.MAX_CANCELS


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _slot(clock):
    from frs_ros.wire.sync import LatestSlot

    class Slot(LatestSlot):
        def wait_newer(self, seen_seq, timeout_s):  # simulated time: waiting advances the clock
            clock.t += timeout_s
            return super().wait_newer(seen_seq, 0.0)

    return Slot(clock=clock)


def test_wait_for_twin_fresh_stale_none_timeout_cancelled():
    import threading

    from frs_ros.wire.goals import wait_for_twin

    clock = _Clock()
    buf = _slot(clock)
    kw = dict(wait_s=5.0, max_age_s=3.0, budget_s=60.0, clock=clock)
    # nothing ever arrives
    w = wait_for_twin(buf, deadline=60.0, cancel=threading.Event(), **kw)
    assert w.status == "no_twin" and "twin_wait_s=5" in w.error and w.snapshot is None
    # a fresh twin
    buf.put("twin")
    clock.t += 1.0
    w = wait_for_twin(buf, deadline=clock.t + 60, cancel=threading.Event(), **kw)
    assert w.status == "ok" and w.snapshot == "twin" and w.age_s == pytest.approx(1.0)
    # the camera stalled: the twin ages past max_twin_age_s, and no fresh one comes
    clock.t += 5.0
    told = []
    w = wait_for_twin(buf, deadline=clock.t + 60, cancel=threading.Event(), on_stale=told.append, **kw)
    assert w.status == "stale_twin" and "max_twin_age_s=3" in w.error and "old" in w.error
    assert len(told) == 1 and told[0] == pytest.approx(6.0)
    # no limit
    assert wait_for_twin(buf, deadline=clock.t + 60, cancel=threading.Event(), **{**kw, "max_age_s": 0.0}).status == "ok"
    # the goal's budget ends first
    w = wait_for_twin(buf, deadline=clock.t + 1.0, cancel=threading.Event(), **kw)
    assert w.status == "timeout" and "60 s" in w.error
    # cancelled
    ev = threading.Event()
    ev.set()
    assert wait_for_twin(buf, deadline=clock.t + 60, cancel=ev, **kw).status == "cancelled"
