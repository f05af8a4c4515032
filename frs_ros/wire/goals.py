"""ROS-free goal policies of the reasoner node (tested without rclpy).

Every ReasonSeg goal is *accepted* at the action level and its outcome is in
``result.status`` with a sentence in ``result.error`` — so a client always learns why:
- ``rejected``: the query is not usable (not text, empty/blank — invisible format characters such
  as U+200B count as blank —, longer than ``reasoner.max_query_chars``, or control characters), or
  ``timeout_s`` is NaN or negative (``goal_budget_s``), or ``goal_policy=reject`` and another goal runs;
- ``no_twin``: no digital twin arrived within ``twin_wait_s``;
- ``stale_twin``: the latest twin is older than ``max_twin_age_s`` and no fresh one arrived within
  ``twin_wait_s`` (``wait_for_twin``);
- ``timeout``: the goal's ``timeout_s`` (or ``default_timeout_s``) ran out;
- ``cancelled``: the client cancelled it (even at acceptance, before it ran), or a newer goal
  preempted it (``goal_policy=preempt``);
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

import math
import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from frs_ros.reasoning.api import validate_query
from frs_ros.reasoning.config import InvalidQueryError
from frs_ros.reasoning.outcome import Outcome


def check_goal_query(query: Any, max_chars: int) -> str:
    """The query if usable; ``InvalidQueryError`` with what to change otherwise."""
    q = validate_query(query, max_chars)
    bad = [c for c in q if unicodedata.category(c) == "Cc" and c not in "\n\t"]
    if bad:
        raise InvalidQueryError(
            f"the query contains {len(bad)} control character(s) (e.g. {bad[0]!r}); send plain text"
        )
    return q


#: The longest time budget a goal can have [s]; larger ``timeout_s`` (and +inf) are clamped to it.
#: (An hour: far beyond any answer; it keeps the budget timer inside what the OS timer accepts —
#: 3.4e38 s overflowed it.) Equal to the upper bound of ``default_timeout_s``.
MAX_GOAL_TIMEOUT_S = 3600.0


class InvalidGoalError(ValueError):
    """A goal field other than the query is unusable; the message says what to send instead."""


def goal_budget_s(timeout_s: Any, default_s: float) -> tuple[float, str]:
    """The time budget [s] of a goal from its ``timeout_s``: ``(budget_s, note)``.

    0 -> ``default_s``; a finite value in (0, MAX_GOAL_TIMEOUT_S] -> itself; larger values and
    +inf ("no limit") -> MAX_GOAL_TIMEOUT_S with a note saying so. NaN, negative values and -inf
    raise ``InvalidGoalError`` (they used to fall back to the default silently).
    """
    t = float(timeout_s)
    if math.isnan(t) or t < 0:
        raise InvalidGoalError(f"timeout_s = {t} is not a time budget: send 0 for the node's default_timeout_s "
                               f"({default_s:g} s) or a positive number of seconds (at most {MAX_GOAL_TIMEOUT_S:g})")
    if t == 0:
        return float(default_s), ""
    if t > MAX_GOAL_TIMEOUT_S:
        return MAX_GOAL_TIMEOUT_S, f"timeout_s = {t:g} clamped to the longest budget, {MAX_GOAL_TIMEOUT_S:g} s"
    return t, ""


@dataclass
class TwinWait:
    """What ``wait_for_twin`` found: ``status`` ok (``snapshot`` set) | no_twin | stale_twin
    | timeout | cancelled (:class:`Outcome`), a sentence in ``error``, and the age [s] of the latest twin (None: none)."""

    status: Outcome
    snapshot: Any = None
    error: str = ""
    age_s: Optional[float] = None


def wait_for_twin(buffer: Any, *, wait_s: float, max_age_s: float, deadline: float, budget_s: float,
                  cancel: threading.Event, on_stale: Optional[Callable[[float], None]] = None,
                  clock: Callable[[], float] = time.monotonic, poll_s: float = 0.1) -> TwinWait:
    """Wait for a twin no older than ``max_age_s`` (0 = any age) in ``buffer`` (a ``LatestSlot``).

    wait_s [s]: how long to wait for one (``twin_wait_s``); deadline [s, ``clock``]: the goal's
    budget end; cancel: stops the wait. ``on_stale(age_s)`` is called once when the latest twin
    is too old (the node sends feedback then). Outcome order: cancelled, then the goal's budget
    (``timeout``), then ``stale_twin`` (a twin exists but is old), then ``no_twin``.
    """
    until = min(deadline, clock() + max(0.0, wait_s))
    told = False
    while True:
        seq, snap, age = buffer.latest_with_age()
        if snap is not None and (max_age_s <= 0 or age <= max_age_s):
            return TwinWait(Outcome.OK, snap, "", age)
        if snap is not None and not told and on_stale is not None:
            on_stale(age)
            told = True
        if cancel.is_set():
            return TwinWait(Outcome.CANCELLED, age_s=age)
        now = clock()
        if now >= until:
            break
        buffer.wait_newer(seq, timeout_s=min(poll_s, until - now))
    fresh = "a fresh " if snap is not None else "a "
    if clock() >= deadline:
        return TwinWait(Outcome.TIMEOUT, error=f"the goal's time budget of {budget_s:g} s ran out waiting for {fresh}digital twin",
                        age_s=age)
    if snap is not None:
        return TwinWait(Outcome.STALE_TWIN, age_s=age, error=(
            f"the latest digital twin is {age:.1f} s old, older than max_twin_age_s={max_age_s:g} s, and no fresh one came "
            f"within twin_wait_s={wait_s:g} s: the camera or the digital_twin_node has stalled (see their ~/status), or "
            "the twin updates more slowly than that (then raise max_twin_age_s)"))
    return TwinWait(Outcome.NO_TWIN, error=(
        f"no digital twin arrived within twin_wait_s={wait_s:g} s: check that the camera publishes and the "
        "digital_twin_node is in state 'ok' (its ~/status topic)"))


@dataclass
class ActiveGoal:
    goal_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    preempted: bool = False


class GoalArbiter:
    """Which goal runs; applies ``policy`` ('preempt' | 'reject') when a new one arrives.

    Client cancels go through ``request_cancel`` (the action's cancel callback): under the same
    lock as ``admit``, so a cancel that arrives before its goal is admitted (right after
    acceptance) is not lost: ``admit`` then starts the goal already cancelled.
    """

    #: client cancels remembered for goals not finished yet (bounded: a cancel racing the goal's end)
    MAX_CANCELS = 1024

    def __init__(self, policy: str = "preempt") -> None:
        if policy not in ("preempt", "reject"):
            raise ValueError(f"goal policy must be 'preempt' or 'reject', got {policy!r}")
        self.policy = policy
        self._lock = threading.Lock()
        self._active: Optional[ActiveGoal] = None
        self._cancels: "OrderedDict[str, None]" = OrderedDict()

    def admit(self, goal_id: str) -> tuple[Optional[ActiveGoal], str]:
        """Start ``goal_id``: ``(ActiveGoal, '')``, or ``(None, reason)`` when it is refused.

        A goal the client already cancelled is not admitted: ``(None, '')`` (it must end
        'cancelled' without preempting the running one).
        """
        with self._lock:
            if goal_id in self._cancels:
                return None, ""
            cur = self._active
            if cur is not None:
                if self.policy == "reject":
                    return None, (f"another goal ({cur.goal_id[:8]}) is still running and goal_policy is 'reject'; "
                                  "wait for it or cancel it first")
                cur.preempted = True
                cur.cancel.set()
            self._active = ActiveGoal(goal_id)
            return self._active, ""

    def request_cancel(self, goal_id: str) -> None:
        """The client asked to cancel ``goal_id`` (running, or not admitted yet)."""
        with self._lock:
            self._cancels[goal_id] = None
            while len(self._cancels) > self.MAX_CANCELS:
                self._cancels.popitem(last=False)
            if self._active is not None and self._active.goal_id == goal_id:
                self._active.cancel.set()

    def cancel_requested(self, goal_id: str) -> bool:
        with self._lock:
            return goal_id in self._cancels

    def finish(self, goal: Optional[ActiveGoal], goal_id: str = "") -> None:
        """``goal`` (if admitted) ended; forget the client cancel of ``goal_id`` (or ``goal``'s id)."""
        with self._lock:
            if goal is not None and self._active is goal:
                self._active = None
            self._cancels.pop(goal_id or (goal.goal_id if goal is not None else ""), None)

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
