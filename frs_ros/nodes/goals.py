"""ROS-free goal policies of the reasoner node (tested without rclpy).

Every ReasonSeg goal is *accepted* at the action level and its outcome is in
``result.status`` with a sentence in ``result.error`` — so a client always learns why:
- ``rejected``: the query is not usable (not text, empty/blank, longer than
  ``reasoner.max_query_chars``, or control characters), or ``goal_policy=reject`` and another goal runs;
- ``no_twin``: no digital twin arrived within ``twin_wait_s``;
- ``timeout``: the goal's ``timeout_s`` (or ``default_timeout_s``) ran out;
- ``cancelled``: the client cancelled it, or a newer goal preempted it (``goal_policy=preempt``);
- ``error``: the reasoner could not load or failed; ``ok`` otherwise (no targets = "no target").

Concurrent goals (``GoalArbiter``): **preempt** by default — a manipulation user who sends a new
query has changed their mind; the robot should act on the newest instruction at once, not
after the old one finishes (or be refused). ``reject`` suits multi-client setups where one
client must not cancel another's goal.

Tracking (``TrackingSession``): after an ``ok`` answer with targets and ``keep_tracking``, the
answered track ids are republished from every new twin until a newer goal replaces them, a
message on ``frs/target/stop`` ends it, or none of them was visible for ``tracking_lost_s``.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Optional

from frs_ros.reasoning.api import validate_query
from frs_ros.reasoning.config import InvalidQueryError


def check_goal_query(query: Any, max_chars: int) -> str:
    """The query if usable; ``InvalidQueryError`` with what to change otherwise."""
    q = validate_query(query, max_chars)
    bad = [c for c in q if unicodedata.category(c) == "Cc" and c not in "\n\t"]
    if bad:
        raise InvalidQueryError(
            f"the query contains {len(bad)} control character(s) (e.g. {bad[0]!r}); send plain text"
        )
    return q


@dataclass
class ActiveGoal:
    goal_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    preempted: bool = False


class GoalArbiter:
    """Which goal runs; applies ``policy`` ('preempt' | 'reject') when a new one arrives."""

    def __init__(self, policy: str = "preempt") -> None:
        if policy not in ("preempt", "reject"):
            raise ValueError(f"goal policy must be 'preempt' or 'reject', got {policy!r}")
        self.policy = policy
        self._lock = threading.Lock()
        self._active: Optional[ActiveGoal] = None

    def admit(self, goal_id: str) -> tuple[Optional[ActiveGoal], str]:
        """Start ``goal_id``: ``(ActiveGoal, '')``, or ``(None, reason)`` when it is refused."""
        with self._lock:
            cur = self._active
            if cur is not None:
                if self.policy == "reject":
                    return None, (f"another goal ({cur.goal_id[:8]}) is still running and goal_policy is 'reject'; "
                                  "wait for it or cancel it first")
                cur.preempted = True
                cur.cancel.set()
            self._active = ActiveGoal(goal_id)
            return self._active, ""

    def finish(self, goal: ActiveGoal) -> None:
        with self._lock:
            if self._active is goal:
                self._active = None

    @property
    def active(self) -> Optional[ActiveGoal]:
        with self._lock:
            return self._active


@dataclass
class TrackingSession:
    """The answered targets being followed frame by frame.

    track_ids: ids from the answer; lost_s [s]: stop after none was visible this long.
    """

    goal_id: str
    query: str
    track_ids: list[int]
    lost_s: float
    last_seen_ns: Optional[int] = None
    stopped_reason: str = ""

    def visible_ids(self, twin: Any) -> Optional[list[int]]:
        """Ids of the session visible in ``twin``; ``None`` when the session must stop (lost too long)."""
        if self.stopped_reason:
            return None
        present = {o.track_id: o for o in twin.objects}
        ids = [i for i in self.track_ids if i in present and present[i].visible]
        if ids:
            self.last_seen_ns = int(twin.stamp_ns)
        else:
            ref = self.last_seen_ns
            if ref is None:
                self.last_seen_ns = ref = int(twin.stamp_ns)
            if (int(twin.stamp_ns) - ref) * 1e-9 > self.lost_s:
                self.stopped_reason = f"target(s) {self.track_ids} not visible for more than {self.lost_s:g} s"
                return None
        return ids


def cancel_reason(preempted: bool) -> str:
    return "preempted by a newer goal (goal_policy 'preempt')" if preempted else "cancelled by the client"


def answer_outcome(answer_status: str, answer_error: str, *, cancel_set: bool, timed_out: bool, preempted: bool,
                   budget_s: float) -> tuple[str, str]:
    """The action ``(status, error)`` of an engine ``Answer`` (see the table in the module docstring).

    A stop requested while reasoning wins over what the backend reports then: the time budget
    (``timeout``), else a client cancel or a preemption (``cancelled``). Other backend failures
    (``parse_error``, ``unknown_id``, ``max_tokens``, ...) are ``error`` with the backend's code.
    """
    if answer_status == "cancelled" or (cancel_set and answer_status != "ok"):
        if timed_out:
            return "timeout", (f"the goal's time budget of {budget_s:g} s ran out while reasoning; raise "
                               "goal.timeout_s or default_timeout_s")
        return "cancelled", cancel_reason(preempted)
    if answer_status != "ok":
        return "error", f"{answer_status}: {answer_error}"
    return "ok", ""


class FeedbackThrottle:
    """Feedback at most every ``period_s`` per stage; a stage change always goes out."""

    def __init__(self, period_s: float = 0.1) -> None:
        self.period_s = float(period_s)
        self._stage: Optional[str] = None
        self._last = 0.0

    def allow(self, stage: str, now_s: float) -> bool:
        if stage == self._stage and now_s - self._last < self.period_s:
            return False
        self._stage, self._last = stage, now_s
        return True
