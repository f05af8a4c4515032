"""Every way a query can end, in one enum, and how it maps onto the ReasonSeg action's ``status``.

Three layers report an outcome: a backend (``ReasonerOutput.status``), the engine
(``Answer.status``: a backend's, or ``unknown_id`` when the answer names ids the twin lacks) and
the action result of the reasoner node (``result.status``, with the goal policy's own outcomes:
``rejected``, ``no_twin``, ``stale_twin``, ``timeout``). They all use :class:`Outcome`; it is a
``str`` enum, so ``status == "ok"`` holds, JSON and bags carry the same plain strings as before,
and a plain string given to a dataclass is turned into the member (``Outcome(text)``).

The action carries only :data:`ACTION_OUTCOMES`; :func:`action_outcome` is the one mapping from an
engine outcome (``max_tokens``, ``parse_error``, ``unknown_id``, ... become ``error`` with the code
in the sentence).
"""

from __future__ import annotations

from enum import Enum


class Outcome(str, Enum):
    """How a query ended (the value is the wire string).

    OK: answered (no targets = "no target"). REJECTED: the goal was refused (bad query, NaN or
    negative ``timeout_s``, or ``goal_policy=reject`` while another goal ran). NO_TWIN / STALE_TWIN:
    no digital twin, or only one older than ``max_twin_age_s``, within ``twin_wait_s``. TIMEOUT: the
    goal's time budget ran out. CANCELLED: cancelled by the client or preempted by a newer goal.
    UNKNOWN_ID: the answer named a track id the twin does not have. PARSE_ERROR: the model wrote a
    malformed rollout. MAX_TOKENS: the rollout exceeded ``reasoner.max_new_tokens``. ERROR: anything
    else (model not loaded, backend failure).
    """

    OK = "ok"
    REJECTED = "rejected"
    NO_TWIN = "no_twin"
    STALE_TWIN = "stale_twin"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    UNKNOWN_ID = "unknown_id"
    PARSE_ERROR = "parse_error"
    MAX_TOKENS = "max_tokens"
    ERROR = "error"

    def __str__(self) -> str:  # the wire string, also in f-strings and logs
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


#: The statuses a ReasonSeg action result can carry (``action/ReasonSeg.action``).
ACTION_OUTCOMES: tuple[Outcome, ...] = (Outcome.OK, Outcome.REJECTED, Outcome.NO_TWIN, Outcome.STALE_TWIN,
                                        Outcome.TIMEOUT, Outcome.CANCELLED, Outcome.ERROR)


def cancel_reason(preempted: bool) -> str:
    """The sentence of a ``cancelled`` goal: preempted by a newer goal, or cancelled by its client."""
    return "preempted by a newer goal (goal_policy 'preempt')" if preempted else "cancelled by the client"


def action_outcome(answer_status: str, answer_error: str, *, cancel_set: bool, timed_out: bool, preempted: bool,
                   budget_s: float) -> tuple[Outcome, str]:
    """The action ``(status, error)`` of an engine ``Answer``'s ``(status, error)``.

    A stop requested while reasoning wins over what the backend reports then: the time budget
    [s] (``timeout``), else a client cancel or a preemption (``cancelled``). Other engine outcomes
    (``parse_error``, ``unknown_id``, ``max_tokens``, ...) are ``error`` with the code in the sentence.
    """
    status = Outcome(answer_status)
    if status is Outcome.CANCELLED or (cancel_set and status is not Outcome.OK):
        if timed_out:
            return Outcome.TIMEOUT, (f"the goal's time budget of {budget_s:g} s ran out while reasoning; raise "
                                     "goal.timeout_s or default_timeout_s")
        return Outcome.CANCELLED, cancel_reason(preempted)
    if status is not Outcome.OK:
        return Outcome.ERROR, f"{status.value}: {answer_error}"
    return Outcome.OK, ""
