"""One outcome enum for backends, the engine and the action (frs_ros.reasoning.outcome)."""

import json
import os
import re

import pytest

from frs_ros.reasoning.base import ReasonerOutput
from frs_ros.reasoning.outcome import ACTION_OUTCOMES, Outcome, action_outcome, cancel_reason

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_outcome_is_its_wire_string():
    assert Outcome.STALE_TWIN == "stale_twin" and f"{Outcome.NO_TWIN}" == "no_twin" and str(Outcome.OK) == "ok"
    assert json.dumps({"status": Outcome.UNKNOWN_ID}) == '{"status": "unknown_id"}'
    assert {Outcome.OK: 1}.get("ok") == 1  # hashes as its string: dicts keyed either way agree


def test_dataclasses_turn_strings_into_outcomes_and_refuse_unknown_ones():
    out = ReasonerOutput(text="", status="parse_error")
    assert out.status is Outcome.PARSE_ERROR
    with pytest.raises(ValueError, match="tool_trouble"):
        ReasonerOutput(text="", status="tool_trouble")


def test_action_outcomes_are_the_statuses_the_action_documents():
    text = open(os.path.join(ROOT, "action", "ReasonSeg.action"), encoding="utf-8").read()
    line = next(ln for ln in text.splitlines() if ln.startswith("string status"))
    documented = re.findall(r'"([a-z_]+)"', line)
    assert documented == [o.value for o in ACTION_OUTCOMES]


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
def test_action_outcome(status, cancel_set, timed_out, preempted, want):
    got, why = action_outcome(status, "detail", cancel_set=cancel_set, timed_out=timed_out, preempted=preempted, budget_s=3)
    assert got == want
    if want == "timeout":
        assert "3 s" in why
    if want == "cancelled":
        assert ("preempted" in why) == preempted
    if want == "error":
        assert why == f"{status}: detail"



@pytest.mark.parametrize("status", list(Outcome))
def test_every_engine_outcome_maps_onto_an_action_status(status):
    got, why = action_outcome(status, "x", cancel_set=False, timed_out=False, preempted=False, budget_s=1)
    assert got in ACTION_OUTCOMES
    assert (got is Outcome.OK) == (status is Outcome.OK)


def test_cancel_reason_names_the_cause():
    assert "preempted" in cancel_reason(True) and "client" in cancel_reason(False)
