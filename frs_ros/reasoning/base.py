"""The protocol every reasoner backend implements, and what flows in and out of it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from frs_ros.camera import Frame
from frs_ros.reasoning.types import Rollout, ToolCall
from frs_ros.twin.types import DigitalTwin
from frs_ros.reasoning.outcome import Outcome

#: Feedback stages, in the order of ``ReasonSeg.action`` (STAGE_* constants 0..3).
STAGES = ("waiting_for_twin", "reasoning", "running_tool", "answering")

#: Runs one tool call against the current twin/frame and returns its text output.
#: Raises an exception (e.g. ``frs_ros.twin.ToolError``) for a bad call; the runtime turns it
#: into ``error: ...`` in ``<results>`` so the model can recover.
ToolExecutor = Callable[[ToolCall], str]


@dataclass
class Feedback:
    """One streaming update: stage (one of STAGES), the rollout text so far, tokens generated."""

    stage: str
    reasoning_so_far: str
    generated_tokens: int

    @property
    def stage_index(self) -> int:
        return STAGES.index(self.stage)


FeedbackCallback = Callable[[Feedback], None]


@dataclass
class ReasonerOutput:
    """What a backend returns: the rollout and its costs.

    status: :class:`~frs_ros.reasoning.outcome.Outcome` ('ok' | 'cancelled' | 'parse_error' | 'max_tokens' |
        'error'; a plain string is converted);
    rollout: parsed when status is 'ok' (``None`` otherwise); text: raw rollout text.
    prompt_tokens: tokens of the prompt; cached_tokens: of those, served from a reused KV cache;
    generated_tokens: tokens chosen by the model (forced grammar tokens and tool results excluded;
        tokens of a malformed plan that was dropped are included: they cost decode time);
    forced_tokens: tokens the runtime appended (tags, ``<results>`` blocks).
    processed_tokens: tokens run through the model for this query (prefill + decode + forced);
        equals prompt - cached + rollout tokens when nothing is recomputed.
    kv_tokens: tokens in the live KV cache at the end (prompt + rollout).
    warnings: recoveries the runtime made (e.g. a malformed plan dropped).
    timings_s [s]: per stage ('prefill', 'decode', 'tools', 'resume', ...).
    """

    text: str
    rollout: Optional[Rollout] = None
    status: Outcome = Outcome.OK
    error: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    forced_tokens: int = 0
    processed_tokens: int = 0
    kv_tokens: int = 0
    tool_calls: list[ToolCall] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings_s: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = Outcome(self.status)


class Reasoner(Protocol):
    """A backend that writes a rollout for a query about a twin.

    runtime: how the backend runs, for logs and the node (an LM backend: its
        :class:`frs_ros.reasoning.lm.CausalLM` runtime, e.g. ``'lean-int8 (native kernel)'``);
    runtime_warning: why that runtime is not the one configured (``''`` when it is).
    Backends without an LM (the oracle, test stubs) may leave both out: the engine reports ``''``.
    twin_text: the twin serialised for the LLM (the engine serialises once and times it).
    tools: executes ``<plan>`` calls (``None``: no tools; the backend must answer without).
    cancel: checked between tokens; when set the backend returns status 'cancelled'.
    Nothing here is backend-specific: a backend's own inputs (the oracle's ground truth) come
    with its construction.
    """

    runtime: str
    runtime_warning: str

    def reason(
        self,
        query: str,
        twin: DigitalTwin,
        twin_text: str,
        frame: Optional[Frame],
        tools: Optional[ToolExecutor],
        *,
        max_targets: int = 0,
        cancel: Optional[threading.Event] = None,
        on_feedback: Optional[FeedbackCallback] = None,
    ) -> ReasonerOutput: ...
