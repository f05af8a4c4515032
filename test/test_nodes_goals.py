"""Goal policies of the reasoner node, ROS-free."""

import numpy as np
import pytest

from frs_ros.camera import CameraIntrinsics
from frs_ros.masks import rle_encode
from frs_ros.nodes.goals import GoalArbiter, TrackingSession, check_goal_query
from frs_ros.nodes.geometry import apply_transform
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


@pytest.mark.parametrize("status, cancel_set, timed_out, preempted, want", [
    ("ok", False, False, False, "ok"),
    ("ok", True, False, True, "ok"),  # finished before the stop took effect: keep the answer
    ("cancelled", True, True, False, "timeout"),
    ("cancelled", True, False, False, "cancelled"),
    ("cancelled", True, False, True, "cancelled"),
    ("parse_error", True, False, False, "cancelled"),
    ("parse_error", False, False, False, "error"),
    ("unknown_id", False, False, False, "error"),
])
def test_answer_outcome(status, cancel_set, timed_out, preempted, want):
    from frs_ros.nodes.goals import answer_outcome

    got, why = answer_outcome(status, "detail", cancel_set=cancel_set, timed_out=timed_out, preempted=preempted, budget_s=3)
    assert got == want
    if want == "timeout":
        assert "3 s" in why
    if want == "cancelled":
        assert ("preempted" in why) == preempted
    if want == "error":
        assert why == f"{status}: detail"


def test_feedback_throttle():
    from frs_ros.nodes.goals import FeedbackThrottle

    t = FeedbackThrottle(0.1)
    assert t.allow("reasoning", 0.0) and not t.allow("reasoning", 0.05) and t.allow("reasoning", 0.11)
    assert t.allow("running_tool", 0.12)  # a stage change always goes out
